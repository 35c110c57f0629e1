//! The command line: `kubectl e2ee <command>` (on the PATH as `kubectl-e2ee`, kubectl runs it
//! as a plugin). Every command uses the caller's kubeconfig, and `verify` the caller's own
//! Kafka and KMS credentials (a client configuration), never the operator's.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub const EXIT_CODES: &str = "\
Exit status:
  0  done (verify: every record read opened, or passed as allowed plaintext)
  1  verify found records that do not open, or are plaintext where the topic rejects it
  2  usage error
  3  Kubernetes API error: not found, or a right the caller does not have (named)
  4  timed out waiting for the operator to carry out a request
  5  Kafka, KMS or client configuration error (verify could not read)";

/// Day-2 operations on kafka-e2ee's EncryptedTopics: status, DEK rollover and TEK rotation
/// on demand, and proof that a topic's retained records are encrypted.
#[derive(Debug, Parser)]
#[command(name = "kubectl-e2ee", bin_name = "kubectl e2ee", version, after_help = EXIT_CODES)]
pub struct Args {
    /// The namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// EncryptedTopics: readiness, TEK and its version, DEK versions, the rollover and
    /// rotation schedule, requests carried out; with a NAME also conditions and recent events.
    #[command(after_help = "Examples:
  kubectl e2ee status                     # EncryptedTopics of the current namespace
  kubectl e2ee status orders -n shop      # one of them, with conditions and events
  kubectl e2ee status -A -o json          # every namespace, as JSON")]
    Status {
        /// One EncryptedTopic (default: all in the namespace).
        name: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Give partitions a new DEK now (after a suspected leak). Sets the annotation
    /// kafka-e2ee.io/rollover-requested-at to the current time; the operator honours it once
    /// and records it in status.requests.rollover. Existing data keeps its keys.
    #[command(after_help = "Examples:
  kubectl e2ee rollover orders                # every partition
  kubectl e2ee rollover orders --partition 3  # only partition 3
  kubectl e2ee rollover orders --no-wait      # request, do not wait")]
    Rollover {
        /// The EncryptedTopic.
        name: String,
        /// Only these partitions (repeatable, or comma-separated).
        #[arg(long = "partition", value_delimiter = ',')]
        partitions: Vec<i32>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Rotate the TEK in the KMS now, then re-wrap every stored EDEK under the new version.
    /// Sets kafka-e2ee.io/rotate-requested-at; honoured once, recorded in
    /// status.requests.rotate.
    #[command(after_help = "Examples:
  kubectl e2ee rotate orders -n shop")]
    Rotate {
        /// The EncryptedTopic.
        name: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Read the topic's retained records with the client's own opening path and count, per
    /// partition: opened, plaintext allowed, plaintext rejected, tampered, unknown key, key
    /// unavailable, malformed. Never prints a value. Needs a client configuration with the
    /// caller's Kafka and KMS credentials (the file the webhook injects, or one of your own).
    #[command(after_help = "Examples:
  kubectl e2ee verify orders --config client.yaml
  kubectl e2ee verify orders --config client.yaml --since 1h --partition 0 -o json")]
    Verify {
        /// The EncryptedTopic (its Kafka topic is read from the apiserver).
        name: String,
        /// The client configuration (docs/client.md): brokers, key topic, KMS, trusted keys.
        #[arg(long, env = "KAFKA_E2EE_CONFIG")]
        config: PathBuf,
        /// Only records newer than this (30s, 15m, 1h, 7d); default: from the beginning.
        #[arg(long, value_parser = duration)]
        since: Option<Duration>,
        /// Only these partitions (repeatable, or comma-separated).
        #[arg(long = "partition", value_delimiter = ',')]
        partitions: Vec<i32>,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Per partition, the key versions retained data still needs (from each version's first
    /// offset, in its EDEK, against the partition's log start offset), the EDEKs no retained
    /// record needs, and the TEK versions the kept EDEKs need. Reads the key topic and the
    /// watermarks with the caller's credentials.
    #[command(after_help = "Examples:
  kubectl e2ee inventory orders --config client.yaml
  kubectl e2ee inventory orders --config client.yaml -o json")]
    Inventory {
        /// The EncryptedTopic.
        name: String,
        #[command(flatten)]
        reader: Reader,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete the EDEKs no retained record needs (one version below the oldest needed is kept
    /// as a safety margin). The operator does it, as the only writer of the key topic: this
    /// sets kafka-e2ee.io/prune-requested-at and waits for status.requests.prune; an
    /// EdeksPruned event lists what went. With --dry-run, only prints what would go.
    #[command(after_help = "Examples:
  kubectl e2ee prune orders --dry-run --config client.yaml
  kubectl e2ee prune orders")]
    Prune {
        /// The EncryptedTopic.
        name: String,
        /// Print what would be deleted (needs --config), change nothing.
        #[arg(long, requires = "config")]
        dry_run: bool,
        /// The client configuration, for --dry-run.
        #[arg(long, env = "KAFKA_E2EE_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        wait: Wait,
    },
}

/// What `inventory` reads with: the caller's client configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct Reader {
    /// The client configuration (docs/client.md): brokers, key topic, trusted keys.
    #[arg(long, env = "KAFKA_E2EE_CONFIG")]
    pub config: PathBuf,
}

/// Waiting for the operator to carry out a request.
#[derive(Debug, Clone, clap::Args)]
pub struct Wait {
    /// Return once the request is made.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the operator (30s, 5m, ...).
    #[arg(long, default_value = "5m", value_parser = duration)]
    pub timeout: Duration,
}

fn duration(s: &str) -> Result<Duration, String> {
    kafka_e2ee_crds::duration::parse_duration(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn partitions_and_durations_parse() {
        let args = Args::parse_from([
            "kubectl-e2ee",
            "rollover",
            "orders",
            "--partition",
            "1,3",
            "--partition",
            "5",
            "--timeout",
            "90s",
            "-n",
            "shop",
        ]);
        assert_eq!(args.namespace.as_deref(), Some("shop"));
        let Command::Rollover {
            partitions, wait, ..
        } = args.command
        else {
            panic!("rollover")
        };
        assert_eq!(partitions, [1, 3, 5]);
        assert_eq!(wait.timeout, Duration::from_secs(90));
        assert!(
            Args::try_parse_from(["kubectl-e2ee", "rotate", "x", "--timeout", "soon"]).is_err()
        );
    }
}
