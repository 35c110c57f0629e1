//! What can go wrong, each with its exit status (args::EXIT_CODES) and a message that names
//! what to do.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach the Kubernetes API (kubeconfig)")]
    Kubeconfig(#[source] anyhow::Error),
    #[error("EncryptedTopic {namespace}/{name} does not exist")]
    NotFound { namespace: String, name: String },
    #[error(
        "the Kubernetes API refused to {verb} {resource} in namespace {namespace}: your account needs that right ({message})"
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        namespace: String,
        message: String,
    },
    #[error("{what} failed")]
    Kube {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("the operator did not carry out the request within {timeout:?}; last state: {last}")]
    Timeout { timeout: Duration, last: String },
    #[error("EncryptedTopic {namespace}/{name} has no Kafka topic yet (not reconciled)")]
    NoTopic { namespace: String, name: String },
    #[error("starting the client from {path}")]
    Client {
        path: String,
        #[source]
        source: Box<kafka_e2ee_client::config::ClientError>,
    },
    #[error("the key topic was not read to its end: {0}")]
    KeyTopic(String),
    #[error("reading topic {topic} from Kafka")]
    Kafka {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("writing the output")]
    Output(#[source] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Kubeconfig(_)
            | Self::NotFound { .. }
            | Self::Forbidden { .. }
            | Self::Kube { .. } => 3,
            Self::Timeout { .. } => 4,
            Self::NoTopic { .. }
            | Self::Client { .. }
            | Self::KeyTopic(_)
            | Self::Kafka { .. }
            | Self::Output(_) => 5,
        }
    }

    /// A kube error, made specific for the two answers a user can act on.
    pub fn kube(
        e: kube::Error,
        verb: &'static str,
        resource: &'static str,
        namespace: &str,
        name: Option<&str>,
    ) -> Self {
        match &e {
            kube::Error::Api(status) if status.code == 404 && name.is_some() => Self::NotFound {
                namespace: namespace.to_owned(),
                name: name.unwrap_or_default().to_owned(),
            },
            kube::Error::Api(status) if status.code == 403 => Self::Forbidden {
                verb,
                resource,
                namespace: namespace.to_owned(),
                message: status.message.clone(),
            },
            _ => Self::Kube {
                what: format!("{verb} {resource} in namespace {namespace}"),
                source: Box::new(e),
            },
        }
    }
}

pub use kafka_e2ee_telemetry::chain;
