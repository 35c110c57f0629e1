use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // rustify (under vaultrs) logs every non-2xx answer as an error, including the 404 of a
    // TEK that does not exist yet and of every KMS connection check (vaultrs logs it again);
    // the operator reports what matters itself. Silenced unless RUST_LOG names them.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let filter = if filter.contains("rustify") || filter.contains("vaultrs") {
        filter
    } else {
        format!("{filter},rustify=off,vaultrs=off")
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let args = kafka_e2ee_operator::Args::parse();
    let mut out = std::io::stdout();
    kafka_e2ee_operator::run(args, &mut out).await?;
    Ok(())
}
