//! The webhook's Prometheus metrics (served at /metrics on the plain-HTTP port).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::review::{Outcome, Webhook};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub webhook: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub webhook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProblemLabels {
    pub webhook: &'static str,
    /// denied or warned.
    pub outcome: &'static str,
    pub reason: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<WebhookLabels, Histogram>,
    pub problems: Family<ProblemLabels, Counter>,
    pub tls_reloads: Counter,
    /// Unix time the serving certificate expires (self-managed certificates).
    pub certificate_not_after: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            // 50 µs .. ~1.6 s: the goal is single-digit milliseconds.
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
            }),
            problems: Family::default(),
            tls_reloads: Counter::default(),
            certificate_not_after: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kafka_e2ee_webhook_requests",
            "Admission requests, by webhook (mutate, validate) and outcome (allowed, patched, denied, warned, malformed)",
            self.requests.clone(),
        );
        registry.register(
            "kafka_e2ee_webhook_request_duration_seconds",
            "Time to answer one admission request, body read to response written",
            self.duration.clone(),
        );
        registry.register(
            "kafka_e2ee_webhook_problems",
            "Requests denied or warned about, by reason",
            self.problems.clone(),
        );
        registry.register(
            "kafka_e2ee_webhook_tls_reloads",
            "Serving certificates loaded (at start and on every rotation)",
            self.tls_reloads.clone(),
        );
        registry.register(
            "kafka_e2ee_webhook_certificate_not_after_seconds",
            "Unix time the self-managed serving certificate expires",
            self.certificate_not_after.clone(),
        );
    }

    pub fn observe(
        &self,
        webhook: Webhook,
        outcome: Outcome,
        reasons: &[&'static str],
        seconds: f64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                webhook: webhook.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
        self.duration
            .get_or_create(&WebhookLabels {
                webhook: webhook.as_str(),
            })
            .observe(seconds);
        for reason in reasons {
            self.problems
                .get_or_create(&ProblemLabels {
                    webhook: webhook.as_str(),
                    outcome: outcome.as_str(),
                    reason,
                })
                .inc();
        }
    }
}
