//! Shared helpers for the integration tests: where the test bed's servers are, and a clear
//! failure (naming the command that starts it) when one is not up. Tests never skip silently.

pub mod attacker;
pub mod bed;
pub mod fixture;
pub mod kube_env;
pub mod traffic;

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A server of `scripts/testbed`, with the variable tests read its address from.
#[derive(Clone, Copy, Debug)]
pub enum Server {
    KubeApiserver,
    Kafka,
    Vault,
    AwsKms,
    HadoopKms,
}

impl Server {
    /// The test bed component name (`scripts/testbed up <component>`).
    pub fn component(self) -> &'static str {
        match self {
            Server::KubeApiserver => "apiserver",
            Server::Kafka => "kafka",
            Server::Vault => "vault",
            Server::AwsKms => "moto",
            Server::HadoopKms => "hkms",
        }
    }

    fn address_var(self) -> &'static str {
        match self {
            Server::KubeApiserver => "KUBECONFIG",
            Server::Kafka => "KE_KAFKA_BOOTSTRAP",
            Server::Vault => "VAULT_ADDR",
            Server::AwsKms => "KE_AWS_KMS_ENDPOINT",
            Server::HadoopKms => "KE_HADOOP_KMS_URL",
        }
    }

    fn how_to_start(self) -> String {
        format!(
            "start it with `scripts/testbed up {}` and load its settings with `eval \"$(scripts/testbed env)\"` \
             (or run everything with `scripts/test`)",
            self.component()
        )
    }
}

/// A required environment variable of the test bed; panics with how to provide it.
#[expect(
    clippy::panic,
    reason = "test support: a missing server must fail the test, loudly"
)]
pub fn env(server: Server, var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set, so the {} test bed server is unknown: {}",
            server.component(),
            server.how_to_start()
        ),
    }
}

/// The address (URL, bootstrap list or kubeconfig path) of `server`, after checking that
/// something is listening there. Panics with the command that starts it otherwise.
#[expect(
    clippy::panic,
    reason = "test support: a missing server must fail the test, loudly"
)]
pub fn require(server: Server) -> String {
    let value = env(server, server.address_var());
    let probe = match server {
        Server::KubeApiserver => kubeconfig_server(&value),
        Server::Kafka => Some(value.split(',').next().unwrap_or_default().to_owned()),
        _ => host_port_of_url(&value),
    };
    let Some(hostport) = probe else {
        panic!(
            "cannot find a host:port in {}={value}",
            server.address_var()
        );
    };
    if !listening(&hostport) {
        panic!(
            "the {} test bed server is not reachable at {hostport}: {}",
            server.component(),
            server.how_to_start()
        );
    }
    value
}

fn listening(hostport: &str) -> bool {
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    addrs
        .iter()
        .any(|a| TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok())
}

/// `http://h:p/path` -> `h:p`.
fn host_port_of_url(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let hostport = rest.split('/').next()?;
    hostport.contains(':').then(|| hostport.to_owned())
}

fn kubeconfig_server(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))?
        .trim();
    host_port_of_url(url)
}

/// This thread's CPU seconds so far, from its schedstat (nanosecond resolution). For the
/// benchmarks.
pub fn this_thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0) as f64
        / 1e9
}

/// CPU seconds every live thread of process `pid` ("self" for this one) has used, with the
/// nanosecond resolution of `/proc/<pid>/task/<tid>/schedstat` (utime ticks are 10 ms); 0 when
/// the process is gone. For the benchmarks.
pub fn cpu_seconds(pid: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut ns = 0u64;
    for task in tasks.flatten() {
        // A thread may exit between listing and reading.
        if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += stat
                .split(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

/// A name unique to this test run, so reruns against a long-lived test bed never collide.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{:x}-{}",
        nanos & 0xffff_ffff_ffff,
        std::process::id()
    )
}

/// A binary of another workspace package, built beside this test binary
/// (`target/<profile>/deps/<test>` -> `target/<profile>/<name>`); `cargo test --workspace`
/// builds them all.
#[expect(
    clippy::panic,
    reason = "test support: a missing binary must fail the test, loudly"
)]
pub fn sibling_binary(name: &str) -> PathBuf {
    let path = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|dir| dir.join(name));
    match path {
        Some(path) if path.exists() => path,
        other => panic!(
            "{name} is missing ({other:?}): build it first (`cargo build --workspace`, or run the suite with `cargo test --workspace` / scripts/test)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_of_url_extracts_authority() {
        assert_eq!(
            host_port_of_url("http://127.0.0.1:8200"),
            Some("127.0.0.1:8200".into())
        );
        assert_eq!(
            host_port_of_url("http://127.0.0.1:9600/kms"),
            Some("127.0.0.1:9600".into())
        );
        assert_eq!(host_port_of_url("no-scheme"), None);
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique("t"), unique("t"));
    }
}
