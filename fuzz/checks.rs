//! What each fuzz target runs, one function per target, shared by the cargo-fuzz targets
//! (fuzz_targets/*.rs) and by the proptests CI runs (tests/robustness.rs): whatever the input,
//! none of these may panic, hang or use unbounded memory.
#![allow(dead_code)]

use agent::relay::otlp::emf::Emf;
use agent::relay::otlp::estimate;
use agent::relay::otlp::message::{check, chunks, decode, decompress, Format};
use agent::relay::otlp::signal::Signal;
use agent::relay::xray::from_otlp::{convert, Indexed};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// The X-Ray datagram rules (header, body, size), and the health-probe filter on what passes.
pub fn xray_datagram(data: &[u8]) {
    if let Ok(doc) = agent::relay::xray::datagram::parse(data) {
        let _ = agent::relay::xray::datagram::is_health_probe(doc);
    }
}

/// The X-Ray segment document -> OTLP span converter: one document, and a request of several.
pub fn xray_to_otlp(data: &[u8]) {
    if let Ok(doc) = std::str::from_utf8(data) {
        let _ = agent::relay::xray::to_otlp::convert(doc);
        let _ = agent::relay::xray::to_otlp::request(doc.split('\n'));
    }
}

/// OTLP/HTTP protobuf bodies of every signal, with the decoded-size estimate the receiver
/// applies first (gzip undone when the input starts like gzip).
pub fn otlp_protobuf(data: &[u8]) {
    let body = if data.starts_with(&[0x1f, 0x8b]) {
        match decompress(Some("gzip"), bytes::Bytes::copy_from_slice(data)) {
            Ok(b) => b,
            Err(_) => return,
        }
    } else {
        bytes::Bytes::copy_from_slice(data)
    };
    every_signal(Format::Protobuf, &body);
}

/// OTLP/HTTP JSON bodies of every signal (camelCase and the proto's snake_case keys).
pub fn otlp_json(data: &[u8]) {
    every_signal(Format::Json, data);
}

/// What the receiver does with a body of each signal: decode (after the size estimate), drop
/// invalid items, cut into chunks (small ones here, so the splitting runs); metrics also to
/// CloudWatch EMF lines, twice, so cumulative series go through the delta path.
fn every_signal(format: Format, body: &[u8]) {
    receive::<ExportTraceServiceRequest>(format, body);
    receive::<ExportLogsServiceRequest>(format, body);
    if let Some(request) = receive::<ExportMetricsServiceRequest>(format, body) {
        emf(request);
    }
}

fn receive<S: Signal>(format: Format, body: &[u8]) -> Option<S> {
    // The receiver walks only bodies whose bound says they might be too large.
    let (cost, bound) = (estimate::decoded(S::KIND, format, body), estimate::at_most(format, body.len()));
    assert!(cost <= bound, "estimated {cost} > bound {bound}");
    let request = decode::<S>(format, body).ok()?;
    let checked = check(request);
    let kept = checked.request.clone();
    let whole = checked.items;
    let cut = chunks(checked, None, 3, 256);
    assert_eq!(cut.iter().map(|c| c.count).sum::<u64>(), whole, "chunks lose or add items");
    Some(kept)
}

fn emf(request: ExportMetricsServiceRequest) {
    let mut emf = Emf::new(None, Box::new(std::io::sink()));
    let _ = emf.lines(request.clone());
    let _ = emf.lines(request);
}

/// OTLP spans -> X-Ray segment documents (`--otlp-xray-segments`), every attribute indexed.
pub fn otlp_to_segments(data: &[u8]) {
    for format in [Format::Protobuf, Format::Json] {
        if let Ok(request) = decode::<ExportTraceServiceRequest>(format, data) {
            let _ = convert(&request, &Indexed::parse(&["*".to_string()]), 1_700_000_000);
        }
    }
}

/// The `valueFrom` parser: SSM names and ARNs, Secrets Manager ARNs with JSON key, stage, version.
pub fn value_from(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<agent::secrets::reference::Reference>();
    }
}

/// The settings parsers: durations, sizes, addresses, role ARNs, signal names and rewrites.
pub fn settings(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = agent::config::parse_duration(s);
        let _ = agent::config::parse_positive_duration(s);
        let _ = agent::config::parse_size(s);
        let _ = agent::config::parse_address(s);
        let _ = agent::config::parse_role_arn(s);
        let _ = s.parse::<agent::signals::Signo>();
        let _ = s.parse::<agent::signals::Rewrite>();
    }
}

/// StatsD datagrams (`--statsd`): the lines taken into series, flushed as OTLP metrics and
/// written as EMF.
pub fn statsd(data: &[u8]) {
    let mut aggregator = agent::relay::statsd::Aggregator::new("fuzz".to_string());
    aggregator.take(data);
    aggregator.take(data);
    if let Some(request) = aggregator.flush() {
        emf(request);
    }
}
