use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = kafka_e2ee_operator::Args::parse();
    let mut out = std::io::stdout();
    kafka_e2ee_operator::run(args, &mut out).await?;
    Ok(())
}
