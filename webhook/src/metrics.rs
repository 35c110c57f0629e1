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
    /// Every series a request touches, resolved once: a request then increments atomics
    /// instead of hashing labels under the families' locks (and every series exists from the
    /// start, at zero).
    per_request: [PerWebhook; Webhook::ALL.len()],
}

#[derive(Clone)]
struct PerWebhook {
    /// By [`Outcome::index`].
    requests: [Counter; Outcome::ALL.len()],
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        // 50 µs .. ~1.6 s: the goal is single-digit milliseconds.
        let duration: Family<WebhookLabels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 16)));
        let per_request = Webhook::ALL.map(|webhook| PerWebhook {
            requests: Outcome::ALL.map(|outcome| {
                requests
                    .get_or_create(&RequestLabels {
                        webhook: webhook.as_str(),
                        outcome: outcome.as_str(),
                    })
                    .clone()
            }),
            duration: duration
                .get_or_create(&WebhookLabels {
                    webhook: webhook.as_str(),
                })
                .clone(),
        });
        Self {
            requests,
            duration,
            problems: Family::default(),
            tls_reloads: Counter::default(),
            certificate_not_after: Gauge::default(),
            per_request,
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
        let series = &self.per_request[webhook.index()];
        series.requests[outcome.index()].inc();
        series.duration.observe(seconds);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metrics: &Metrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn each_request_counts_in_its_own_series_and_every_series_exists_from_the_start() {
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i, "{outcome:?}");
        }
        let metrics = Metrics::default();
        let fresh = encoded(&metrics);
        assert!(fresh.contains(
            r#"kafka_e2ee_webhook_requests_total{webhook="validate",outcome="malformed"} 0"#
        ));
        metrics.observe(Webhook::Mutate, Outcome::Patched, &[], 0.001);
        metrics.observe(Webhook::Mutate, Outcome::Patched, &[], 0.001);
        metrics.observe(
            Webhook::Validate,
            Outcome::Denied,
            &["DeleteNotConfirmed"],
            0.001,
        );
        let text = encoded(&metrics);
        for line in [
            r#"kafka_e2ee_webhook_requests_total{webhook="mutate",outcome="patched"} 2"#,
            r#"kafka_e2ee_webhook_requests_total{webhook="mutate",outcome="allowed"} 0"#,
            r#"kafka_e2ee_webhook_requests_total{webhook="validate",outcome="denied"} 1"#,
            r#"kafka_e2ee_webhook_request_duration_seconds_count{webhook="mutate"} 2"#,
            r#"kafka_e2ee_webhook_request_duration_seconds_count{webhook="validate"} 1"#,
            r#"kafka_e2ee_webhook_problems_total{webhook="validate",outcome="denied",reason="DeleteNotConfirmed"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
