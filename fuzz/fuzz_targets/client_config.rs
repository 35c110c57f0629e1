//! The injected client configuration file.
#![no_main]

use kafka_e2ee_core::config::ClientConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ClientConfig::parse(text, "fuzz");
    }
});
