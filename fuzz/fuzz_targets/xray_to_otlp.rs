//! The X-Ray segment document -> OTLP span converter: one document, and a request of several.
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::xray_to_otlp(data));
