//! Crash points for the crash-safety tests: with `KAFKA_E2EE_CRASH_AT=<point>` set, the
//! operator aborts (no destructors, no flushing: as abrupt as `kill -9`) the first time it
//! passes that point. Unset, each check is one comparison against a value read once.

use std::sync::OnceLock;

/// The environment variable naming the point to crash at.
pub const CRASH_AT_ENV: &str = "KAFKA_E2EE_CRASH_AT";

/// Every crash point of a reconciliation, in the order it passes them.
pub const POINTS: &[&str] = &[
    "after-tek-claimed",
    "after-tek",
    "after-topic",
    "after-rewrap",
    "after-edeks",
    "after-policy",
];

/// Every crash point of crypto-shredding, in the order it passes them.
pub const SHRED_POINTS: &[&str] = &["shred-after-tek", "shred-after-keys", "shred-after-topic"];

/// Every crash point of a signing-key rotation, in the order it passes them.
pub const ROTATION_POINTS: &[&str] = &[
    "after-signing-key-prepared",
    "after-signing-key-activated",
    "after-resign",
    "after-signing-key-retired",
];

fn configured() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| std::env::var(CRASH_AT_ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Aborts the process if `point` is the configured crash point.
pub fn point(point: &'static str) {
    if configured() == Some(point) {
        eprintln!("kafka-e2ee-operator: crash point {point} reached, aborting");
        std::process::abort();
    }
}
