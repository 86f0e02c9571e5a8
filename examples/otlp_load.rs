//! Bench tool: sends OTLP/HTTP spans as the OpenTelemetry SDK's BatchSpanProcessor does: POST
//! /v1/traces, protobuf, 512 spans a request (its default batch), over keep-alive connections.
//! `otlp_load HOST:PORT RATE SECONDS [CONNECTIONS]`: RATE spans a second in all (0: as fast as it
//! can) for SECONDS; prints the number of spans the agent accepted (answered 200).
//! Each span looks like a Flask request span (name, kind, times, eight HTTP attributes), with
//! fresh trace and span ids in every request.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message;

const BATCH: usize = 512;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }), ..Default::default() }
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
            resource: Some(Resource {
                attributes: vec![kv("service.name", "backend-flask"), kv("telemetry.sdk.language", "python")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.flask".into(),
                    version: "0.66b1".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// POSTs one body; true when answered 200.
fn post(s: &mut TcpStream, addr: &str, body: &[u8], buf: &mut Vec<u8>) -> bool {
    let head = format!("POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n", body.len());
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

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: otlp_load HOST:PORT RATE SECONDS [CONNECTIONS]";
    let addr = args.next().expect(usage);
    let rate: u64 = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let conns: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let threads: Vec<_> = (0..conns)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut seed = 0x9e3779b97f4a7c15u64 ^ (t + 1).wrapping_mul(0x2545F4914F6CDD1D);
                // Bodies made before the clock starts, so the sender's own encoding is not timed.
                let bodies: Vec<Vec<u8>> = (0..64).map(|_| request(&mut seed)).collect();
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
                    if post(&mut s, &addr, body, &mut buf) {
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
