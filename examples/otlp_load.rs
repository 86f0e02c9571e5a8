//! Bench tool: sends OTLP as the OpenTelemetry SDK's batch processors do: protobuf, 512 items a
//! request (their default batch), over keep-alive connections.
//! `otlp_load HOST:PORT RATE SECONDS [CONNECTIONS [MODE]]`: RATE items a second in all (0: as fast
//! as it can) for SECONDS; prints the number of items the agent accepted (answered 200 / OK).
//! MODE: `traces` (POST /v1/traces, the default), `grpc` (the same spans over OTLP/gRPC,
//! TraceService/Export on HTTP/2), `metrics` (POST /v1/metrics: 64 sums of 8 data points, the
//! counted unit) or `logs` (POST /v1/logs: 512 log records).
//! Each span looks like a Flask request span (name, kind, times, eight HTTP attributes), with
//! fresh trace and span ids in every request; log records carry a message, a severity, three
//! attributes and a trace context; data points two attributes and an integer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message;

const BATCH: usize = 512;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }), ..Default::default() }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Traces,
    Grpc,
    Metrics,
    Logs,
}

fn resource() -> Option<Resource> {
    Some(Resource { attributes: vec![kv("service.name", "backend-flask"), kv("telemetry.sdk.language", "python")], ..Default::default() })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope { name: "opentelemetry.instrumentation.flask".into(), version: "0.66b1".into(), ..Default::default() })
}

fn body(mode: Mode, seed: &mut u64) -> Vec<u8> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    match mode {
        Mode::Traces | Mode::Grpc => request(seed),
        Mode::Metrics => {
            let metrics = (0..BATCH / 8)
                .map(|m| Metric {
                    name: format!("http.server.duration.{m}"),
                    unit: "ms".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: (0..8)
                            .map(|p| NumberDataPoint {
                                attributes: vec![kv("http.route", "/api/activities/home"), kv("http.status_code", &(200 + p).to_string())],
                                start_time_unix_nano: now - 60_000_000_000,
                                time_unix_nano: now,
                                value: Some(number_data_point::Value::AsInt(*seed as i64 & 0xffff)),
                                ..Default::default()
                            })
                            .collect(),
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                })
                .collect();
            let scope_metrics = vec![ScopeMetrics { scope: scope(), metrics, schema_url: String::new() }];
            ExportMetricsServiceRequest { resource_metrics: vec![ResourceMetrics { resource: resource(), scope_metrics, schema_url: String::new() }] }
                .encode_to_vec()
        }
        Mode::Logs => {
            let log_records = (0..BATCH)
                .map(|i| LogRecord {
                    time_unix_nano: now + i as u64,
                    observed_time_unix_nano: now + i as u64,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("GET /api/activities/home 200 in {i} ms"))) }),
                    attributes: vec![kv("code.function", "home"), kv("code.lineno", "42"), kv("http.route", "/api/activities/home")],
                    trace_id: vec![(i % 251) as u8 + 1; 16],
                    span_id: vec![(i % 241) as u8 + 1; 8],
                    ..Default::default()
                })
                .collect();
            let scope_logs = vec![ScopeLogs { scope: scope(), log_records, schema_url: String::new() }];
            ExportLogsServiceRequest { resource_logs: vec![ResourceLogs { resource: resource(), scope_logs, schema_url: String::new() }] }
                .encode_to_vec()
        }
    }
}

fn request(seed: &mut u64) -> Vec<u8> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let spans = (0..BATCH)
        .map(|i| {
            let mut trace_id = next().to_be_bytes().to_vec();
            trace_id.extend(next().to_be_bytes());
            Span {
                trace_id,
                span_id: next().to_be_bytes().to_vec(),
                name: "GET /api/activities/home".into(),
                kind: SpanKind::Server as i32,
                start_time_unix_nano: now + i as u64 * 1000,
                end_time_unix_nano: now + i as u64 * 1000 + 2_345_000,
                attributes: vec![
                    kv("http.method", "GET"),
                    kv("http.route", "/api/activities/home"),
                    kv("http.target", "/api/activities/home"),
                    kv("http.scheme", "http"),
                    kv("http.status_code", "200"),
                    kv("net.host.name", "127.0.0.1"),
                    kv("net.peer.ip", "10.0.1.23"),
                    kv("http.user_agent", "ELB-HealthChecker/2.0"),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans { scope: scope(), spans, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// POSTs one body to `path`; true when answered 200.
fn post(s: &mut TcpStream, addr: &str, path: &str, body: &[u8], buf: &mut Vec<u8>) -> bool {
    let head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n", body.len());
    if s.write_all(head.as_bytes()).and_then(|_| s.write_all(body)).is_err() {
        return false;
    }
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            while buf.len() < end + 4 + len {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            return head.starts_with("http/1.1 200");
        }
    }
}

/// One gRPC Export call on an HTTP/2 connection; true when the status is OK.
async fn export(h2: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>, framed: bytes::Bytes) -> bool {
    use http_body_util::BodyExt;
    let req = hyper::Request::post("http://agent/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(framed))
        .unwrap();
    let Ok(resp) = h2.send_request(req).await else { return false };
    let Ok(all) = resp.into_body().collect().await else { return false };
    all.trailers().and_then(|t| t.get("grpc-status")).is_some_and(|s| s == "0")
}

/// The gRPC sender of one connection: as `main`'s HTTP loop, with calls on one HTTP/2 connection.
fn grpc_sender(addr: String, bodies: Vec<Vec<u8>>, per_thread: u64, secs: u64) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let framed: Vec<bytes::Bytes> = bodies
            .into_iter()
            .map(|b| {
                let mut f = vec![0u8];
                f.extend_from_slice(&(b.len() as u32).to_be_bytes());
                f.extend_from_slice(&b);
                f.into()
            })
            .collect();
        let connect = || async {
            let s = tokio::net::TcpStream::connect(&addr).await.expect("connect to the agent");
            s.set_nodelay(true).unwrap();
            let (h2, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(s)).await.expect("HTTP/2");
            tokio::spawn(conn);
            h2
        };
        let mut h2 = connect().await;
        let (start, mut sent, mut accepted) = (Instant::now(), 0u64, 0u64);
        let end = start + Duration::from_secs(secs);
        while Instant::now() < end {
            if per_thread > 0 && sent >= start.elapsed().as_micros() as u64 * per_thread / 1_000_000 {
                tokio::time::sleep(Duration::from_micros(500)).await;
                continue;
            }
            let body = framed[(sent / BATCH as u64) as usize % framed.len()].clone();
            sent += BATCH as u64;
            if export(&mut h2, body).await {
                accepted += BATCH as u64;
            } else if h2.is_closed() {
                h2 = connect().await;
            }
        }
        accepted
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: otlp_load HOST:PORT RATE SECONDS [CONNECTIONS [traces|grpc|metrics|logs]]";
    let addr = args.next().expect(usage);
    let rate: u64 = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let conns: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let (mode, path) = match args.next().as_deref().unwrap_or("traces") {
        "traces" => (Mode::Traces, "/v1/traces"),
        "grpc" => (Mode::Grpc, ""),
        "metrics" => (Mode::Metrics, "/v1/metrics"),
        "logs" => (Mode::Logs, "/v1/logs"),
        _ => panic!("{usage}"),
    };
    let threads: Vec<_> = (0..conns)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut seed = 0x9e3779b97f4a7c15u64 ^ (t + 1).wrapping_mul(0x2545F4914F6CDD1D);
                // Bodies made before the clock starts, so the sender's own encoding is not timed.
                let bodies: Vec<Vec<u8>> = (0..64).map(|_| body(mode, &mut seed)).collect();
                if mode == Mode::Grpc {
                    return grpc_sender(addr, bodies, rate / conns, secs);
                }
                let mut s = TcpStream::connect(&addr).expect("connect to the agent");
                s.set_nodelay(true).unwrap();
                let (start, mut sent, mut accepted, mut buf) = (Instant::now(), 0u64, 0u64, Vec::new());
                let end = start + Duration::from_secs(secs);
                let per_thread = rate / conns;
                while Instant::now() < end {
                    if per_thread > 0 {
                        let due = start.elapsed().as_micros() as u64 * per_thread / 1_000_000;
                        if sent >= due {
                            std::thread::sleep(Duration::from_micros(500));
                            continue;
                        }
                    }
                    let body = &bodies[(sent / BATCH as u64) as usize % bodies.len()];
                    sent += BATCH as u64;
                    if post(&mut s, &addr, path, body, &mut buf) {
                        accepted += BATCH as u64;
                    } else {
                        s = TcpStream::connect(&addr).expect("reconnect to the agent");
                        s.set_nodelay(true).unwrap();
                    }
                }
                accepted
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    println!("{total}");
}
