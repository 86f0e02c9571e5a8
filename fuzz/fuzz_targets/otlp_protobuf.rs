//! OTLP/HTTP protobuf bodies of every signal, with the decoded-size estimate (gzip undone first).
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::otlp_protobuf(data));
