use clap::Parser;
use tracing_subscriber::EnvFilter;

// Per-request JSON work is allocation-bound; mimalloc cut the /mutate handler's CPU from
// 40 to 25 µs per call on the benchmark machine (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    kafka_e2ee_webhook::run(kafka_e2ee_webhook::Args::parse()).await?;
    Ok(())
}
