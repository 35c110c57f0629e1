//! Leader election on a coordination.k8s.io/v1 Lease, so two replicas are safe: only the
//! holder reconciles. The holder renews every `renew`; a standby takes over once the lease has
//! not been renewed for `duration`. Losing the lease ends the process (the Deployment restarts
//! it as a standby), so there is never a moment with two writers that both think they lead.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LeaderError {
    #[error("lease {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("lease {namespace}/{name} was taken over by {holder}")]
    Lost {
        namespace: String,
        name: String,
        holder: String,
    },
}

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    pub renew: Duration,
}

pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
}

enum Attempt {
    Acquired,
    HeldBy(String),
}

impl LeaderElector {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    fn kube_error(&self, source: kube::Error) -> LeaderError {
        LeaderError::Kube {
            namespace: self.settings.namespace.clone(),
            name: self.settings.name.clone(),
            source,
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) -> Result<(), LeaderError> {
        let mut logged = false;
        loop {
            match self.try_acquire().await {
                Ok(Attempt::Acquired) => return Ok(()),
                Ok(Attempt::HeldBy(holder)) => {
                    if !logged {
                        tracing::info!(%holder, lease = %self.settings.name, "standing by: another replica leads");
                        logged = true;
                    }
                }
                // A conflict means someone else wrote first: look again.
                Err(LeaderError::Kube {
                    source: kube::Error::Api(ref e),
                    ..
                }) if e.code == 409 => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.settings.renew).await;
        }
    }

    /// Renews the lease until it is lost (returns the reason) or renewal keeps failing past
    /// the lease duration.
    pub async fn hold(&self) -> LeaderError {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.settings.renew).await;
            match self.try_acquire().await {
                Ok(Attempt::Acquired) => last_renewed = tokio::time::Instant::now(),
                Ok(Attempt::HeldBy(holder)) => {
                    return LeaderError::Lost {
                        namespace: self.settings.namespace.clone(),
                        name: self.settings.name.clone(),
                        holder,
                    };
                }
                Err(e) if last_renewed.elapsed() >= self.settings.duration => return e,
                Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
            }
        }
    }

    /// Gives the lease up (on graceful shutdown) so a standby takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(&self.settings.identity)
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = self
                .api
                .replace(&self.settings.name, &PostParams::default(), &lease)
                .await;
        }
    }

    async fn try_acquire(&self) -> Result<Attempt, LeaderError> {
        let now = Timestamp::now();
        let me = &self.settings.identity;
        let duration_secs = i32::try_from(self.settings.duration.as_secs()).unwrap_or(i32::MAX);
        let existing = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(|e| self.kube_error(e))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            self.api
                .create(&PostParams::default(), &lease)
                .await
                .map_err(|e| self.kube_error(e))?;
            return Ok(Attempt::Acquired);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
            let secs = i64::from(spec.lease_duration_seconds.unwrap_or(duration_secs));
            renewed.0.as_second() + secs < now.as_second()
        });
        match holder {
            Some(h) if h == *me => {}
            Some(h) if !expired => return Ok(Attempt::HeldBy(h)),
            _ => {
                spec.holder_identity = Some(me.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(duration_secs);
        // replace carries the resourceVersion we read: a concurrent writer makes this a 409.
        self.api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.kube_error(e))?;
        Ok(Attempt::Acquired)
    }
}
