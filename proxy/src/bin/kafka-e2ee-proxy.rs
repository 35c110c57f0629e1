//! `kafka-e2ee-proxy`: the per-pod encrypting Kafka proxy (logic in the library).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    kafka_e2ee_proxy::cli::run(kafka_e2ee_proxy::cli::Args::parse()).await
}
