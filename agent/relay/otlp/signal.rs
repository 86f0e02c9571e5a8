//! The three OTLP signals — traces, metrics, logs — as one shape, so the receiver, the chunker
//! and the sinks are written once.
//!
//! Each signal's export request is a list of resources, each a list of scopes, each a list of
//! items (spans, metrics, log records); the answer may carry a partial success. What differs is
//! named here: the URL path, the variables' infix (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), what
//! is counted (a metric counts its data points, as the spec's `rejected_data_points` does), and
//! what makes an item invalid (only spans and log records have IDs to check).

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// Which signal: where it is received and sent, and what its items are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Traces,
    Metrics,
    Logs,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Traces, Kind::Metrics, Kind::Logs];

    /// The OTLP/HTTP path, receiving and sending.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Traces => "/v1/traces",
            Kind::Metrics => "/v1/metrics",
            Kind::Logs => "/v1/logs",
        }
    }

    /// The infix of the signal's exporter variables: `OTEL_EXPORTER_OTLP_{infix}_ENDPOINT`.
    pub fn var(self) -> &'static str {
        match self {
            Kind::Traces => "TRACES",
            Kind::Metrics => "METRICS",
            Kind::Logs => "LOGS",
        }
    }

    /// What is counted, in the words of logs and answers.
    pub fn unit(self) -> &'static str {
        match self {
            Kind::Traces => "spans",
            Kind::Metrics => "data points",
            Kind::Logs => "log records",
        }
    }

    /// What a queue of this signal holds, in the words of logs.
    pub fn queued(self) -> &'static str {
        match self {
            Kind::Traces => "OTLP spans",
            Kind::Metrics => "OTLP data points",
            Kind::Logs => "OTLP log records",
        }
    }

    /// The request message's name, for error answers.
    pub fn request(self) -> &'static str {
        match self {
            Kind::Traces => "ExportTraceServiceRequest",
            Kind::Metrics => "ExportMetricsServiceRequest",
            Kind::Logs => "ExportLogsServiceRequest",
        }
    }

    pub fn from_path(path: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.path() == path)
    }
}

/// An OTLP export request, as the chunker and receiver see it.
pub trait Signal: prost::Message + Default + Clone + serde::de::DeserializeOwned + Send + 'static {
    type Resource: prost::Message + Clone;
    type Scope: prost::Message + Clone;
    type Item: prost::Message;
    type Response: prost::Message + Default + serde::Serialize + serde::de::DeserializeOwned;
    const KIND: Kind;
    /// Keys only the proto (snake_case) spelling of this signal's JSON has.
    const SNAKE_KEYS: &'static [&'static [u8]];

    fn resources(&mut self) -> &mut Vec<Self::Resource>;
    /// A resource entry's `Resource` (its attributes: service.name, the task's identity).
    fn resource(r: &mut Self::Resource) -> &mut Option<Resource>;
    fn scopes(r: &mut Self::Resource) -> &mut Vec<Self::Scope>;
    fn items(s: &mut Self::Scope) -> &mut Vec<Self::Item>;
    /// How many of the counted unit an item holds (a metric: its data points).
    fn count(item: &Self::Item) -> u64;
    /// Whether every backend can take the item.
    fn valid(item: &Self::Item) -> bool;
    /// The success answer: empty, or a partial success.
    fn response(rejected: u64, message: &str) -> Self::Response;
    /// The partial success in an upstream's answer: (rejected, message).
    fn partial(answer: Self::Response) -> Option<(i64, String)>;
    /// Drops what the agent's own health probe caused; how many were dropped.
    fn drop_health_probe(&mut self) -> u64 {
        0
    }
}

/// Whether a span is the server span of the agent's health probe: its user agent attribute
/// (`user_agent.original`, or the older `http.user_agent`) is the probe's.
fn health_probe_span(span: &Span) -> bool {
    span.attributes.iter().any(|a| {
        (a.key == "user_agent.original" || a.key == "http.user_agent")
            && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()), Some(Value::StringValue(s)) if s == healthcheck::USER_AGENT)
    })
}

fn nonzero(b: &[u8]) -> bool {
    b.iter().any(|&x| x != 0)
}

impl Signal for ExportTraceServiceRequest {
    type Resource = ResourceSpans;
    type Scope = ScopeSpans;
    type Item = Span;
    type Response = ExportTraceServiceResponse;
    const KIND: Kind = Kind::Traces;
    const SNAKE_KEYS: &'static [&'static [u8]] = &[b"\"resource_spans\"", b"\"scope_spans\"", b"\"trace_id\"", b"\"span_id\""];

    fn resources(&mut self) -> &mut Vec<ResourceSpans> {
        &mut self.resource_spans
    }
    fn resource(r: &mut ResourceSpans) -> &mut Option<Resource> {
        &mut r.resource
    }
    fn scopes(r: &mut ResourceSpans) -> &mut Vec<ScopeSpans> {
        &mut r.scope_spans
    }
    fn items(s: &mut ScopeSpans) -> &mut Vec<Span> {
        &mut s.spans
    }
    fn count(_: &Span) -> u64 {
        1
    }
    /// A 16-byte trace ID and an 8-byte span ID, neither all zero (the spec's invalid IDs;
    /// X-Ray refuses them).
    fn valid(span: &Span) -> bool {
        span.trace_id.len() == 16 && nonzero(&span.trace_id) && span.span_id.len() == 8 && nonzero(&span.span_id)
    }
    fn response(rejected: u64, message: &str) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: (rejected > 0)
                .then(|| ExportTracePartialSuccess { rejected_spans: rejected as i64, error_message: message.to_string() }),
        }
    }
    fn partial(answer: ExportTraceServiceResponse) -> Option<(i64, String)> {
        answer.partial_success.map(|p| (p.rejected_spans, p.error_message))
    }
    /// The probe's server spans, and every span of their traces in this request (a database
    /// call the health check made, say).
    fn drop_health_probe(&mut self) -> u64 {
        let spans = || self.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans);
        let traces: Vec<Vec<u8>> = spans().filter(|s| health_probe_span(s)).map(|s| s.trace_id.clone()).collect();
        if traces.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        for rs in &mut self.resource_spans {
            for ss in &mut rs.scope_spans {
                let before = ss.spans.len();
                ss.spans.retain(|s| !traces.contains(&s.trace_id));
                dropped += (before - ss.spans.len()) as u64;
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        self.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
        dropped
    }
}

impl Signal for ExportMetricsServiceRequest {
    type Resource = ResourceMetrics;
    type Scope = ScopeMetrics;
    type Item = Metric;
    type Response = ExportMetricsServiceResponse;
    const KIND: Kind = Kind::Metrics;
    const SNAKE_KEYS: &'static [&'static [u8]] = &[b"\"resource_metrics\"", b"\"scope_metrics\"", b"\"data_points\"", b"\"time_unix_nano\""];

    fn resources(&mut self) -> &mut Vec<ResourceMetrics> {
        &mut self.resource_metrics
    }
    fn resource(r: &mut ResourceMetrics) -> &mut Option<Resource> {
        &mut r.resource
    }
    fn scopes(r: &mut ResourceMetrics) -> &mut Vec<ScopeMetrics> {
        &mut r.scope_metrics
    }
    fn items(s: &mut ScopeMetrics) -> &mut Vec<Metric> {
        &mut s.metrics
    }
    fn count(m: &Metric) -> u64 {
        let n = match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        };
        n as u64
    }
    /// A metric needs a name; backends refuse one without.
    fn valid(m: &Metric) -> bool {
        !m.name.is_empty()
    }
    fn response(rejected: u64, message: &str) -> ExportMetricsServiceResponse {
        ExportMetricsServiceResponse {
            partial_success: (rejected > 0)
                .then(|| ExportMetricsPartialSuccess { rejected_data_points: rejected as i64, error_message: message.to_string() }),
        }
    }
    fn partial(answer: ExportMetricsServiceResponse) -> Option<(i64, String)> {
        answer.partial_success.map(|p| (p.rejected_data_points, p.error_message))
    }
}

impl Signal for ExportLogsServiceRequest {
    type Resource = ResourceLogs;
    type Scope = ScopeLogs;
    type Item = LogRecord;
    type Response = ExportLogsServiceResponse;
    const KIND: Kind = Kind::Logs;
    const SNAKE_KEYS: &'static [&'static [u8]] = &[b"\"resource_logs\"", b"\"scope_logs\"", b"\"log_records\"", b"\"time_unix_nano\""];

    fn resources(&mut self) -> &mut Vec<ResourceLogs> {
        &mut self.resource_logs
    }
    fn resource(r: &mut ResourceLogs) -> &mut Option<Resource> {
        &mut r.resource
    }
    fn scopes(r: &mut ResourceLogs) -> &mut Vec<ScopeLogs> {
        &mut r.scope_logs
    }
    fn items(s: &mut ScopeLogs) -> &mut Vec<LogRecord> {
        &mut s.log_records
    }
    fn count(_: &LogRecord) -> u64 {
        1
    }
    /// A log record's IDs are optional, but when given they must be the right size.
    fn valid(r: &LogRecord) -> bool {
        matches!(r.trace_id.len(), 0 | 16) && matches!(r.span_id.len(), 0 | 8)
    }
    fn response(rejected: u64, message: &str) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse {
            partial_success: (rejected > 0)
                .then(|| ExportLogsPartialSuccess { rejected_log_records: rejected as i64, error_message: message.to_string() }),
        }
    }
    fn partial(answer: ExportLogsServiceResponse) -> Option<(i64, String)> {
        answer.partial_success.map(|p| (p.rejected_log_records, p.error_message))
    }
}
