//! Regenerates the committed CRD YAML from the Rust types.
//!
//! `cargo run -p kafka-e2ee-crds --bin crdgen` writes every file listed in `OUTPUTS`;
//! `--check` only compares and exits non-zero on drift (CI runs the crate's test instead,
//! which does the same).

use std::path::PathBuf;

/// Files that hold the generated CRDs, relative to the workspace root.
const OUTPUTS: &[&str] = &[
    "crds/yaml/kafka-e2ee.crds.yaml",
    "charts/kafka-e2ee/crds/kafka-e2ee.crds.yaml",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let check = std::env::args().any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
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
