//! OTLP/HTTP export requests, any signal (`signal.rs`): what apps send (protobuf or JSON, gzip
//! or not), checked, and cut into protobuf chunks that fit an upstream's limits; and the answers
//! the spec asks for.
//!
//! Chunks are kept as encoded protobuf because every export request is one repeated field: two
//! encoded requests written one after the other decode as one request holding both lists. So a
//! batch for an upstream is its chunks' bytes concatenated, with no re-encoding.

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

use super::signal::{Kind, Signal};
use crate::relay::buffer::Item;

/// The largest request body the receiver takes, after decompression.
pub const MAX_BODY: usize = 8 << 20;
/// The most a request may take once decoded, as `estimate.rs` reckons it from the wire (a
/// typical span of 300 bytes counts about 1.1 KB, so this admits requests of about 4 MiB).
pub const MAX_DECODED: usize = 16 << 20;
/// X-Ray's OTLP endpoint takes at most 10,000 spans and 5 MB (uncompressed) in one request;
/// every upstream gets batches within these (spans, data points or log records), with room to
/// spare on the bytes.
pub const MAX_ITEMS: u64 = 10_000;
pub const MAX_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// The format a Content-Type names (parameters such as `charset` are ignored).
    pub fn from_content_type(value: &str) -> Option<Format> {
        match value.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// Why a request body was refused (400 or 413), said so a developer knows what to change.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("Content-Encoding {0:?} is not supported: send gzip or no encoding")]
    Encoding(String),
    #[error("the body is not valid gzip: {0}")]
    Gzip(String),
    #[error("the body is over {} MiB (after decompression); send smaller batches", MAX_BODY >> 20)]
    TooLarge,
    #[error("the request holds too many values: it would take about {} MiB once decoded (at most {} MiB); send smaller batches", .0 >> 20, MAX_DECODED >> 20)]
    TooMany(usize),
    #[error("the body is not an OTLP {kind} in protobuf: {1}", kind = .0.request())]
    Protobuf(Kind, String),
    #[error("the body is not an OTLP {kind} in JSON: {1}", kind = .0.request())]
    Json(Kind, String),
}

/// Undoes the Content-Encoding, within `MAX_BODY`.
pub fn decompress(encoding: Option<&str>, body: Bytes) -> Result<Bytes, BadRequest> {
    use std::io::Read;
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > MAX_BODY {
                return Err(BadRequest::TooLarge);
            }
            Ok(body)
        }
        Some("gzip") => {
            // Room for the limit at once: pages are only taken as they are written, and the
            // buffer never doubles past the limit (which would copy, and hold, twice as much).
            let mut out = Vec::with_capacity(MAX_BODY + 1);
            flate2::read::GzDecoder::new(&body[..]).take(MAX_BODY as u64 + 1).read_to_end(&mut out).map_err(|e| BadRequest::Gzip(e.to_string()))?;
            if out.len() > MAX_BODY {
                return Err(BadRequest::TooLarge);
            }
            Ok(out.into())
        }
        Some(other) => Err(BadRequest::Encoding(other.to_string())),
    }
}

pub fn decode<S: Signal>(format: Format, body: &[u8]) -> Result<S, BadRequest> {
    if let Some(cost) = super::estimate::over(S::KIND, format, body, MAX_DECODED) {
        return Err(BadRequest::TooMany(cost));
    }
    let json = |e: serde_json::Error| BadRequest::Json(S::KIND, e.to_string());
    match format {
        Format::Protobuf => S::decode(body).map_err(|e| BadRequest::Protobuf(S::KIND, e.to_string())),
        Format::Json if snake_case::<S>(body) => {
            // The proto field names (`resource_spans`), which the Collector accepts too: the
            // keys are rewritten to the JSON names the decoder knows (`resourceSpans`). OTLP
            // JSON has no maps, so every object key is a field name.
            let mut v: serde_json::Value = serde_json::from_slice(body).map_err(json)?;
            camel_keys(&mut v, 0);
            serde_json::from_value(v).map_err(json)
        }
        Format::Json => serde_json::from_slice(body).map_err(json),
    }
}

/// Whether a JSON body uses the proto field names of OTLP rather than the JSON ones.
fn snake_case<S: Signal>(body: &[u8]) -> bool {
    S::SNAKE_KEYS.iter().any(|k| body.windows(k.len()).any(|w| w == *k))
}

/// `start_time_unix_nano` → `startTimeUnixNano`, for every object key (to a depth that
/// serde_json's own recursion limit already bounds).
fn camel_keys(v: &mut serde_json::Value, depth: usize) {
    match v {
        serde_json::Value::Object(map) if depth < 200 => {
            let old = std::mem::take(map);
            for (k, mut val) in old {
                camel_keys(&mut val, depth + 1);
                let key = if k.contains('_') {
                    let mut out = String::with_capacity(k.len());
                    let mut up = false;
                    for c in k.chars() {
                        match (c, up) {
                            ('_', _) => up = true,
                            (c, true) => {
                                out.extend(c.to_uppercase());
                                up = false
                            }
                            (c, false) => out.push(c),
                        }
                    }
                    out
                } else {
                    k
                };
                map.insert(key, val);
            }
        }
        serde_json::Value::Array(items) if depth < 200 => items.iter_mut().for_each(|i| camel_keys(i, depth + 1)),
        _ => {}
    }
}

/// A request after checking: its items kept (counted in the signal's unit), and those dropped.
#[derive(Debug)]
pub struct Checked<S> {
    pub request: S,
    pub items: u64,
    pub invalid: u64,
}

/// Drops invalid items (and scopes and resources left empty).
pub fn check<S: Signal>(mut request: S) -> Checked<S> {
    let (mut items, mut invalid) = (0u64, 0u64);
    let mut all_valid = true;
    for rs in request.resources().iter_mut() {
        for ss in S::scopes(rs).iter_mut() {
            for item in S::items(ss).iter() {
                all_valid &= S::valid(item);
                items += S::count(item);
            }
        }
    }
    if all_valid {
        return Checked { request, items, invalid };
    }
    items = 0;
    for rs in request.resources().iter_mut() {
        for ss in S::scopes(rs).iter_mut() {
            S::items(ss).retain(|item| {
                if S::valid(item) {
                    items += S::count(item);
                    true
                } else {
                    // At least one, so a dropped metric without data points still shows.
                    invalid += S::count(item).max(1);
                    false
                }
            });
        }
        S::scopes(rs).retain_mut(|ss| !S::items(ss).is_empty());
    }
    request.resources().retain_mut(|rs| !S::scopes(rs).is_empty());
    Checked { request, items, invalid }
}

/// Adds `attributes` (the task's identity) to every resource of `request`, each only where the
/// resource does not have that key already: what the app set wins. Whether anything was added.
pub fn enrich<S: Signal>(request: &mut S, attributes: &[KeyValue]) -> bool {
    if attributes.is_empty() {
        return false; // not on ECS: the request is left exactly as it came
    }
    let mut added = false;
    for rs in request.resources().iter_mut() {
        let resource = S::resource(rs).get_or_insert_with(Default::default);
        for a in attributes {
            if !resource.attributes.iter().any(|have| have.key == a.key) {
                resource.attributes.push(a.clone());
                added = true;
            }
        }
    }
    added
}

/// Items encoded as an export request, ready to be concatenated into a batch.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub body: Bytes,
    /// Spans, data points or log records.
    pub count: u64,
}

impl Item for Chunk {
    fn bytes(&self) -> usize {
        self.body.len()
    }
    fn count(&self) -> u64 {
        self.count
    }
}

/// Cuts checked items into chunks of at most `max_count` (an item at least) and (an item at
/// least) `max_bytes` bytes. `original` is the request's own protobuf encoding, reused when
/// nothing was dropped and it fits in one chunk, which is the usual case.
pub fn chunks<S: Signal>(checked: Checked<S>, original: Option<Bytes>, max_count: u64, max_bytes: usize) -> Vec<Chunk> {
    let Checked { mut request, items, invalid } = checked;
    if items == 0 {
        return Vec::new();
    }
    if items <= max_count {
        if let Some(body) = original.filter(|b| invalid == 0 && b.len() <= max_bytes) {
            return vec![Chunk { body, count: items }];
        }
        if request.encoded_len() <= max_bytes {
            return vec![Chunk { body: request.encode_to_vec().into(), count: items }];
        }
    }
    let mut out = Vec::new();
    let mut cur = Splitter::<S>::default();
    for mut rs in std::mem::take(request.resources()) {
        let scopes = std::mem::take(S::scopes(&mut rs));
        let rs_head = rs;
        cur.open_rs = false;
        for mut ss in scopes {
            let items = std::mem::take(S::items(&mut ss));
            let ss_head = ss;
            cur.open_ss = false;
            for item in items {
                // An item's share of the encoding: its bytes and its field header.
                let (n, len) = (S::count(&item), item.encoded_len() + 8);
                if cur.items > 0 && (cur.count + n > max_count || cur.bytes + len > max_bytes) {
                    out.push(cur.close());
                }
                if !cur.open_rs {
                    cur.bytes += rs_head.encoded_len() + 8;
                    cur.request.resources().push(rs_head.clone());
                    cur.open_rs = true;
                }
                let rs = cur.request.resources().last_mut().expect("opened above");
                if !cur.open_ss {
                    cur.bytes += ss_head.encoded_len() + 8;
                    S::scopes(rs).push(ss_head.clone());
                    cur.open_ss = true;
                }
                S::items(S::scopes(rs).last_mut().expect("opened above")).push(item);
                cur.items += 1;
                cur.count += n;
                cur.bytes += len;
            }
        }
    }
    if cur.items > 0 {
        out.push(cur.close());
    }
    out
}

/// The chunk being filled by `chunks`.
#[derive(Default)]
struct Splitter<S> {
    request: S,
    items: usize,
    count: u64,
    bytes: usize,
    /// Whether the last resource (scope) in `request` is the one being read.
    open_rs: bool,
    open_ss: bool,
}

impl<S: Signal> Splitter<S> {
    fn close(&mut self) -> Chunk {
        let request = std::mem::take(&mut self.request);
        let chunk = Chunk { body: request.encode_to_vec().into(), count: self.count };
        *self = Splitter::default();
        chunk
    }
}

/// The success answer: empty, or a partial success naming how many items were dropped and why.
pub fn response<S: Signal>(format: Format, rejected: u64, reason: &str) -> Vec<u8> {
    let answer = S::response(rejected, reason);
    match format {
        Format::Protobuf => answer.encode_to_vec(),
        Format::Json => serde_json::to_vec(&answer).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP error answers carry (and gRPC's
/// `grpc-status-details-bin`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// google.rpc.Code: the request was wrong.
pub const INVALID_ARGUMENT: i32 = 3;
/// google.rpc.Code: try again later.
pub const UNAVAILABLE: i32 = 14;

/// An error answer's body, in the request's format (protobuf when it was unknown).
pub fn status(format: Option<Format>, code: i32, message: &str) -> Vec<u8> {
    match format {
        Some(Format::Json) => serde_json::json!({ "code": code, "message": message }).to_string().into_bytes(),
        _ => Status { code, message: message.to_string(), details: Vec::new() }.encode_to_vec(),
    }
}

/// The partial success an upstream reported in its answer, if any: (rejected items, message).
pub fn partial_success<S: Signal>(body: &[u8], format: Format) -> Option<(u64, String)> {
    let answer: S::Response = match format {
        Format::Protobuf => S::Response::decode(body).ok()?,
        Format::Json => serde_json::from_slice(body).ok()?,
    };
    let (rejected, message) = S::partial(answer)?;
    (rejected > 0 || !message.is_empty()).then(|| (rejected.max(0) as u64, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    type Traces = ExportTraceServiceRequest;

    fn span(i: u8, name_len: usize) -> Span {
        Span { trace_id: vec![i | 1; 16], span_id: vec![i | 1; 8], name: "x".repeat(name_len), ..Default::default() }
    }

    fn request(resources: usize, scopes: usize, spans: usize, name_len: usize) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: (0..resources)
                .map(|r| ResourceSpans {
                    schema_url: format!("r{r}"),
                    scope_spans: (0..scopes)
                        .map(|s| ScopeSpans {
                            scope: Some(InstrumentationScope { name: format!("s{s}"), ..Default::default() }),
                            spans: (0..spans).map(|i| span(i as u8, name_len)).collect(),
                            schema_url: String::new(),
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn names(req: &ExportTraceServiceRequest) -> Vec<(String, String, usize)> {
        req.resource_spans
            .iter()
            .flat_map(|r| {
                r.scope_spans.iter().flat_map(move |s| s.spans.iter().map(move |_| (r.schema_url.clone(), s.scope.as_ref().unwrap().name.clone(), 1)))
            })
            .collect()
    }

    #[test]
    fn concatenated_chunks_decode_as_the_original_request() {
        let req = request(3, 2, 25, 40);
        let expected = names(&req);
        let checked = check(req.clone());
        assert_eq!((checked.items, checked.invalid), (150, 0));
        let parts = chunks(checked, None, 7, usize::MAX);
        assert_eq!(parts.len(), 150usize.div_ceil(7));
        assert!(parts.iter().all(|c| c.count <= 7));
        let joined: Vec<u8> = parts.iter().flat_map(|c| c.body.to_vec()).collect();
        let back = ExportTraceServiceRequest::decode(&joined[..]).unwrap();
        assert_eq!(names(&back), expected, "every span, under its own resource and scope, in order");
    }

    #[test]
    fn chunks_respect_the_byte_limit() {
        let req = request(1, 1, 100, 1000);
        let parts = chunks(check(req), None, MAX_ITEMS, 20_000);
        assert!(parts.len() >= 5);
        for c in &parts {
            assert!(c.body.len() <= 20_000, "chunk of {} bytes", c.body.len());
        }
        assert_eq!(parts.iter().map(|c| c.count).sum::<u64>(), 100);
    }

    #[test]
    fn a_request_that_fits_keeps_its_own_bytes() {
        let req = request(1, 1, 3, 10);
        let original: Bytes = req.encode_to_vec().into();
        let parts = chunks(check(req), Some(original.clone()), MAX_ITEMS, MAX_BYTES);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].body, original);
    }

    #[test]
    fn invalid_ids_are_dropped_and_counted() {
        let mut req = request(2, 1, 2, 5);
        req.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![0; 16];
        req.resource_spans[1].scope_spans[0].spans[0].span_id = vec![1; 4];
        req.resource_spans[1].scope_spans[0].spans[1].span_id.clear();
        let checked = check(req);
        assert_eq!((checked.items, checked.invalid), (1, 3));
        assert_eq!(checked.request.resource_spans.len(), 1, "the emptied resource is gone");
    }

    #[test]
    fn snake_case_json_is_read_as_the_collector_reads_it() {
        let body = br#"{"resource_spans":[{"resource":{"attributes":[{"key":"service.name","value":{"string_value":"svc"}}]},
            "scope_spans":[{"spans":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
            "name":"GET /x","kind":2,"start_time_unix_nano":"1544712660000000000","end_time_unix_nano":"1544712661000000000"}]}]}]}"#;
        let r = decode::<Traces>(Format::Json, body).unwrap();
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((span.name.as_str(), span.trace_id.len(), span.span_id.len()), ("GET /x", 16, 8));
        assert_eq!(span.start_time_unix_nano, 1544712660000000000);
        let attr = &r.resource_spans[0].resource.as_ref().unwrap().attributes[0];
        assert_eq!(attr.key, "service.name", "values are not keys: left alone");
        assert_eq!(check(r).items, 1);
    }

    #[test]
    fn json_bodies_use_hex_ids_and_string_times() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeSpans":[{"scope":{"name":"t"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"GET /","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000"}]}]}]}"#;
        let req = decode::<Traces>(Format::Json, body).unwrap();
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id[0], 0x5b);
        assert_eq!(s.start_time_unix_nano, 1544712660000000000);
        assert!(matches!(decode::<Traces>(Format::Json, b"{\"resourceSpans\": 3}"), Err(BadRequest::Json(..))));
        assert!(matches!(decode::<Traces>(Format::Protobuf, b"\xff\xff\xff"), Err(BadRequest::Protobuf(..))));
    }

    #[test]
    fn gzip_is_undone_within_the_limit() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello").unwrap();
        let gz: Bytes = enc.finish().unwrap().into();
        assert_eq!(&decompress(Some("gzip"), gz).unwrap()[..], b"hello");
        assert!(matches!(decompress(Some("gzip"), Bytes::from_static(b"nope")), Err(BadRequest::Gzip(_))));
        assert!(matches!(decompress(Some("br"), Bytes::new()), Err(BadRequest::Encoding(_))));
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&vec![0u8; MAX_BODY + 1]).unwrap();
        assert!(matches!(decompress(Some("gzip"), enc.finish().unwrap().into()), Err(BadRequest::TooLarge)), "a gzip bomb stops at the limit");
    }

    #[test]
    fn answers_carry_partial_success() {
        let body = response::<Traces>(Format::Protobuf, 2, "2 spans had invalid IDs");
        assert_eq!(partial_success::<Traces>(&body, Format::Protobuf), Some((2, "2 spans had invalid IDs".into())));
        assert!(response::<Traces>(Format::Protobuf, 0, "").is_empty());
        let json = String::from_utf8(response::<Traces>(Format::Json, 1, "why")).unwrap();
        assert!(json.contains("\"rejectedSpans\""), "{json}");
    }

    fn gauge(name: &str, points: usize) -> opentelemetry_proto::tonic::metrics::v1::Metric {
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, Gauge, Metric, NumberDataPoint};
        let data_points = (0..points).map(|i| NumberDataPoint { time_unix_nano: i as u64 + 1, ..Default::default() }).collect();
        Metric { name: name.to_string(), data: Some(Data::Gauge(Gauge { data_points })), ..Default::default() }
    }

    #[test]
    fn metrics_count_data_points_and_split_between_metrics() {
        use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
        let metrics = vec![gauge("a", 3), gauge("", 2), gauge("b", 4), gauge("c", 4)];
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics { scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }], ..Default::default() }],
        };
        let checked = check(req);
        assert_eq!((checked.items, checked.invalid), (11, 2), "data points kept, and those of the nameless metric");
        let parts = chunks(checked, None, 7, usize::MAX);
        assert_eq!(parts.iter().map(|c| c.count).collect::<Vec<_>>(), vec![7, 4], "a metric is never cut in two");
        let joined: Vec<u8> = parts.iter().flat_map(|c| c.body.to_vec()).collect();
        let back = ExportMetricsServiceRequest::decode(&joined[..]).unwrap();
        let names: Vec<&str> =
            back.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let answer = response::<ExportMetricsServiceRequest>(Format::Json, 2, "why");
        assert!(String::from_utf8(answer).unwrap().contains("\"rejectedDataPoints\""));
    }

    #[test]
    fn metrics_and_logs_json_in_either_spelling() {
        let camel = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","sum":{"dataPoints":[{"asInt":"5","timeUnixNano":"1"}],
            "aggregationTemporality":2,"isMonotonic":true}}]}]}]}"#;
        let snake = br#"{"resource_metrics":[{"scope_metrics":[{"metrics":[{"name":"m","sum":{"data_points":[{"as_int":"5","time_unix_nano":"1"}],
            "aggregation_temporality":2,"is_monotonic":true}}]}]}]}"#;
        for body in [&camel[..], &snake[..]] {
            let r: ExportMetricsServiceRequest = decode(Format::Json, body).unwrap();
            assert_eq!(check(r).items, 1, "{}", String::from_utf8_lossy(body));
        }
        let logs = br#"{"resource_logs":[{"scope_logs":[{"log_records":[{"time_unix_nano":"1","body":{"string_value":"hi"},
            "trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174"},{"body":{"string_value":"no ids"}}]}]}]}"#;
        let r: ExportLogsServiceRequest = decode(Format::Json, logs).unwrap();
        let record = &r.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!((record.trace_id.len(), record.span_id.len()), (16, 8));
        assert_eq!(check(r).items, 2, "IDs are optional on log records");
        let e = decode::<ExportLogsServiceRequest>(Format::Protobuf, b"\xff\xff").unwrap_err().to_string();
        assert!(e.contains("ExportLogsServiceRequest"), "{e}");
    }

    #[test]
    fn log_records_with_ids_of_the_wrong_size_are_dropped() {
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let records = vec![
            LogRecord { trace_id: vec![1; 16], span_id: vec![1; 8], ..Default::default() },
            LogRecord { span_id: vec![1; 3], ..Default::default() },
        ];
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs { scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }], ..Default::default() }],
        };
        let checked = check(req);
        assert_eq!((checked.items, checked.invalid), (1, 1));
    }
}
