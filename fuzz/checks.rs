//! What each fuzz target runs, one function per target, shared by the cargo-fuzz targets
//! (fuzz_targets/*.rs) and by the proptests CI runs (tests/robustness.rs): whatever the input,
//! none of these may panic, hang or use unbounded memory.
#![allow(dead_code)]

use agent::relay::otlp::message::{decode, decompress, Format};
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
    let _ = decode::<ExportTraceServiceRequest>(Format::Protobuf, &body);
    let _ = decode::<ExportMetricsServiceRequest>(Format::Protobuf, &body);
    let _ = decode::<ExportLogsServiceRequest>(Format::Protobuf, &body);
}

/// OTLP/HTTP JSON bodies of every signal (camelCase and the proto's snake_case keys).
pub fn otlp_json(data: &[u8]) {
    let _ = decode::<ExportTraceServiceRequest>(Format::Json, data);
    let _ = decode::<ExportMetricsServiceRequest>(Format::Json, data);
    let _ = decode::<ExportLogsServiceRequest>(Format::Json, data);
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
