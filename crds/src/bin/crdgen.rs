//! Regenerates the committed CRD YAML from the Rust types.
//!
//! `cargo run -p kafka-e2ee-crds --bin crdgen` writes every file listed in `OUTPUTS`;
//! `--check` only compares and exits non-zero on drift (CI runs the crate's test instead,
//! which does the same).

use std::path::PathBuf;

/// Files that hold the generated CRDs, relative to the workspace root (see `workspace_root`).
const OUTPUTS: &[&str] = &[
    "crds/yaml/kafka-e2ee.crds.yaml",
    "charts/kafka-e2ee/crds/kafka-e2ee.crds.yaml",
];

/// The workspace this is run in: the current folder or the nearest one above it that holds
/// `crds/Cargo.toml`. Found at run time, not from `CARGO_MANIFEST_DIR` baked in at build time:
/// clones sharing one target folder overwrite each other's `target/debug/crdgen`, and a binary
/// built in another clone would check (or write) that clone's files.
fn workspace_root() -> std::io::Result<PathBuf> {
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("crds").join("Cargo.toml").is_file() {
            return Ok(dir);
        }
        if !dir.pop() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "run crdgen inside the kafka-e2ee workspace (no crds/Cargo.toml here or above)",
            ));
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let check = std::env::args().any(|a| a == "--check");
    let root = workspace_root()?;
    let yaml = kafka_e2ee_crds::crds_yaml()?;
    let mut drift = false;
    for rel in OUTPUTS {
        let path = root.join(rel);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == yaml {
            continue;
        }
        if check {
            eprintln!("{rel} is out of date: run `cargo run -p kafka-e2ee-crds --bin crdgen`");
            drift = true;
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, &yaml)?;
            eprintln!("wrote {rel}");
        }
    }
    if drift {
        std::process::exit(1);
    }
    Ok(())
}
