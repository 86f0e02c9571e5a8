//! What decoding an OTLP request would take in memory, estimated from its wire form before it is
//! decoded, so that the receiver can refuse (413) a request whose decoded form would be too
//! large: 11 MB of protobuf holding a million tiny attributes decodes to about 110 MB, which
//! would grow PID 1 far past its budget (tests/hostile.rs).
//!
//! Protobuf: one pass over the wire format that knows which fields of OTLP's messages are
//! messages (`child`, read from opentelemetry-proto's definitions; every other field is a
//! leaf), counting `PER_VALUE` bytes for each value at any depth (its struct, its slot in a
//! `Vec`, its allocation) plus the bytes of strings and byte fields; packed varints (the
//! exponential histograms' bucket counts) count 8 bytes each. A malformed body counts what came
//! before the damage (prost would decode that much before failing). JSON: each object, array
//! and string counts as a value, plus the body's length.
//!
//! Linear in the body, no allocation, and deep nesting is walked no deeper than prost decodes.

use super::message::Format;
use super::signal::Kind;

/// Estimated bytes per decoded value (an attribute is four: the KeyValue, its key, its AnyValue
/// and what that holds).
pub const PER_VALUE: usize = 32;
/// prost's own recursion limit: nothing deeper is decoded.
const MAX_DEPTH: u32 = 100;

/// Whether `body`, an OTLP `kind` request in `format`, would take more than `limit` bytes once
/// decoded. A body too short to get there (`at_most`) is not walked: an SDK's batch of 512
/// spans, 100–300 KB, is far below what 16 MiB needs, and the walk was a seventh of the relay's
/// instructions (BENCHMARKS.md).
pub fn over(kind: Kind, format: Format, body: &[u8], limit: usize) -> Option<usize> {
    if at_most(format, body.len()) <= limit {
        return None;
    }
    Some(decoded(kind, format, body)).filter(|&cost| cost > limit)
}

/// The most `decoded` can say of a body of `len` bytes. Protobuf: every value costs `PER_VALUE`
/// and takes at least two bytes (a key, and a value or a length), but for one cut-off key at the
/// end of each message, which takes one: the densest body is a message field holding only a
/// cut-off key, two values in three bytes; a leaf's bytes count once, a packed varint's eight
/// times, both within that. JSON: the body's length, plus a value for each `{`, `[` and pair
/// of quotes, one byte each at most.
pub fn at_most(format: Format, len: usize) -> usize {
    match format {
        Format::Protobuf => len.saturating_mul(2 * PER_VALUE).div_ceil(3).saturating_add(PER_VALUE),
        Format::Json => len.saturating_mul(PER_VALUE + 1),
    }
}

/// The estimated memory `body`, an OTLP `kind` request in `format`, takes once decoded.
pub fn decoded(kind: Kind, format: Format, body: &[u8]) -> usize {
    match format {
        Format::Protobuf => {
            let root = match kind {
                Kind::Traces => Msg::TracesRequest,
                Kind::Metrics => Msg::MetricsRequest,
                Kind::Logs => Msg::LogsRequest,
            };
            let mut cost = 0;
            walk(body, root, 0, &mut cost);
            cost
        }
        Format::Json => json(body),
    }
}

/// The OTLP message types with fields that hold messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    TracesRequest,
    MetricsRequest,
    LogsRequest,
    ResourceSpans,
    ResourceMetrics,
    ResourceLogs,
    Resource,
    ScopeSpans,
    ScopeMetrics,
    ScopeLogs,
    Scope,
    Span,
    Event,
    Link,
    LogRecord,
    Metric,
    /// Gauge and Sum: their data points are NumberDataPoints.
    Numbers,
    Histogram,
    ExpHistogram,
    Summary,
    NumberPoint,
    HistogramPoint,
    ExpPoint,
    Buckets,
    SummaryPoint,
    Exemplar,
    KeyValue,
    AnyValue,
    ArrayValue,
    KvList,
    /// A message with no message fields (Status, EntityRef, ValueAtQuantile).
    Leaf,
}

enum Child {
    Message(Msg),
    PackedVarints,
    Bytes,
}

/// What field `field` of a `msg` holds (opentelemetry-proto 1.x; the numbers are the protos').
fn child(msg: Msg, field: u64) -> Child {
    use Msg::*;
    let m = match (msg, field) {
        (TracesRequest, 1) => ResourceSpans,
        (MetricsRequest, 1) => ResourceMetrics,
        (LogsRequest, 1) => ResourceLogs,
        (ResourceSpans | ResourceMetrics | ResourceLogs, 1) => Resource,
        (ResourceSpans, 2) => ScopeSpans,
        (ResourceMetrics, 2) => ScopeMetrics,
        (ResourceLogs, 2) => ScopeLogs,
        (Resource, 1) => KeyValue,
        (Resource, 3) => Leaf,
        (ScopeSpans | ScopeMetrics | ScopeLogs, 1) => Scope,
        (ScopeSpans, 2) => Span,
        (ScopeMetrics, 2) => Metric,
        (ScopeLogs, 2) => LogRecord,
        (Scope, 3) => KeyValue,
        (Span, 9) | (Event, 3) | (Link, 4) => KeyValue,
        (Span, 11) => Event,
        (Span, 13) => Link,
        (Span, 15) => Leaf,
        (LogRecord, 5) => AnyValue,
        (LogRecord, 6) => KeyValue,
        (Metric, 5 | 7) => Numbers,
        (Metric, 9) => Histogram,
        (Metric, 10) => ExpHistogram,
        (Metric, 11) => Summary,
        (Metric, 12) => KeyValue,
        (Numbers, 1) => NumberPoint,
        (Histogram, 1) => HistogramPoint,
        (ExpHistogram, 1) => ExpPoint,
        (Summary, 1) => SummaryPoint,
        (NumberPoint, 7) | (HistogramPoint, 9) | (ExpPoint, 1) | (SummaryPoint, 7) | (Exemplar, 7) => KeyValue,
        (NumberPoint, 5) | (HistogramPoint, 8) | (ExpPoint, 11) => Exemplar,
        (ExpPoint, 8 | 9) => Buckets,
        (SummaryPoint, 6) => Leaf,
        (Buckets, 2) => return Child::PackedVarints,
        (KeyValue, 2) => AnyValue,
        (AnyValue, 5) => ArrayValue,
        (AnyValue, 6) => KvList,
        (ArrayValue, 1) => AnyValue,
        (KvList, 1) => KeyValue,
        _ => return Child::Bytes,
    };
    Child::Message(m)
}

fn varint(buf: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*i)?;
        *i += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Adds what `buf`, a `msg`, costs to `cost`; stops at the first malformed field.
fn walk(buf: &[u8], msg: Msg, depth: u32, cost: &mut usize) {
    let mut i = 0;
    while i < buf.len() {
        let Some(key) = varint(buf, &mut i) else { return };
        *cost += PER_VALUE;
        match key & 7 {
            0 => {
                if varint(buf, &mut i).is_none() {
                    return;
                }
            }
            1 => i += 8,
            5 => i += 4,
            2 => {
                let Some(len) = varint(buf, &mut i).and_then(|l| usize::try_from(l).ok()) else { return };
                let Some(payload) = i.checked_add(len).and_then(|end| buf.get(i..end)) else { return };
                i += len;
                match child(msg, key >> 3) {
                    Child::Message(m) if depth < MAX_DEPTH => walk(payload, m, depth + 1, cost),
                    Child::PackedVarints => *cost += payload.len() * 8,
                    _ => *cost += payload.len(),
                }
            }
            _ => return, // groups: not in OTLP; prost refuses them
        }
    }
}

/// A JSON body: its length, plus a value for each object, array and string.
fn json(body: &[u8]) -> usize {
    let (mut nests, mut quotes) = (0, 0);
    for &b in body {
        match b {
            b'{' | b'[' => nests += 1,
            b'"' => quotes += 1,
            _ => {}
        }
    }
    // Two quotes a string (an escaped quote inside one counts it a little high).
    body.len() + (nests + quotes / 2) * PER_VALUE
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn request(attributes: usize) -> Vec<u8> {
        let kv = |i: usize| KeyValue {
            key: "k".into(),
            value: Some(AnyValue { value: Some(any_value::Value::IntValue(i as i64)) }),
            ..Default::default()
        };
        let span = Span {
            name: "s".into(),
            trace_id: vec![1; 16],
            span_id: vec![1; 8],
            attributes: (0..attributes).map(kv).collect(),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans { scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }], ..Default::default() }],
        }
        .encode_to_vec()
    }

    #[test]
    fn attributes_are_counted_at_their_depth() {
        let small = decoded(Kind::Traces, Format::Protobuf, &request(10));
        let big = decoded(Kind::Traces, Format::Protobuf, &request(100_000));
        // Four values per attribute: the KeyValue, its key, its AnyValue, the int.
        let per_attribute = (big - small) / 99_990;
        assert!((4 * PER_VALUE..=4 * PER_VALUE + 8).contains(&per_attribute), "{per_attribute}");
        // The estimate is of the same order as what decoding takes (a decoded KeyValue with its
        // key's allocation is about 100 bytes): a million attributes in 11 MB estimate > 100 MB.
        assert!(decoded(Kind::Traces, Format::Protobuf, &request(1_000_000)) > 100 << 20);
    }

    #[test]
    fn damaged_and_deep_bodies_are_walked_safely() {
        let mut body = request(1000);
        let whole = decoded(Kind::Traces, Format::Protobuf, &body);
        body.truncate(body.len() / 2);
        let half = decoded(Kind::Traces, Format::Protobuf, &body);
        assert!(half > 0 && half < whole, "{half} of {whole}");
        assert_eq!(decoded(Kind::Traces, Format::Protobuf, &[0xff; 20]), 0, "a key that never ends");
        // 20,000 levels of length-delimited fields: walked to prost's depth, not further.
        let mut deep: Vec<u8> = Vec::new();
        for _ in 0..20_000 {
            let mut next = vec![0x0a];
            let mut len = deep.len();
            while len >= 0x80 {
                next.push((len as u8) | 0x80);
                len >>= 7;
            }
            next.push(len as u8);
            next.extend_from_slice(&deep);
            deep = next;
        }
        assert!(decoded(Kind::Traces, Format::Protobuf, &deep) < deep.len() + 200 * PER_VALUE);
    }

    #[test]
    fn no_body_is_estimated_over_its_bound() {
        // The densest bodies for the walk: a cut-off key alone; message fields (each kind of
        // message: trace request > resource spans > scope spans > span > attribute > value)
        // holding only a cut-off key, nested; packed varints; and a JSON body of brackets.
        let mut dense: Vec<Vec<u8>> = vec![vec![0x08], vec![0x0a, 0x01, 0x08], vec![0x0a, 0x00]];
        let mut nested = vec![0x08];
        for field in [5u8, 2, 9, 2, 2, 1] {
            let mut outer = vec![(field << 3) | 2, nested.len() as u8];
            outer.extend_from_slice(&nested);
            nested = outer;
            dense.push(nested.clone());
        }
        let walked = decoded(Kind::Traces, Format::Protobuf, &nested);
        assert_eq!(walked, 7 * PER_VALUE, "all six levels walked, and the cut-off key");
        dense.push([0x0a, 0x01, 0x08].repeat(1000));
        for body in &dense {
            for kind in [Kind::Traces, Kind::Metrics, Kind::Logs] {
                let (cost, bound) = (decoded(kind, Format::Protobuf, body), at_most(Format::Protobuf, body.len()));
                assert!(cost <= bound, "{cost} > {bound} for {body:02x?}");
            }
        }
        // The three-byte message of a cut-off key is the worst case, so the bound is tight.
        assert_eq!(decoded(Kind::Traces, Format::Protobuf, &[0x0a, 0x01, 0x08].repeat(1000)), 1000 * 2 * PER_VALUE);
        assert_eq!(decoded(Kind::Traces, Format::Json, &[b'['; 100]), at_most(Format::Json, 100));
        let big = request(600_000);
        assert!(over(Kind::Traces, Format::Protobuf, &big, 16 << 20).is_some(), "a big body is still walked and refused");
        assert_eq!(over(Kind::Traces, Format::Protobuf, &request(1000), 16 << 20), None);
    }

    #[test]
    fn json_counts_objects_arrays_and_strings() {
        assert_eq!(decoded(Kind::Traces, Format::Json, br#"{"a":[1,2]}"#), 11 + 3 * PER_VALUE);
    }
}
