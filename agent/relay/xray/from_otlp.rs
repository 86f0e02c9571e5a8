//! OpenTelemetry spans as X-Ray segment documents: `--otlp-xray-segments`, the way to keep X-Ray
//! as the backend after moving the app to OpenTelemetry, without CloudWatch Transaction Search
//! (which X-Ray's OTLP endpoint needs). The spans the app exports over OTLP become documents that
//! go into the X-Ray queue, beside the X-Ray SDK's own, and out with PutTraceSegments.
//!
//! The mapping follows ADOT's awsxray exporter (its translator, read, not copied):
//! - **Which document.** A SERVER or CONSUMER span, or a span with no parent that calls nothing
//!   (INTERNAL), is a segment named after the service (`aws.local.service`, else the resource's
//!   `service.name`). Every other span is a subsegment (`"type": "subsegment"` with its
//!   `parent_id`), named after what it calls: `aws.remote.service`, `peer.service`, the AWS
//!   service (`rpc.service` of an `aws-api` span), `db.name@host`, the server's host, else the
//!   span's name. A CLIENT or PRODUCER span with no parent (a script's call) becomes a segment
//!   for the service with the call as its subsegment, so the trace has a segment at all.
//!   `namespace` is `aws` for AWS SDK calls and `remote` for other calls.
//! - **IDs and times.** The 16-byte trace ID in X-Ray's form `1-{8 hex}-{24 hex}`, unchanged (see
//!   README: X-Ray's first 8 digits are meant to be the epoch second the trace began); span IDs
//!   as 16 hex digits; times as epoch seconds with microseconds.
//! - **`http`** from the old (`http.method`, `http.url`, `http.status_code`…) and the new
//!   (`http.request.method`, `url.full`, `server.address`, `http.response.status_code`…) HTTP
//!   conventions; **`aws`** (operation, region, request ID, queue, table) for AWS SDK spans, and
//!   on segments the task's identity (`ecs`, account, log groups, the SDK) from the resource,
//!   which on ECS also gives **`origin`** (`AWS::ECS::Fargate`…); **`sql`** for SQL databases.
//! - **fault/error/throttle**: 5xx is a fault, 429 an error and a throttle, another 4xx an error;
//!   without an HTTP status, an ERROR status is a fault. **`cause`**: the span's `exception`
//!   events (Python tracebacks as stack frames), else the ERROR status's message.
//! - **annotations**: the attributes named by `--xray-indexed-attributes` (`*`: all) or by the
//!   span's `aws.xray.annotations`; **metadata**: every other attribute, under `default`, the
//!   resource's as `otel.resource.*` on segments; `aws.xray.metadata.NS` (JSON) as namespace NS.
//!
//! A document stays within X-Ray's 64 KB: over it, its metadata goes first, then it is refused.

use std::fmt::Write as _;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};

use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use super::segments::Segments;
use crate::relay::batcher::{Deadline, Queue, Sent, Sink};
use crate::relay::otlp::message::Chunk;

/// X-Ray's limit for one segment document.
pub const MAX_DOCUMENT: usize = 64 * 1024;

/// Documents per queue item (as the UDP receiver groups them).
const GROUP: usize = 16;

/// What becomes an annotation rather than metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexed {
    /// `*`: every attribute of a type X-Ray can index.
    pub all: bool,
    pub keys: Vec<String>,
}

impl Indexed {
    /// `--xray-indexed-attributes`: comma-separated attribute names, or `*`.
    pub fn parse(list: &[String]) -> Indexed {
        let keys: Vec<String> = list.iter().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect();
        Indexed { all: keys.iter().any(|k| k == "*"), keys: keys.into_iter().filter(|k| k != "*").collect() }
    }
}

/// Why spans did not become documents.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Documents made.
    pub documents: u64,
    /// Spans refused: over 64 KB even without metadata.
    pub too_big: u64,
    /// Spans whose trace ID's first 8 hex digits are not a recent epoch second (random W3C IDs).
    pub w3c_ids: u64,
}

/// Every span of a (checked: IDs valid) request → documents, grouped for the X-Ray queue.
pub fn convert(request: &ExportTraceServiceRequest, indexed: &Indexed, now: u64) -> (Vec<Segments>, Outcome) {
    let mut groups: Vec<Segments> = Vec::new();
    let mut outcome = Outcome::default();
    let mut doc = Vec::with_capacity(2048);
    for rs in &request.resource_spans {
        let empty = Vec::new();
        let res = ResourceView::new(rs.resource.as_ref().map_or(&empty, |r| &r.attributes));
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                if !recent(&span.trace_id, now) {
                    outcome.w3c_ids += 1;
                }
                let parentless = span.parent_span_id.is_empty();
                let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
                let made = if parentless && matches!(kind, SpanKind::Client | SpanKind::Producer) {
                    // The service's segment (an ID of its own) and the call under it.
                    let service_id = fastrand::u64(1..);
                    let mut ok = document(&mut doc, span, &res, indexed, Role::ServiceOf(service_id));
                    if ok {
                        push(&doc, &mut groups);
                        ok = document(&mut doc, span, &res, indexed, Role::CallUnder(service_id));
                    }
                    ok
                } else {
                    let segment = matches!(kind, SpanKind::Server | SpanKind::Consumer) || parentless;
                    document(&mut doc, span, &res, indexed, if segment { Role::Segment } else { Role::Subsegment })
                };
                if made {
                    push(&doc, &mut groups);
                } else {
                    outcome.too_big += 1;
                }
            }
        }
    }
    outcome.documents = groups.iter().map(|g| g.len() as u64).sum();
    (groups, outcome)
}

/// Adds a document to the last group, or to a new one when that is full.
fn push(doc: &[u8], groups: &mut Vec<Segments>) {
    if groups.last().map_or(true, |g| g.len() >= GROUP) {
        groups.push(Segments::with_capacity(GROUP, GROUP * 1024));
    }
    // The writer writes UTF-8 only (the spans' strings are UTF-8 and it adds ASCII).
    groups.last_mut().expect("pushed above").push(std::str::from_utf8(doc).unwrap_or_default());
}

/// Whether a trace ID starts with an epoch second of the last 30 days (or up to 5 minutes
/// ahead): X-Ray's own form, as its SDKs and the AWS ID generators make them.
fn recent(trace_id: &[u8], now: u64) -> bool {
    let Some(head) = trace_id.get(..4) else { return false };
    let t = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as u64;
    t + 30 * 86_400 >= now && t <= now + 300
}

/// What document a span makes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Segment,
    Subsegment,
    /// The segment made for a parentless call: this ID, the service's name, no call details.
    ServiceOf(u64),
    /// The parentless call itself, as a subsegment of that segment.
    CallUnder(u64),
}

/// The resource's attributes and what is worked out from them once per resource.
struct ResourceView<'a> {
    attrs: &'a [KeyValue],
    origin: Option<&'static str>,
}

impl<'a> ResourceView<'a> {
    fn new(attrs: &'a [KeyValue]) -> Self {
        ResourceView { attrs, origin: origin(attrs) }
    }
}

/// X-Ray's origin for where the service runs (the resource's `cloud.platform`).
fn origin(attrs: &[KeyValue]) -> Option<&'static str> {
    if str_of(attrs, "cloud.provider").is_some_and(|p| p != "aws") {
        return None;
    }
    Some(match str_of(attrs, "cloud.platform")? {
        "aws_ecs" => match str_of(attrs, "aws.ecs.launchtype") {
            Some("fargate") => "AWS::ECS::Fargate",
            Some("ec2") => "AWS::ECS::EC2",
            _ => "AWS::ECS::Container",
        },
        "aws_ec2" => "AWS::EC2::Instance",
        "aws_eks" => "AWS::EKS::Container",
        "aws_elastic_beanstalk" => "AWS::ElasticBeanstalk::Environment",
        "aws_app_runner" => "AWS::AppRunner::Service",
        _ => return None,
    })
}

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn str_of<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match get(attrs, key)? {
        Value::StringValue(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn int_of(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match get(attrs, key)? {
        Value::IntValue(i) => Some(*i),
        Value::DoubleValue(d) if d.is_finite() => Some(*d as i64),
        Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The first of `keys` that is a non-empty string.
fn first_str<'a>(attrs: &'a [KeyValue], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| str_of(attrs, k))
}

/// The first string of an array attribute (or the string itself).
fn first_of_list<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match get(attrs, key)? {
        Value::StringValue(s) => Some(s),
        Value::ArrayValue(a) => a.values.iter().find_map(|v| match v.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }),
        _ => None,
    }
}

/// Span attributes the `http`, `aws`, `sql` blocks and `user` take (not repeated as metadata).
const HTTP_KEYS: &[&str] = &[
    "http.method",
    "http.request.method",
    "http.url",
    "url.full",
    "http.scheme",
    "url.scheme",
    "http.host",
    "http.target",
    "url.path",
    "url.query",
    "http.server_name",
    "server.address",
    "server.port",
    "net.host.name",
    "net.host.port",
    "net.peer.name",
    "net.peer.port",
    "net.peer.ip",
    "http.client_ip",
    "client.address",
    "http.user_agent",
    "user_agent.original",
    "http.status_code",
    "http.response.status_code",
    "http.response_content_length",
    "http.response.body.size",
];
const AWS_KEYS: &[&str] = &[
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "aws.operation",
    "aws.region",
    "aws.request_id",
    "aws.requestId",
    "aws.sqs.queue_url",
    "aws.queue_url",
    "aws.table_name",
    "aws.dynamodb.table_names",
];
const SQL_KEYS: &[&str] =
    &["db.system", "db.system.name", "db.statement", "db.query.text", "db.connection_string", "db.user", "db.name", "db.namespace"];
const SQL_SYSTEMS: &[&str] = &[
    "mysql",
    "postgresql",
    "mariadb",
    "mssql",
    "microsoft.sql_server",
    "oracle",
    "oracle.db",
    "sqlite",
    "db2",
    "ibm.db2",
    "h2",
    "derby",
    "hsqldb",
    "cockroachdb",
    "redshift",
    "other_sql",
];

/// What a span is, worked out once.
struct Facts<'a> {
    kind: SpanKind,
    aws_api: bool,
    sql: bool,
    status: Option<i64>,
    attrs: &'a [KeyValue],
}

/// Writes `span`'s document into `out` (cleared first). False: over 64 KB even without metadata.
fn document(out: &mut Vec<u8>, span: &Span, res: &ResourceView, indexed: &Indexed, role: Role) -> bool {
    for with_metadata in [true, false] {
        out.clear();
        write_document(out, span, res, indexed, role, with_metadata);
        if out.len() <= MAX_DOCUMENT {
            return true;
        }
    }
    false
}

fn write_document(out: &mut Vec<u8>, span: &Span, res: &ResourceView, indexed: &Indexed, role: Role, with_metadata: bool) {
    let attrs = &span.attributes[..];
    let db_system = first_str(attrs, &["db.system", "db.system.name"]);
    let f = Facts {
        kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
        aws_api: str_of(attrs, "rpc.system") == Some("aws-api"),
        sql: db_system.is_some_and(|s| SQL_SYSTEMS.contains(&s)),
        status: int_of(attrs, "http.response.status_code").or_else(|| int_of(attrs, "http.status_code")),
        attrs,
    };
    let segment = matches!(role, Role::Segment | Role::ServiceOf(_));
    let call = !matches!(role, Role::ServiceOf(_));
    let mut j = Obj::new(out);
    j.str("name", &fixed_name(&name(&f, span, res, segment)));
    match role {
        Role::ServiceOf(id) => j.str("id", &format!("{id:016x}")),
        _ => j.str("id", &hex(&span.span_id)),
    }
    j.str("trace_id", &xray_trace_id(&span.trace_id));
    j.raw("start_time", &seconds(span.start_time_unix_nano));
    j.raw("end_time", &seconds(span.end_time_unix_nano.max(span.start_time_unix_nano)));
    match role {
        Role::CallUnder(id) => j.str("parent_id", &format!("{id:016x}")),
        _ if !span.parent_span_id.is_empty() => j.str("parent_id", &hex(&span.parent_span_id)),
        _ => {}
    }
    if !segment {
        j.str("type", "subsegment");
        let namespace = if f.aws_api {
            Some("aws")
        } else if f.kind == SpanKind::Client
            || (matches!(f.kind, SpanKind::Producer | SpanKind::Consumer) && str_of(attrs, "aws.remote.service").is_some())
        {
            Some("remote")
        } else {
            None
        };
        if let Some(ns) = namespace {
            j.str("namespace", ns);
        }
    }
    if segment {
        if let Some(o) = res.origin {
            j.str("origin", o);
        }
    }
    if let Some(user) = str_of(attrs, "enduser.id") {
        j.str("user", user);
    }
    let (fault, error, throttle) = flags(&f, span);
    j.raw("fault", bool_str(fault));
    j.raw("error", bool_str(error));
    j.raw("throttle", bool_str(throttle));
    if call || !segment {
        cause(&mut j, span);
        if f.status.is_some() || first_str(attrs, &["http.method", "http.request.method"]).is_some() {
            j.obj("http", |h| http(h, &f));
        }
    }
    aws(&mut j, &f, res, segment, call);
    if f.sql && call {
        j.obj("sql", |s| sql(s, &f, db_system.unwrap_or_default()));
    }
    if segment {
        if let Some(v) = str_of(res.attrs, "service.version") {
            j.obj("service", |s| s.str("version", v));
        }
    }
    attributes(&mut j, &f, res, indexed, segment, call, with_metadata);
    j.end();
}

/// The document's name: the service for a segment, what is called for a subsegment.
fn name(f: &Facts, span: &Span, res: &ResourceView, segment: bool) -> String {
    let a = f.attrs;
    if segment {
        return first_str(a, &["aws.local.service"]).or_else(|| str_of(res.attrs, "service.name")).map_or_else(|| span.name.clone(), str::to_string);
    }
    if matches!(f.kind, SpanKind::Client | SpanKind::Producer | SpanKind::Consumer) {
        if let Some(remote) = str_of(a, "aws.remote.service") {
            let remote = if f.aws_api { remote.trim_start_matches("AWS::").trim_start_matches("AWS.SDK.") } else { remote };
            return remote.to_string();
        }
    }
    if let Some(peer) = str_of(a, "peer.service") {
        return peer.to_string();
    }
    if f.aws_api {
        if let Some(service) = str_of(a, "rpc.service") {
            return service.to_string();
        }
    }
    if let Some(db) = first_str(a, &["db.name", "db.namespace"]) {
        return match first_str(a, &["server.address", "net.peer.name"]) {
            Some(host) => format!("{db}@{host}"),
            None => db.to_string(),
        };
    }
    first_str(a, &["rpc.service", "http.host", "server.address", "net.peer.name"]).map_or_else(|| span.name.clone(), str::to_string)
}

/// X-Ray's names: Unicode letters, digits, whitespace and `_ . : / % & # = + \ - @`, at most 200
/// characters; anything else is left out, and an empty name is "span".
fn fixed_name(name: &str) -> String {
    let mut s: String = name.chars().filter(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/%&#=+\\-@".contains(*c)).take(200).collect();
    if s.is_empty() {
        s.push_str("span");
    }
    s
}

/// Lower-case hex, by table (through `fmt` it was a twentieth of the conversion's CPU).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// 16 bytes → `1-{first 4 bytes}-{last 12}`.
fn xray_trace_id(id: &[u8]) -> String {
    let h = hex(id);
    format!("1-{}-{}", &h[..8.min(h.len())], h.get(8..).unwrap_or(""))
}

/// Nanoseconds → epoch seconds with microseconds, as the X-Ray SDKs write them.
fn seconds(nanos: u64) -> String {
    let micros = nanos / 1000;
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// (fault, error, throttle) from the HTTP status, else the span's status.
fn flags(f: &Facts, span: &Span) -> (bool, bool, bool) {
    match f.status {
        Some(429) => (false, true, true),
        Some(s) if (400..500).contains(&s) => (false, true, false),
        Some(s) if s >= 500 => (true, false, false),
        _ => (span.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32), false, false),
    }
}

/// `cause.exceptions` from `exception` events, else from an ERROR status's message.
fn cause(j: &mut Obj, span: &Span) {
    let events: Vec<_> = span.events.iter().filter(|e| e.name == "exception").take(20).collect();
    let status_message = span.status.as_ref().filter(|s| s.code == StatusCode::Error as i32 && !s.message.is_empty()).map(|s| &s.message);
    if events.is_empty() && status_message.is_none() {
        return;
    }
    j.obj("cause", |c| {
        c.arr("exceptions", |out| {
            if events.is_empty() {
                let mut e = Obj::new(out);
                e.str("id", &format!("{:016x}", fastrand::u64(..)));
                e.str("message", status_message.expect("checked above"));
                e.end();
            }
            for (i, ev) in events.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let mut e = Obj::new(out);
                e.str("id", &format!("{:016x}", fastrand::u64(..)));
                if let Some(t) = str_of(&ev.attributes, "exception.type") {
                    e.str("type", t);
                }
                if let Some(m) = str_of(&ev.attributes, "exception.message") {
                    e.str("message", m);
                }
                if let Some(trace) = str_of(&ev.attributes, "exception.stacktrace") {
                    let frames = python_frames(trace);
                    if !frames.is_empty() {
                        e.arr("stack", |out| {
                            for (i, (path, line, label)) in frames.iter().enumerate() {
                                if i > 0 {
                                    out.push(b',');
                                }
                                let mut fr = Obj::new(out);
                                fr.str("path", path);
                                fr.raw("line", &line.to_string());
                                fr.str("label", label);
                                fr.end();
                            }
                        });
                    }
                }
                e.end();
            }
        });
    });
}

/// A Python traceback's frames, innermost first (X-Ray's order): `  File "p", line N, in f`.
fn python_frames(trace: &str) -> Vec<(&str, u32, &str)> {
    let mut frames: Vec<(&str, u32, &str)> = trace
        .lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix("File \"")?;
            let (path, rest) = rest.split_once("\", line ")?;
            let (line, label) = rest.split_once(", in ")?;
            Some((path, line.trim().parse().ok()?, label.trim()))
        })
        .collect();
    frames.reverse();
    frames.truncate(50);
    frames
}

fn http(h: &mut Obj, f: &Facts) {
    let a = f.attrs;
    h.obj("request", |r| {
        if let Some(m) = first_str(a, &["http.request.method", "http.method"]) {
            r.str("method", m);
        }
        if let Some(url) = url(f) {
            r.str("url", &url);
        }
        if let Some(ua) = first_str(a, &["user_agent.original", "http.user_agent"]) {
            r.str("user_agent", ua);
        }
        if f.kind == SpanKind::Server {
            if let Some(ip) = str_of(a, "http.client_ip") {
                r.str("client_ip", ip);
                r.raw("x_forwarded_for", "true");
            } else if let Some(ip) = first_str(a, &["client.address", "net.peer.ip"]) {
                r.str("client_ip", ip);
            }
        }
    });
    let length = int_of(a, "http.response.body.size").or_else(|| int_of(a, "http.response_content_length"));
    if f.status.is_some() || length.is_some() {
        h.obj("response", |r| {
            if let Some(s) = f.status {
                r.raw("status", &s.to_string());
            }
            if let Some(n) = length {
                r.raw("content_length", &n.to_string());
            }
        });
    }
}

/// The full URL: `url.full`/`http.url`, else put together from its parts.
fn url(f: &Facts) -> Option<String> {
    let a = f.attrs;
    if let Some(u) = first_str(a, &["url.full", "http.url"]) {
        return Some(u.to_string());
    }
    let scheme = first_str(a, &["url.scheme", "http.scheme"]).unwrap_or("http");
    let (host, port) = if let Some(h) = str_of(a, "http.host") {
        (h.to_string(), None)
    } else {
        let host = if f.kind == SpanKind::Server {
            first_str(a, &["server.address", "http.server_name", "net.host.name"])
        } else {
            first_str(a, &["server.address", "net.peer.name", "net.peer.ip"])
        }?;
        let port = if f.kind == SpanKind::Server {
            int_of(a, "server.port").or_else(|| int_of(a, "net.host.port"))
        } else {
            int_of(a, "server.port").or_else(|| int_of(a, "net.peer.port"))
        };
        (host.to_string(), port)
    };
    let mut u = format!("{scheme}://{host}");
    if let Some(p) = port.filter(|p| !matches!((scheme, p), ("http", 80) | ("https", 443))) {
        let _ = write!(u, ":{p}");
    }
    match (str_of(a, "http.target"), str_of(a, "url.path")) {
        (Some(t), _) => u.push_str(t),
        (None, Some(p)) => {
            u.push_str(p);
            if let Some(q) = str_of(a, "url.query") {
                u.push('?');
                u.push_str(q);
            }
        }
        (None, None) => u.push('/'),
    }
    Some(u)
}

/// The `aws` block: the call's details (AWS SDK spans), and on segments where the service runs.
fn aws(j: &mut Obj, f: &Facts, res: &ResourceView, segment: bool, call: bool) {
    let a = f.attrs;
    let r = res.attrs;
    let api = f.aws_api && call;
    let ecs = segment && str_of(r, "cloud.platform") == Some("aws_ecs");
    let logs = segment && first_of_list(r, "aws.log.group.names").is_some();
    let sdk = segment && str_of(r, "telemetry.sdk.name").is_some();
    if !(api || ecs || logs || sdk) {
        return;
    }
    j.obj("aws", |w| {
        if api {
            if let Some(op) = first_str(a, &["rpc.method", "aws.operation"]) {
                w.str("operation", op);
            }
            if let Some(region) = first_str(a, &["aws.region", "cloud.region"]) {
                w.str("region", region);
            }
            if let Some(id) = first_str(a, &["aws.request_id", "aws.requestId"]) {
                w.str("request_id", id);
            }
            if let Some(q) = first_str(a, &["aws.sqs.queue_url", "aws.queue_url"]) {
                w.str("queue_url", q);
            }
            if let Some(t) = str_of(a, "aws.table_name").or_else(|| first_of_list(a, "aws.dynamodb.table_names")) {
                w.str("table_name", t);
            }
        }
        if segment {
            if let Some(account) = str_of(r, "cloud.account.id") {
                w.str("account_id", account);
            }
        }
        if ecs {
            w.obj("ecs", |e| {
                for (from, to) in [
                    ("container.name", "container"),
                    ("container.id", "container_id"),
                    ("aws.ecs.task.arn", "task_arn"),
                    ("aws.ecs.task.family", "task_family"),
                    ("aws.ecs.cluster.arn", "cluster_arn"),
                    ("cloud.availability_zone", "availability_zone"),
                    ("aws.ecs.launchtype", "launch_type"),
                ] {
                    if let Some(v) = str_of(r, from) {
                        e.str(to, v);
                    }
                }
            });
        }
        if logs {
            w.arr("cloudwatch_logs", |out| {
                let mut g = Obj::new(out);
                g.str("log_group", first_of_list(r, "aws.log.group.names").unwrap_or_default());
                if let Some(arn) = first_of_list(r, "aws.log.group.arns") {
                    g.str("arn", arn);
                }
                g.end();
            });
        }
        if sdk {
            w.obj("xray", |x| {
                let name = str_of(r, "telemetry.sdk.name").unwrap_or_default();
                match str_of(r, "telemetry.sdk.language") {
                    Some(lang) => x.str("sdk", &format!("{name} for {lang}")),
                    None => x.str("sdk", name),
                }
                if let Some(v) = str_of(r, "telemetry.sdk.version") {
                    x.str("sdk_version", v);
                }
                x.raw("auto_instrumentation", bool_str(str_of(r, "telemetry.auto.version").is_some()));
            });
        }
    });
}

fn sql(s: &mut Obj, f: &Facts, system: &str) {
    let a = f.attrs;
    let url = str_of(a, "db.connection_string").map(str::to_string).or_else(|| {
        let host = first_str(a, &["server.address", "net.peer.name"])?;
        let db = first_str(a, &["db.name", "db.namespace"]).unwrap_or_default();
        Some(format!("{system}://{host}/{db}"))
    });
    if let Some(u) = url {
        s.str("url", &u);
    }
    s.str("database_type", system);
    if let Some(u) = str_of(a, "db.user") {
        s.str("user", u);
    }
    if let Some(q) = first_str(a, &["db.query.text", "db.statement"]) {
        s.str("sanitized_query", q);
    }
}

/// X-Ray's annotation keys: letters, digits, `_` and `.`; anything else becomes `_`.
fn annotation_key(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect()
}

/// Annotations and metadata from the attributes the blocks above did not take.
fn attributes(j: &mut Obj, f: &Facts, res: &ResourceView, indexed: &Indexed, segment: bool, call: bool, with_metadata: bool) {
    let a = f.attrs;
    let listed: Vec<&str> = match get(a, "aws.xray.annotations") {
        Some(Value::ArrayValue(arr)) => arr
            .values
            .iter()
            .filter_map(|v| match v.value.as_ref()? {
                Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let taken = |k: &str| {
        k == "enduser.id"
            || k == "aws.xray.annotations"
            || k == "aws.span.kind"
            || (call && HTTP_KEYS.contains(&k))
            || (call && f.aws_api && AWS_KEYS.contains(&k))
            || (call && f.sql && SQL_KEYS.contains(&k))
    };
    let indexable = |v: &Value| matches!(v, Value::StringValue(_) | Value::BoolValue(_) | Value::IntValue(_) | Value::DoubleValue(_));
    let is_indexed = |k: &str| indexed.all || indexed.keys.iter().any(|i| i == k) || listed.contains(&k);
    // A service segment made for a parentless call keeps only the resource's metadata.
    let own: Vec<&KeyValue> = if call { a.iter().filter(|kv| !taken(&kv.key)).collect() } else { Vec::new() };
    let annotations: Vec<(&str, &Value)> = own
        .iter()
        .filter_map(|kv| Some((kv.key.as_str(), kv.value.as_ref()?.value.as_ref()?)))
        .filter(|(k, v)| is_indexed(k) && indexable(v))
        .collect();
    if !annotations.is_empty() {
        j.obj("annotations", |w| {
            for (k, v) in &annotations {
                w.value(&annotation_key(k), Some(v));
            }
        });
    }
    if !with_metadata {
        return;
    }
    let namespaced: Vec<(&str, &str)> = own
        .iter()
        .filter_map(|kv| {
            let ns = kv.key.strip_prefix("aws.xray.metadata.")?;
            match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s).is_ok() => Some((ns, s.as_str())),
                _ => None,
            }
        })
        .collect();
    let defaults: Vec<&KeyValue> = own
        .iter()
        .copied()
        .filter(|kv| !(is_indexed(&kv.key) && kv.value.as_ref().and_then(|v| v.value.as_ref()).is_some_and(indexable)))
        .filter(|kv| !namespaced.iter().any(|(ns, _)| kv.key.strip_prefix("aws.xray.metadata.") == Some(ns)))
        .collect();
    let resource: &[KeyValue] = if segment { res.attrs } else { &[] };
    if defaults.is_empty() && resource.is_empty() && namespaced.is_empty() {
        return;
    }
    j.obj("metadata", |m| {
        if !defaults.is_empty() || !resource.is_empty() {
            m.obj("default", |d| {
                for kv in &defaults {
                    d.value(&kv.key, kv.value.as_ref().and_then(|v| v.value.as_ref()));
                }
                for kv in resource {
                    d.value(&format!("otel.resource.{}", kv.key), kv.value.as_ref().and_then(|v| v.value.as_ref()));
                }
            });
        }
        for (ns, json) in &namespaced {
            m.raw(ns, json);
        }
    });
}

/// A JSON object being written: keys in the order given, values escaped by `jsonstr`.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut Vec<u8>) -> Obj<'a> {
        out.push(b'{');
        Obj { out, empty: true }
    }

    fn key(&mut self, k: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        jsonstr::push(self.out, k);
        self.out.push(b':');
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        jsonstr::push(self.out, v);
    }

    /// A value that is JSON text already (a number, a bool, a checked JSON object).
    fn raw(&mut self, k: &str, v: &str) {
        self.key(k);
        self.out.extend_from_slice(v.as_bytes());
    }

    fn value(&mut self, k: &str, v: Option<&Value>) {
        self.key(k);
        any(self.out, v, 0);
    }

    fn obj(&mut self, k: &str, f: impl FnOnce(&mut Obj)) {
        self.key(k);
        let mut inner = Obj::new(self.out);
        f(&mut inner);
        inner.end();
    }

    fn arr(&mut self, k: &str, f: impl FnOnce(&mut Vec<u8>)) {
        self.key(k);
        self.out.push(b'[');
        f(self.out);
        self.out.push(b']');
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

/// An attribute value as JSON: arrays and maps as such (8 levels at most; deeper as "…").
fn any(out: &mut Vec<u8>, v: Option<&Value>, depth: usize) {
    match v {
        // A string-table index (profiles only) has no meaning here.
        None | Some(Value::StringValueStrindex(_)) => out.extend_from_slice(b"null"),
        Some(Value::StringValue(s)) => jsonstr::push(out, s),
        Some(Value::BoolValue(b)) => out.extend_from_slice(bool_str(*b).as_bytes()),
        Some(Value::IntValue(i)) => out.extend_from_slice(i.to_string().as_bytes()),
        Some(Value::DoubleValue(d)) if d.is_finite() => out.extend_from_slice(format!("{d:?}").as_bytes()),
        Some(Value::DoubleValue(_)) => out.extend_from_slice(b"null"),
        Some(Value::BytesValue(b)) => {
            use base64::Engine;
            jsonstr::push(out, &base64::engine::general_purpose::STANDARD.encode(b));
        }
        Some(_) if depth >= 8 => jsonstr::push(out, "…"),
        Some(Value::ArrayValue(a)) => {
            out.push(b'[');
            for (i, x) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                any(out, x.value.as_ref(), depth + 1);
            }
            out.push(b']');
        }
        Some(Value::KvlistValue(kv)) => {
            let mut o = Obj::new(out);
            for x in &kv.values {
                o.key(&x.key);
                any(o.out, x.value.as_ref().and_then(|v| v.value.as_ref()), depth + 1);
            }
            o.end();
        }
    }
}

/// The converter stage of `--otlp-xray-segments`: a sink for an OTLP traces queue that turns each
/// batch into segment documents in the X-Ray queue, where PutTraceSegments takes them with the
/// X-Ray SDK's. While X-Ray's buffer has no room it keeps the batch (so the OTLP queue fills and
/// the app is told 503 with Retry-After, rather than older segments being pushed out); once the
/// stop has come it hands everything over at once, before the sinks flush.
pub struct ToSegments {
    pub queue: Arc<Queue<Segments>>,
    pub indexed: Indexed,
    pub stopping: Deadline,
    w3c_said: bool,
}

impl ToSegments {
    pub fn new(queue: Arc<Queue<Segments>>, indexed: Indexed, stopping: Deadline) -> ToSegments {
        ToSegments { queue, indexed, stopping, w3c_said: false }
    }
}

impl Sink for ToSegments {
    type Item = Chunk;

    async fn send(&mut self, batch: Vec<Chunk>) -> Sent<Chunk> {
        // Segment documents take about twice a span's protobuf bytes.
        let bytes: usize = batch.iter().map(|c| c.body.len() * 2).sum();
        if self.stopping.get().is_none() && !self.queue.has_room(bytes) {
            let reason = "X-Ray segments: the X-Ray buffer is full (is PutTraceSegments failing? see above)".to_string();
            return Sent::Retry { batch, reason, after: Some(Duration::from_millis(500)) };
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (mut rejected, mut reason) = (0, String::new());
        for chunk in &batch {
            match ExportTraceServiceRequest::decode(chunk.body.clone()) {
                Ok(request) => {
                    let (groups, outcome) = convert(&request, &self.indexed, now);
                    self.queue.push(groups);
                    if outcome.too_big > 0 {
                        rejected += outcome.too_big;
                        reason = format!("X-Ray segments: a span's document is over {MAX_DOCUMENT} bytes even without its metadata");
                    }
                    if outcome.w3c_ids > 0 && !self.w3c_said {
                        self.w3c_said = true;
                        tracing::info!("the app's trace IDs are random W3C IDs, not X-Ray's time-based ones; they go to X-Ray as they are (X-Ray takes W3C IDs); for X-Ray's own form set OTEL_PYTHON_ID_GENERATOR=xray (opentelemetry-sdk-extension-aws)");
                    }
                }
                Err(e) => {
                    // Not expected: the ingest encoded these chunks itself.
                    rejected += chunk.count;
                    reason = format!("X-Ray segments: a queued OTLP chunk does not decode ({e})");
                }
            }
        }
        Sent::Done { rejected, retry: Vec::new(), reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Status};
    use serde_json::Value as J;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }
    fn s(k: &str, v: &str) -> KeyValue {
        kv(k, Value::StringValue(v.into()))
    }
    fn i(k: &str, v: i64) -> KeyValue {
        kv(k, Value::IntValue(v))
    }

    const TRACE: [u8; 16] = [0x69, 0x2e, 0x8f, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    const NOW: u64 = 0x692e_8f10;

    fn span(id: u8, parent: Option<u8>, kind: SpanKind, name: &str, attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: TRACE.to_vec(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
            parent_span_id: parent.map(|p| vec![0, 0, 0, 0, 0, 0, 0, p]).unwrap_or_default(),
            name: name.into(),
            kind: kind as i32,
            start_time_unix_nano: 1_764_666_000_123_456_789,
            end_time_unix_nano: 1_764_666_000_223_456_000,
            attributes,
            ..Default::default()
        }
    }

    fn request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: resource, ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    fn docs(req: &ExportTraceServiceRequest, indexed: &Indexed) -> (Vec<J>, Outcome) {
        let (groups, outcome) = convert(req, indexed, NOW);
        (groups.iter().flat_map(|g| g.iter()).map(|d| serde_json::from_str(d).expect("valid JSON")).collect(), outcome)
    }

    fn ecs() -> Vec<KeyValue> {
        vec![
            s("service.name", "backend-flask"),
            s("service.version", "1.4.2"),
            s("telemetry.sdk.name", "opentelemetry"),
            s("telemetry.sdk.language", "python"),
            s("cloud.provider", "aws"),
            s("cloud.platform", "aws_ecs"),
            s("aws.ecs.launchtype", "fargate"),
            s("aws.ecs.task.arn", "arn:aws:ecs:us-east-1:111122223333:task/c/abc"),
            s("container.name", "backend-flask"),
            kv(
                "aws.log.group.names",
                Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::StringValue("/cruddur".into())) }] }),
            ),
        ]
    }

    #[test]
    fn a_flask_request_becomes_a_segment_with_its_calls_as_subsegments() {
        let mut server = span(
            1,
            None,
            SpanKind::Server,
            "GET /api/activities/home",
            vec![
                s("http.request.method", "GET"),
                s("url.scheme", "http"),
                s("server.address", "127.0.0.1"),
                i("server.port", 4567),
                s("url.path", "/api/activities/home"),
                s("url.query", "a=1"),
                s("client.address", "10.0.0.5"),
                s("user_agent.original", "curl/8"),
                i("http.response.status_code", 500),
                s("app.user", "andrewbrown"),
                i("app.count", 3),
                s("enduser.id", "u-1"),
            ],
        );
        server.events.push(span::Event {
            name: "exception".into(),
            attributes: vec![
                s("exception.type", "ValueError"),
                s("exception.message", "boom"),
                s(
                    "exception.stacktrace",
                    "Traceback (most recent call last):\n  File \"/app/app.py\", line 12, in home\n    raise ValueError('boom')\nValueError: boom",
                ),
            ],
            ..Default::default()
        });
        let client = span(
            2,
            Some(1),
            SpanKind::Client,
            "GET",
            vec![
                s("http.method", "GET"),
                s("http.url", "https://api.honeycomb.io/1/x"),
                s("net.peer.name", "api.honeycomb.io"),
                i("http.status_code", 429),
            ],
        );
        let dynamo = span(
            3,
            Some(1),
            SpanKind::Client,
            "DynamoDB.Query",
            vec![
                s("rpc.system", "aws-api"),
                s("rpc.service", "DynamoDB"),
                s("rpc.method", "Query"),
                s("aws.region", "us-east-1"),
                s("aws.request_id", "R1"),
            ],
        );
        let db = span(
            4,
            Some(1),
            SpanKind::Client,
            "SELECT",
            vec![
                s("db.system", "postgresql"),
                s("db.name", "cruddur"),
                s("server.address", "db.local"),
                s("db.statement", "SELECT 1"),
                s("db.user", "app"),
            ],
        );
        let mut local = span(
            5,
            Some(1),
            SpanKind::Internal,
            "render",
            vec![
                kv(
                    "aws.xray.annotations",
                    Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::StringValue("step".into())) }] }),
                ),
                s("step", "two"),
            ],
        );
        local.status = Some(Status { code: StatusCode::Error as i32, message: "template missing".into() });
        let req = request(ecs(), vec![server, client, dynamo, db, local]);
        let (d, outcome) = docs(&req, &Indexed::parse(&["app.user".into()]));
        assert_eq!(outcome, Outcome { documents: 5, too_big: 0, w3c_ids: 0 });
        let seg = &d[0];
        assert_eq!(seg["name"], "backend-flask");
        assert_eq!(seg["id"], "0000000000000001");
        assert_eq!(seg["trace_id"], "1-692e8f00-0102030405060708090a0b0c");
        assert_eq!(seg["start_time"].as_f64().unwrap(), 1_764_666_000.123_456);
        assert!(seg.get("parent_id").is_none() && seg.get("type").is_none());
        assert_eq!(seg["origin"], "AWS::ECS::Fargate");
        assert_eq!(seg["user"], "u-1");
        assert_eq!((seg["fault"].as_bool(), seg["error"].as_bool()), (Some(true), Some(false)));
        assert_eq!(seg["http"]["request"]["method"], "GET");
        assert_eq!(seg["http"]["request"]["url"], "http://127.0.0.1:4567/api/activities/home?a=1");
        assert_eq!(seg["http"]["request"]["client_ip"], "10.0.0.5");
        assert_eq!(seg["http"]["response"]["status"], 500);
        assert_eq!(seg["cause"]["exceptions"][0]["type"], "ValueError");
        assert_eq!(seg["cause"]["exceptions"][0]["stack"][0], serde_json::json!({"path": "/app/app.py", "line": 12, "label": "home"}));
        assert_eq!(seg["annotations"], serde_json::json!({"app.user": "andrewbrown"}));
        assert_eq!(seg["metadata"]["default"]["app.count"], 3);
        assert_eq!(seg["metadata"]["default"]["otel.resource.service.name"], "backend-flask");
        assert!(seg["metadata"]["default"].get("http.request.method").is_none(), "what the http block took is not repeated");
        assert_eq!(seg["aws"]["ecs"]["container"], "backend-flask");
        assert_eq!(seg["aws"]["cloudwatch_logs"][0]["log_group"], "/cruddur");
        assert_eq!(seg["aws"]["xray"]["sdk"], "opentelemetry for python");
        assert_eq!(seg["service"]["version"], "1.4.2");

        let http = &d[1];
        assert_eq!(
            (http["type"].as_str(), http["parent_id"].as_str(), http["namespace"].as_str()),
            (Some("subsegment"), Some("0000000000000001"), Some("remote"))
        );
        assert_eq!(http["name"], "api.honeycomb.io");
        assert_eq!((http["error"].as_bool(), http["throttle"].as_bool(), http["fault"].as_bool()), (Some(true), Some(true), Some(false)));
        assert_eq!(http["http"]["request"]["url"], "https://api.honeycomb.io/1/x");
        assert!(http.get("origin").is_none() && http.get("aws").is_none(), "the resource's details are on the segment only");

        let aws = &d[2];
        assert_eq!((aws["name"].as_str(), aws["namespace"].as_str()), (Some("DynamoDB"), Some("aws")));
        assert_eq!(aws["aws"], serde_json::json!({"operation": "Query", "region": "us-east-1", "request_id": "R1"}));

        let sql = &d[3];
        assert_eq!(sql["name"], "cruddur@db.local");
        assert_eq!(
            sql["sql"],
            serde_json::json!({"url": "postgresql://db.local/cruddur", "database_type": "postgresql", "user": "app", "sanitized_query": "SELECT 1"})
        );

        let internal = &d[4];
        assert_eq!((internal["name"].as_str(), internal.get("namespace")), (Some("render"), None));
        assert_eq!(internal["fault"], true);
        assert_eq!(internal["cause"]["exceptions"][0]["message"], "template missing");
        assert_eq!(internal["annotations"], serde_json::json!({"step": "two"}));
    }

    #[test]
    fn a_parentless_call_gets_a_segment_for_its_service() {
        let req = request(
            vec![s("service.name", "worker")],
            vec![span(9, None, SpanKind::Producer, "send", vec![s("aws.remote.service", "AWS::SQS"), s("rpc.system", "aws-api")])],
        );
        let (d, _) = docs(&req, &Indexed::default());
        assert_eq!(d.len(), 2);
        assert_eq!((d[0]["name"].as_str(), d[0].get("type")), (Some("worker"), None));
        assert_eq!(d[1]["parent_id"], d[0]["id"]);
        assert_eq!((d[1]["name"].as_str(), d[1]["namespace"].as_str(), d[1]["id"].as_str()), (Some("SQS"), Some("aws"), Some("0000000000000009")));
    }

    #[test]
    fn old_http_conventions_consumers_names_and_ids() {
        let req = request(
            vec![],
            vec![
                span(
                    1,
                    Some(7),
                    SpanKind::Consumer,
                    "process",
                    vec![
                        s("http.method", "POST"),
                        s("http.scheme", "https"),
                        s("http.host", "example.com"),
                        s("http.target", "/p"),
                        i("http.status_code", 404),
                    ],
                ),
                span(2, Some(1), SpanKind::Internal, "<weird> name!", vec![]),
            ],
        );
        let (groups, outcome) = convert(&req, &Indexed::parse(&["*".into()]), 0x7000_0000);
        assert_eq!(outcome.w3c_ids, 2, "0x692e8f00 is not within 30 days of 0x70000000");
        let d: Vec<J> = groups.iter().flat_map(|g| g.iter()).map(|x| serde_json::from_str(x).unwrap()).collect();
        assert_eq!(
            (d[0].get("type"), d[0]["parent_id"].as_str()),
            (None, Some("0000000000000007")),
            "a consumer is a segment, linked to its producer"
        );
        assert_eq!(d[0]["name"], "process", "no service.name: the span's name");
        assert_eq!(d[0]["http"]["request"]["url"], "https://example.com/p");
        assert_eq!(d[0]["error"], true);
        assert_eq!(d[1]["name"], "weird name");
    }

    #[test]
    fn a_document_over_64_kb_loses_its_metadata_then_is_refused() {
        let big = "x".repeat(70_000);
        let req = request(
            vec![],
            vec![span(1, None, SpanKind::Server, "a", vec![s("note", &big)]), span(2, None, SpanKind::Server, "b", vec![s("note", &big)])],
        );
        let (d, outcome) = docs(&req, &Indexed::default());
        assert_eq!(outcome.documents, 2);
        assert!(d[0].get("metadata").is_none());
        let (_, outcome) = convert(&req, &Indexed::parse(&["note".into()]), NOW);
        assert_eq!((outcome.documents, outcome.too_big), (0, 2), "an annotation that big cannot be cut");
    }

    #[test]
    fn any_attribute_value_is_valid_json() {
        let nested = (0..20).fold(AnyValue { value: Some(Value::IntValue(1)) }, |inner, _| AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values: vec![inner] })),
        });
        let req = request(
            vec![],
            vec![span(
                1,
                None,
                SpanKind::Server,
                "a",
                vec![
                    kv("deep", nested.value.unwrap()),
                    kv("nan", Value::DoubleValue(f64::NAN)),
                    kv("b", Value::BytesValue(vec![0, 255])),
                    s("q", "\"\n\u{1}"),
                ],
            )],
        );
        let (d, _) = docs(&req, &Indexed::default());
        let m = &d[0]["metadata"]["default"];
        assert_eq!((m["nan"].clone(), m["b"].as_str(), m["q"].as_str()), (J::Null, Some("AP8="), Some("\"\n\u{1}")));
        assert!(m["deep"].to_string().contains('…'));
    }
}
