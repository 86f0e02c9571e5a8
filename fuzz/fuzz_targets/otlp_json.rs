//! OTLP/HTTP JSON bodies of every signal (camelCase and the proto's snake_case keys).
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::otlp_json(data));
