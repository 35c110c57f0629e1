use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        // rustify (under vaultrs) logs every non-2xx answer as an error, including the 404 of
        // a TEK that does not exist yet (vaultrs logs it again); the operator reports what matters
        // itself.
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rustify=off,vaultrs=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = kafka_e2ee_operator::Args::parse();
    let mut out = std::io::stdout();
    kafka_e2ee_operator::run(args, &mut out).await?;
    Ok(())
}
