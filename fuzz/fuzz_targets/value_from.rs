//! The `valueFrom` parser: SSM names and ARNs, Secrets Manager ARNs with JSON key, stage, version.
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::value_from(data));
