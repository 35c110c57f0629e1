use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = kafka_e2ee_operator::Args::parse();
    kafka_e2ee_operator::run(args, &mut std::io::stdout().lock())?;
    Ok(())
}
