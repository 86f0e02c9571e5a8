//! The X-Ray datagram rules (header, body, size), and the health-probe filter on what passes.
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::xray_datagram(data));
