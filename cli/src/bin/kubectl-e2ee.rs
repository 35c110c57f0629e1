//! `kubectl e2ee`: a thin binary over `kafka_e2ee_cli` (docs/cli.md).

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kafka_e2ee_cli::init_logging();
    let args = kafka_e2ee_cli::args::Args::parse();
    match kafka_e2ee_cli::run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", kafka_e2ee_cli::error::chain(&e));
            e.exit_code().into()
        }
    }
}
