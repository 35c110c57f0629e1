//! kafka-e2ee's operator (KIP-317's KeyManager).
//!
//! The reconciler arrives with the operator issue; today the binary prints the CRDs it
//! serves, so `kafka-e2ee-operator crds | kubectl apply -f -` installs them.

use std::io::Write;

use clap::{Parser, Subcommand};
use thiserror::Error;

/// Command-line arguments of `kafka-e2ee-operator`.
#[derive(Debug, Parser)]
#[command(
    name = "kafka-e2ee-operator",
    version,
    about = "kafka-e2ee operator: reconciles EncryptedTopics"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as multi-document YAML.
    Crds,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    RenderCrds(#[from] kafka_e2ee_crds::CrdYamlError),
    #[error("failed to write to stdout")]
    Stdout(#[source] std::io::Error),
}

pub fn run(args: Args, out: &mut impl Write) -> Result<(), Error> {
    let Args { command } = args;
    match command {
        Command::Crds => {
            let yaml = kafka_e2ee_crds::crds_yaml()?;
            out.write_all(yaml.as_bytes()).map_err(Error::Stdout)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn args_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn crds_command_prints_the_generated_yaml() {
        let mut out = Vec::new();
        run(Args::parse_from(["kafka-e2ee-operator", "crds"]), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            kafka_e2ee_crds::crds_yaml().unwrap()
        );
    }
}
