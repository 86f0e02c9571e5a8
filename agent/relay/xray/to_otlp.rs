//! X-Ray segment documents as OTLP spans: the way off the X-Ray daemon for an app still on the
//! X-Ray SDK. With `--xray-to-otlp` the segments the agent receives over UDP go to the OTLP
//! upstreams (Honeycomb, X-Ray's OTLP endpoint) instead of PutTraceSegments.
//!
//! The mapping (the segment document format, AWS X-Ray developer guide):
//! - `trace_id` `1-5f84c7a1-1234567890abcdef01234567` → the 16-byte trace ID `5f84c7a1…4567`;
//!   `id` and `parent_id` → span and parent span IDs; `name`; `start_time`/`end_time` (epoch
//!   seconds, fractional) → nanoseconds. Documents still `in_progress` are skipped (the SDK sends
//!   the complete one later).
//! - A segment is a SERVER span whose resource's `service.name` is its name; subsegments are
//!   child spans (CLIENT when `namespace` is `remote` or `aws`, else INTERNAL), nested ones too.
//! - `http.request`/`http.response` → the HTTP semantic-convention attributes; `fault` (5xx) →
//!   status ERROR, `error` (4xx) and `throttle` → attributes; `cause.exceptions` → `exception`
//!   events; `annotations` → attributes of the same name; `metadata` → `metadata.NS.KEY`
//!   attributes holding the JSON; `aws`, `origin`, `namespace`, `sql` fields → `aws.*`/`xray.*`.
//!
//! This module depends on the OTLP half (its `Ingest`); the OTLP half never on this one.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use serde_json::{Map, Value};

/// Why a document could not become spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    NotJson,
    InProgress,
    BadIds,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotJson => "not a JSON object",
            Skip::InProgress => "in progress (the complete document comes later)",
            Skip::BadIds => "no valid trace_id/id",
        }
    }
}

fn kv(key: impl Into<String>, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn string(key: impl Into<String>, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

/// A JSON value as an attribute value: scalars as themselves, the rest as JSON text.
fn value(v: &Value) -> any_value::Value {
    match v {
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Number(n) if n.is_i64() => any_value::Value::IntValue(n.as_i64().unwrap_or(0)),
        Value::Number(n) => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        other => any_value::Value::StringValue(other.to_string()),
    }
}

fn hex_bytes(s: &str, len: usize) -> Option<Vec<u8>> {
    if s.len() != len * 2 {
        return None;
    }
    (0..len).map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

/// `1-5f84c7a1-1234567890abcdef01234567` → 16 bytes.
fn trace_id(s: &str) -> Option<Vec<u8>> {
    let mut parts = s.split('-');
    let (version, time, rest) = (parts.next()?, parts.next()?, parts.next()?);
    (version == "1" && parts.next().is_none()).then_some(())?;
    hex_bytes(&format!("{time}{rest}"), 16)
}

/// Epoch seconds (fractional) → nanoseconds, to the microsecond: an f64 holds an epoch time only
/// to about 0.2 µs, and the SDKs write microseconds at most.
fn nanos(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_f64).map_or(0, |s| (s * 1e6).round() as u64 * 1000)
}

/// One document (a segment, or an independent subsegment) → its resource's service name and spans.
pub fn convert(doc: &str) -> Result<(String, Vec<Span>), Skip> {
    let v: Value = serde_json::from_str(doc).map_err(|_| Skip::NotJson)?;
    let obj = v.as_object().ok_or(Skip::NotJson)?;
    if obj.get("in_progress").and_then(Value::as_bool) == Some(true) {
        return Err(Skip::InProgress);
    }
    let trace = obj.get("trace_id").and_then(Value::as_str).and_then(trace_id).ok_or(Skip::BadIds)?;
    let independent = obj.get("type").and_then(Value::as_str) == Some("subsegment");
    let service = if independent {
        "unknown_service:xray".to_string()
    } else {
        obj.get("name").and_then(Value::as_str).unwrap_or("unknown_service").to_string()
    };
    let mut spans = Vec::new();
    let parent = obj.get("parent_id").and_then(Value::as_str).and_then(|p| hex_bytes(p, 8)).unwrap_or_default();
    walk(obj, &trace, parent, !independent, &mut spans).ok_or(Skip::BadIds)?;
    Ok((service, spans))
}

/// Adds the span for `obj` and, depth first, its subsegments'. `None` if its ID is invalid.
fn walk(obj: &Map<String, Value>, trace: &[u8], parent: Vec<u8>, segment: bool, out: &mut Vec<Span>) -> Option<()> {
    let id = hex_bytes(obj.get("id")?.as_str()?, 8)?;
    let mut span = Span {
        trace_id: trace.to_vec(),
        span_id: id.clone(),
        parent_span_id: parent,
        name: obj.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
        start_time_unix_nano: nanos(obj.get("start_time")),
        end_time_unix_nano: nanos(obj.get("end_time")),
        ..Default::default()
    };
    let namespace = obj.get("namespace").and_then(Value::as_str);
    span.kind = if segment {
        span::SpanKind::Server
    } else if matches!(namespace, Some("remote") | Some("aws")) {
        span::SpanKind::Client
    } else {
        span::SpanKind::Internal
    } as i32;
    let a = &mut span.attributes;
    if let Some(ns) = namespace {
        a.push(string("xray.namespace", ns));
    }
    if let Some(origin) = obj.get("origin").and_then(Value::as_str) {
        a.push(string("xray.origin", origin));
    }
    if let Some(http) = obj.get("http").and_then(Value::as_object) {
        if let Some(req) = http.get("request").and_then(Value::as_object) {
            for (from, to) in
                [("method", "http.request.method"), ("url", "url.full"), ("user_agent", "user_agent.original"), ("client_ip", "client.address")]
            {
                if let Some(s) = req.get(from).and_then(Value::as_str) {
                    a.push(string(to, s));
                }
            }
        }
        if let Some(resp) = http.get("response").and_then(Value::as_object) {
            if let Some(n) = resp.get("status").and_then(Value::as_i64) {
                a.push(kv("http.response.status_code", any_value::Value::IntValue(n)));
            }
            if let Some(n) = resp.get("content_length").and_then(Value::as_i64) {
                a.push(kv("http.response.body.size", any_value::Value::IntValue(n)));
            }
        }
    }
    for flag in ["error", "throttle"] {
        if obj.get(flag).and_then(Value::as_bool) == Some(true) {
            a.push(kv(format!("xray.{flag}"), any_value::Value::BoolValue(true)));
        }
    }
    for group in ["aws", "sql"] {
        if let Some(fields) = obj.get(group).and_then(Value::as_object) {
            for (k, v) in fields {
                a.push(kv(format!("{group}.{k}"), value(v)));
            }
        }
    }
    if let Some(ann) = obj.get("annotations").and_then(Value::as_object) {
        for (k, v) in ann {
            a.push(kv(k.clone(), value(v)));
        }
    }
    if let Some(meta) = obj.get("metadata").and_then(Value::as_object) {
        for (ns, entries) in meta {
            for (k, v) in entries.as_object().into_iter().flatten() {
                a.push(string(format!("metadata.{ns}.{k}"), v.to_string()));
            }
        }
    }
    if obj.get("fault").and_then(Value::as_bool) == Some(true) {
        span.status = Some(Status { code: status::StatusCode::Error as i32, message: String::new() });
    }
    let exceptions = obj.get("cause").and_then(|c| c.get("exceptions")).and_then(Value::as_array);
    for e in exceptions.into_iter().flatten() {
        let mut attrs = Vec::new();
        if let Some(t) = e.get("type").and_then(Value::as_str) {
            attrs.push(string("exception.type", t));
        }
        if let Some(m) = e.get("message").and_then(Value::as_str) {
            attrs.push(string("exception.message", m));
        }
        span.events.push(span::Event { time_unix_nano: span.end_time_unix_nano, name: "exception".into(), attributes: attrs, ..Default::default() });
    }
    out.push(span);
    for sub in obj.get("subsegments").and_then(Value::as_array).into_iter().flatten() {
        if let Some(sub) = sub.as_object() {
            walk(sub, trace, id.clone(), false, out)?;
        }
    }
    Some(())
}

/// Documents → one request (a resource per service name), and what was skipped, by reason.
pub fn request<'a>(docs: impl IntoIterator<Item = &'a str>) -> (ExportTraceServiceRequest, Vec<Skip>) {
    let mut by_service: Vec<(String, Vec<Span>)> = Vec::new();
    let mut skipped = Vec::new();
    for doc in docs {
        match convert(doc) {
            Ok((service, spans)) => match by_service.iter_mut().find(|(s, _)| *s == service) {
                Some((_, v)) => v.extend(spans),
                None => by_service.push((service, spans)),
            },
            Err(skip) => skipped.push(skip),
        }
    }
    let resource_spans = by_service
        .into_iter()
        .map(|(service, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string("service.name", service), string("telemetry.sdk.name", "aws-xray-sdk")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "agent.xray-to-otlp".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    (ExportTraceServiceRequest { resource_spans }, skipped)
}

/// The converter stage of `--xray-to-otlp`: a sink for the X-Ray queue that turns each batch of
/// segments into one OTLP request and hands it to the OTLP queues (dropping their oldest if
/// they are full: UDP cannot push back). It never fails, so it drains at once at shutdown,
/// before the OTLP sinks flush.
pub struct ToOtlp(pub std::sync::Arc<crate::relay::otlp::Ingest>);

impl crate::relay::batcher::Sink for ToOtlp {
    type Item = super::segments::Segments;

    async fn send(&mut self, batch: Vec<Self::Item>) -> crate::relay::batcher::Sent<Self::Item> {
        let (request, skipped) = request(batch.iter().flat_map(|s| s.iter()));
        self.0.accept(request, None, false);
        crate::relay::batcher::Sent::Done {
            rejected: skipped.len() as u64,
            retry: Vec::new(),
            reason: skipped.first().map(|s| format!("{}: cannot become OTLP spans", s.as_str())).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment as the Python X-Ray SDK's Flask middleware sends it, with a subsegment for a
    /// remote call, a nested local one, annotations, metadata and a fault.
    const FLASK: &str = r#"{"id":"70de5b6f19ff9a0a","trace_id":"1-581cf771-a006649127e371903a2de979","name":"backend-flask",
      "start_time":1478293361.271,"end_time":1478293361.449,"fault":true,
      "http":{"request":{"method":"GET","url":"http://127.0.0.1:4567/api/activities/home","client_ip":"10.0.0.5","user_agent":"curl/8"},
              "response":{"status":500,"content_length":12}},
      "annotations":{"user":"andrewbrown","count":3},
      "metadata":{"default":{"payload":{"a":1}}},
      "aws":{"ecs":{"container":"backend-flask"}},
      "cause":{"exceptions":[{"type":"ValueError","message":"boom"}]},
      "subsegments":[{"id":"53995c3f42cd8ad8","name":"api.honeycomb.io","namespace":"remote","start_time":1478293361.3,"end_time":1478293361.4,
                      "http":{"response":{"status":200}},
                      "subsegments":[{"id":"0123456789abcdef","name":"parse","start_time":1478293361.35,"end_time":1478293361.36}]}]}"#;

    fn attr<'a>(s: &'a Span, k: &str) -> Option<&'a any_value::Value> {
        s.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn a_flask_segment_becomes_a_server_span_with_child_spans() {
        let (service, spans) = convert(FLASK).unwrap();
        assert_eq!(service, "backend-flask");
        assert_eq!(spans.len(), 3);
        let (root, remote, local) = (&spans[0], &spans[1], &spans[2]);
        assert_eq!(root.trace_id, hex_bytes("581cf771a006649127e371903a2de979", 16).unwrap());
        assert!(spans.iter().all(|s| s.trace_id == root.trace_id));
        assert_eq!(root.span_id, hex_bytes("70de5b6f19ff9a0a", 8).unwrap());
        assert!(root.parent_span_id.is_empty());
        assert_eq!(remote.parent_span_id, root.span_id);
        assert_eq!(local.parent_span_id, remote.span_id);
        assert_eq!(
            (root.kind, remote.kind, local.kind),
            (span::SpanKind::Server as i32, span::SpanKind::Client as i32, span::SpanKind::Internal as i32)
        );
        assert_eq!(root.start_time_unix_nano / 1_000_000, 1478293361271);
        assert_eq!(root.end_time_unix_nano / 1_000_000, 1478293361449);
        assert_eq!(attr(root, "http.request.method"), Some(&any_value::Value::StringValue("GET".into())));
        assert_eq!(attr(root, "http.response.status_code"), Some(&any_value::Value::IntValue(500)));
        assert_eq!(attr(root, "user"), Some(&any_value::Value::StringValue("andrewbrown".into())));
        assert_eq!(attr(root, "count"), Some(&any_value::Value::IntValue(3)));
        assert_eq!(attr(root, "metadata.default.payload"), Some(&any_value::Value::StringValue("{\"a\":1}".into())));
        assert_eq!(attr(root, "aws.ecs"), Some(&any_value::Value::StringValue("{\"container\":\"backend-flask\"}".into())));
        assert_eq!(root.status.as_ref().unwrap().code, status::StatusCode::Error as i32);
        assert_eq!(root.events[0].name, "exception");
        assert_eq!(remote.name, "api.honeycomb.io");
    }

    #[test]
    fn in_progress_bad_ids_and_junk_are_skipped_with_a_reason() {
        assert_eq!(
            convert(r#"{"id":"70de5b6f19ff9a0a","trace_id":"1-581cf771-a006649127e371903a2de979","name":"x","in_progress":true}"#).unwrap_err(),
            Skip::InProgress
        );
        assert_eq!(convert(r#"{"id":"70de5b6f19ff9a0a","trace_id":"2-581cf771-a006649127e371903a2de979","name":"x"}"#).unwrap_err(), Skip::BadIds);
        assert_eq!(convert(r#"{"id":"short","trace_id":"1-581cf771-a006649127e371903a2de979","name":"x"}"#).unwrap_err(), Skip::BadIds);
        assert_eq!(convert("[1,2]").unwrap_err(), Skip::NotJson);
        let (req, skipped) = request([FLASK, "nope"]);
        assert_eq!(req.resource_spans.len(), 1);
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 3);
        assert_eq!(skipped, [Skip::NotJson]);
    }

    #[test]
    fn an_independent_subsegment_keeps_its_parent() {
        let doc = r#"{"type":"subsegment","id":"53995c3f42cd8ad8","trace_id":"1-581cf771-a006649127e371903a2de979","parent_id":"70de5b6f19ff9a0a","name":"db","namespace":"remote","start_time":1.0,"end_time":2.0}"#;
        let (service, spans) = convert(doc).unwrap();
        assert_eq!(service, "unknown_service:xray");
        assert_eq!(spans[0].parent_span_id, hex_bytes("70de5b6f19ff9a0a", 8).unwrap());
        assert_eq!(spans[0].kind, span::SpanKind::Client as i32);
    }
}
