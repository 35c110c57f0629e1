//! Two replicas with leader election: exactly one leads and reconciles; on SIGTERM the leader
//! finishes, releases the Lease and exits cleanly, and the standby takes over at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use std::time::{Duration, Instant};

use support::*;

async fn is_leader(op: &Operator) -> bool {
    op.metric("kafka_e2ee_leader").await >= 1.0
}

#[tokio::test]
async fn one_replica_leads_and_a_standby_takes_over_on_shutdown() {
    let env = TestEnv::new("op-leader").await;
    env.keystore().await;
    let first = env.start_operator(None, &[]);
    first.wait_ready().await;
    let mut second = env.start_operator(None, &[]);
    // The standby is up (serving health) but does not lead.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(is_leader(&first).await);
    assert!(!is_leader(&second).await, "two leaders");

    let mut s = env.spec("a", 1, "keystore");
    s.tek = Some(KEYSTORE_TEK.into());
    env.apply("a", s).await;
    env.wait_ready("a").await;
    assert_eq!(second.metric("kafka_e2ee_reconciles_total").await, 0.0);

    // SIGTERM: the leader stops, releases the Lease, exits 0; the standby leads within a
    // renew period (5 s), not a whole lease duration.
    let pid = first.child.id().unwrap();
    let stopped = Instant::now();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let mut first = first;
    let exit = tokio::time::timeout(WAIT, first.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "leader exited with {exit:?}");
    second.wait_ready().await;
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(12), "takeover took {took:?}");

    let mut s = env.spec("b", 1, "keystore");
    s.tek = Some(KEYSTORE_TEK.into());
    env.apply("b", s).await;
    env.wait_ready("b").await;
    assert!(second.metric("kafka_e2ee_reconciles_total").await >= 1.0);
    assert!(second.child.try_wait().unwrap().is_none());
}
