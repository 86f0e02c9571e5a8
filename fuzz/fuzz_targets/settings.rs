//! The settings parsers: durations, sizes, addresses, role ARNs, signal names and rewrites.
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::settings(data));
