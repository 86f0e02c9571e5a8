//! StatsD datagrams: lines into series, flushed as OTLP metrics and written as EMF.
#![no_main]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::statsd(data));
