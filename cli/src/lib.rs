//! `kubectl e2ee`: day-2 operations on kafka-e2ee's EncryptedTopics (docs/cli.md).
//!
//! - [`args`]: the command line and exit codes;
//! - [`status`]: EncryptedTopics as a table, JSON or YAML, with conditions and events;
//! - [`request`]: on-demand rollover and rotation through annotations, waiting for the operator;
//! - [`verify`]: reading a topic's retained records with the client's opening path;
//! - [`inventory`]: the key versions retained data needs, and what pruning may delete;
//! - [`error`]: typed failures and their exit status.

pub mod args;
pub mod error;
pub mod inventory;
pub mod request;
pub mod status;
pub mod verify;

use std::io::Write as _;
use std::process::ExitCode;

use args::{Args, Command};
use error::CliError;

/// The Kubernetes client of the caller's kubeconfig, and its namespace.
pub struct Kube {
    pub client: kube::Client,
    pub namespace: String,
}

impl Kube {
    pub async fn connect(context: Option<&str>, namespace: Option<&str>) -> Result<Self, CliError> {
        let options = kube::config::KubeConfigOptions {
            context: context.map(str::to_owned),
            ..Default::default()
        };
        let config = match kube::Config::from_kubeconfig(&options).await {
            Ok(c) => c,
            // In a pod without a kubeconfig: its service account.
            Err(_) if context.is_none() => kube::Config::infer()
                .await
                .map_err(|e| CliError::Kubeconfig(e.into()))?,
            Err(e) => return Err(CliError::Kubeconfig(e.into())),
        };
        let namespace = namespace
            .map(str::to_owned)
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(|e| CliError::Kubeconfig(e.into()))?;
        Ok(Self { client, namespace })
    }
}

/// Runs one command; the exit status on success (verify: 1 when records do not open).
pub async fn run(args: Args) -> Result<ExitCode, CliError> {
    let kube = Kube::connect(args.context.as_deref(), args.namespace.as_deref()).await?;
    let mut out = std::io::stdout().lock();
    match args.command {
        Command::Status {
            name,
            all_namespaces,
            output,
        } => {
            status::run(&kube, name.as_deref(), all_namespaces, output, &mut out).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollover {
            name,
            partitions,
            wait,
        } => {
            let kind = request::Kind::Rollover(partitions);
            request::run(&kube, &name, &kind, &wait, &mut out).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rotate { name, wait } => {
            request::run(&kube, &name, &request::Kind::Rotate, &wait, &mut out).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inventory {
            name,
            reader,
            output,
        } => {
            let report = inventory::compute(&kube, &name, &reader.config).await?;
            inventory::print(&report, output, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune {
            name,
            dry_run,
            config,
            wait,
        } => {
            match (dry_run, config.as_deref()) {
                (true, Some(config)) => {
                    let report = inventory::compute(&kube, &name, config).await?;
                    let unused = report.inventory.unused();
                    let list: Vec<String> =
                        unused.iter().map(|(p, v)| format!("{p}:v{v}")).collect();
                    writeln!(
                        out,
                        "dry run: {} EDEKs of {} would be deleted: {}",
                        unused.len(),
                        report.topic,
                        if list.is_empty() {
                            "none".to_owned()
                        } else {
                            list.join(", ")
                        }
                    )
                    .map_err(|e| CliError::Output(e.into()))?;
                }
                _ => request::run(&kube, &name, &request::Kind::Prune, &wait, &mut out).await?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            name,
            config,
            since,
            partitions,
            output,
        } => {
            let options = verify::Options {
                since,
                partitions,
                output,
            };
            let report = verify::run(&kube, &name, &config, &options, &mut out).await?;
            Ok(if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Writes `value` as JSON or YAML and returns true; false for a table, which the caller
/// prints.
pub fn write_structured(
    value: &impl serde::Serialize,
    output: args::Output,
    out: &mut impl std::io::Write,
) -> Result<bool, CliError> {
    let failed = |e: anyhow::Error| CliError::Output(e);
    match output {
        args::Output::Json => {
            serde_json::to_writer_pretty(&mut *out, value).map_err(|e| failed(e.into()))?;
            writeln!(out).map_err(|e| failed(e.into()))?;
            Ok(true)
        }
        args::Output::Yaml => {
            serde_yaml::to_writer(&mut *out, value).map_err(|e| failed(e.into()))?;
            Ok(true)
        }
        args::Output::Table => Ok(false),
    }
}

/// Logs (warnings by default, `RUST_LOG` to change) go to stderr, never into the output.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// `3m`, `5h`, `12d`: how kubectl writes ages.
pub fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        use std::time::Duration;
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(human(Duration::from_secs(30 * 86_400)), "30d");
    }
}
