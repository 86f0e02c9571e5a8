//! OTLP spans -> X-Ray segment documents (`--otlp-xray-segments`), every attribute indexed.
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::otlp_to_segments(data));
