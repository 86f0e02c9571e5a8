//! Bounded memory under hostile input: every listener of one agent (OTLP/HTTP and OTLP/gRPC on
//! one port, the X-Ray UDP socket and its sampling proxy, StatsD, the health socket) gets what
//! a broken or hostile client could send — huge declared Content-Lengths, slow-loris
//! connections (many open, none finishing), bodies that arrive slowly and never end, values
//! nested 20,000 deep, a span with 600,000 attributes, a gzip bomb, floods of datagrams — and
//! after each the app is still running, a normal request is still relayed, and at the end the
//! agent's peak RSS (VmHWM) is at most 40 MB. The ceilings are in README ("Limits").

mod util;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use util::*;

const CEILING_KB: u64 = 40 * 1024;

const SPAN: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"hostile-test"}}]},
"scopeSpans":[{"spans":[{"traceId":"TRACE","spanId":"eee19b7ec3c1b174","name":"normal","kind":2,
"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}"#;

struct Target {
    agent: Child,
    err: std::sync::Arc<std::sync::Mutex<String>>,
    otlp: String,
    xray: String,
    statsd: String,
    socket: String,
    sink: Sink,
    sent: u32,
}

impl Target {
    fn start() -> Target {
        let sink = Sink::start(&[]);
        let closed = Closed::new();
        let socket = socket_name("hostile");
        // The shipped binary when there is one (scripts/test builds it): its memory is the figure.
        let bin = std::env::var_os("TEST_STATIC_BIN").map(std::path::PathBuf::from).filter(|p| p.exists()).unwrap_or_else(agent);
        eprintln!("agent under test: {}", bin.display());
        let mut cmd = agent_cmd_of(&bin);
        aws_env(&mut cmd, &closed.endpoint());
        std::mem::forget(closed); // refused for the test's whole life
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint())
            .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
            .env_remove("AGENT_NO_XRAY")
            .args(["run", "--otlp-address", "127.0.0.1:0", "--otlp-flush-interval", "100ms", "--xray-address", "127.0.0.1:0"])
            .args(["--health-socket", &socket, "--", "sleep", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut agent = cmd.spawn().unwrap();
        let err = collect(agent.stderr.take().unwrap());
        let otlp = bound_address(&err, "relaying OTLP");
        let xray = bound_address(&err, "receiving X-Ray segments");
        let statsd = {
            let log = err.lock().unwrap().clone();
            let line = log.lines().find(|l| l.contains("relaying OTLP")).unwrap().to_string();
            line.split(" statsd=").nth(1).unwrap().split_whitespace().next().unwrap().to_string()
        };
        Target { agent, err, otlp, xray, statsd, socket, sink, sent: 0 }
    }

    fn pid(&self) -> u32 {
        self.agent.id()
    }

    fn peak_kb(&self) -> u64 {
        status_kb(self.pid(), "VmHWM:")
    }

    /// After an attack: the agent (and so the app) runs, a normal span is relayed, health answers.
    fn still_serves(&mut self, after: &str) {
        assert!(alive(self.pid() as i32), "the agent died after {after}:\n{}", self.err.lock().unwrap());
        self.sent += 1;
        let trace = format!("{:032x}", 0x5b8e_0000_u64 + self.sent as u64);
        let body = SPAN.replace("TRACE", &trace);
        let mut status = 0;
        wait_until(Duration::from_secs(30), &format!("a normal span to be taken after {after}"), || {
            status = http_post(&self.otlp, "/v1/traces", "application/json", body.as_bytes()).0;
            status == 200
        });
        self.sink.wait_for_ids(&[trace], Duration::from_secs(30), &format!("the normal span after {after} at the backend"));
        let mut c = agent_cmd();
        c.args(["health", "--socket", &self.socket]);
        let out = run(c, Duration::from_secs(10));
        assert!(!stdout(&out).contains("no agent"), "the health socket answers after {after}: {}", stdout(&out));
        eprintln!("after {after}: peak RSS {} kB", self.peak_kb());
    }
}

/// Opens `n` connections to `address` and writes `head` on each, then holds them.
fn hold(address: &str, n: usize, head: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect(address).ok()?;
            let _ = s.write_all(head);
            Some(s)
        })
        .collect()
}

fn nested_json(depth: usize) -> String {
    let mut v = String::from(r#"{"stringValue":"x"}"#);
    for _ in 0..depth {
        v = format!(r#"{{"kvlistValue":{{"values":[{{"key":"k","value":{v}}}]}}}}"#);
    }
    SPAN.replace("TRACE", "5b8efff798038103d269b633813fc60c")
        .replace(r#""kind":2,"#, &format!(r#""kind":2,"attributes":[{{"key":"deep","value":{v}}}],"#))
}

/// A trace request whose span has an attribute nested `depth` deep, written byte by byte (a
/// prost value that deep would overflow the test's own stack when encoded or dropped).
fn nested_protobuf(depth: usize) -> Vec<u8> {
    fn varint_len(mut n: usize) -> usize {
        let mut l = 1;
        while n >= 0x80 {
            n >>= 7;
            l += 1;
        }
        l
    }
    fn put_ld(out: &mut Vec<u8>, field: u8, len: usize) {
        out.push(field << 3 | 2);
        let mut n = len;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    fn ld(field: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_ld(&mut out, field, payload.len());
        out.extend_from_slice(payload);
        out
    }
    // Sizes bottom-up: AnyValue{kvlist_value: KeyValueList{values: [KeyValue{key: "k", value}]}}.
    let wrap = |inner: usize| {
        let kv = 3 + 1 + varint_len(inner) + inner;
        let list = 1 + varint_len(kv) + kv;
        (kv, list)
    };
    let mut any = vec![3usize]; // AnyValue{string_value: "x"}
    for i in 0..depth {
        let (_, list) = wrap(any[i]);
        any.push(1 + varint_len(list) + list);
    }
    let mut value = Vec::with_capacity(any[depth]);
    for i in (1..=depth).rev() {
        let (kv, list) = wrap(any[i - 1]);
        put_ld(&mut value, 6, list);
        put_ld(&mut value, 1, kv);
        value.extend_from_slice(&[0x0a, 1, b'k']);
        put_ld(&mut value, 2, any[i - 1]);
    }
    value.extend_from_slice(&[0x0a, 1, b'x']);
    let attribute = [ld(1, b"deep"), ld(2, &value)].concat();
    let span = [ld(1, &[7; 16]), ld(2, &[7; 8]), ld(5, b"hostile"), ld(9, &attribute)].concat();
    ld(1, &ld(2, &ld(2, &span)))
}

fn request(attributes: Vec<KeyValue>) -> Vec<u8> {
    let span = Span { trace_id: vec![7; 16], span_id: vec![7; 8], name: "hostile".into(), attributes, ..Default::default() };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans { scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }], ..Default::default() }],
    }
    .encode_to_vec()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn post_with(address: &str, path: &str, headers: &str, body: &[u8]) -> u16 {
    let Ok(mut s) = TcpStream::connect(address) else { return 0 };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn every_listener_stays_within_its_ceiling_under_hostile_input() {
    let mut t = Target::start();
    t.still_serves("start");
    let started = Instant::now();

    // 1. Huge declared Content-Length, on OTLP and on the sampling proxy: refused unread.
    for (address, path) in [(&t.otlp, "/v1/traces"), (&t.xray, "/GetSamplingRules")] {
        for _ in 0..50 {
            let mut s = TcpStream::connect(address.as_str()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1099511627776\r\n\r\n");
            s.write_all(head.as_bytes()).unwrap();
            let mut answer = [0u8; 12];
            s.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"HTTP/1.1 413", "{path}");
        }
    }
    t.still_serves("huge Content-Length");

    // 2. Slow-loris: connections that never finish their headers, past the connection cap.
    let loris = hold(&t.otlp, 300, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n");
    let loris_x = hold(&t.xray, 300, b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\n");
    drop((loris, loris_x));
    t.still_serves("300 slow-loris connections on each HTTP port");

    // 3. Bodies that come slowly and never end: 40 connections each declaring 7 MiB (under the
    //    limit) and 40 chunked ones, each sending 2 MiB, then stalling.
    let data = vec![b'{'; 1 << 20];
    let chunked = [b"100000\r\n".as_slice(), &data, b"\r\n"].concat();
    let mut stalled = Vec::new();
    for i in 0..80 {
        let Ok(mut s) = TcpStream::connect(&t.otlp) else { continue };
        let (framing, piece) = if i % 2 == 0 { ("Content-Length: 7340032", &data) } else { ("Transfer-Encoding: chunked", &chunked) };
        let head = format!("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n");
        let _ = s.write_all(head.as_bytes());
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        for _ in 0..2 {
            if s.write_all(piece).is_err() {
                break;
            }
        }
        stalled.push(s);
    }
    // The budget filled: the agent answers the bodies that did not fit with 503.
    wait_until(Duration::from_secs(10), "a 503 for a body over the reading budget", || {
        stalled.iter().any(|s| {
            let mut head = [0u8; 12];
            s.set_nonblocking(true).unwrap();
            let got = s.peek(&mut head).is_ok_and(|n| n == 12 && &head == b"HTTP/1.1 503");
            s.set_nonblocking(false).unwrap();
            got
        })
    });
    eprintln!("stalled bodies: peak RSS {} kB", t.peak_kb());
    drop(stalled);
    t.still_serves("80 stalled bodies");

    // 4. Nesting 20,000 deep, JSON and protobuf; X-Ray subsegments nested as deep.
    for (ct, body) in [("application/json", nested_json(20_000).into_bytes()), ("application/x-protobuf", nested_protobuf(20_000))] {
        let status = post_with(&t.otlp, "/v1/traces", &format!("Content-Type: {ct}\r\n"), &body);
        assert_eq!(status, 400, "{ct} nested 20,000 deep (serde_json's and prost's recursion limits)");
    }
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut deep = String::from(r#"{"name":"leaf","id":"70de5b6f19ff9a0b","start_time":1.0,"end_time":2.0}"#);
    for _ in 0..2_000 {
        deep = format!(r#"{{"name":"n","id":"70de5b6f19ff9a0b","start_time":1.0,"end_time":2.0,"subsegments":[{deep}]}}"#);
    }
    let doc = format!(
        "{{\"format\":\"json\",\"version\":1}}\n{{\"name\":\"s\",\"id\":\"70de5b6f19ff9a0a\",\"trace_id\":\"1-581cf771-a006649127e371903a2de979\",\"start_time\":1.0,\"end_time\":2.0,\"subsegments\":[{}]}}",
        &deep[..deep.len().min(60_000)]
    );
    for _ in 0..200 {
        let _ = udp.send_to(doc.as_bytes(), &t.xray);
    }
    t.still_serves("nesting 20,000 deep");

    // 5. Many attributes: one span with 600,000 (7 MB of protobuf, under the body limit; it
    //    would decode to about 60 MB), plain and gzipped; and 150,000 as JSON.
    let attribute = |i| KeyValue { key: "k".into(), value: Some(AnyValue { value: Some(any_value::Value::IntValue(i)) }), ..Default::default() };
    let many = request((0..600_000).map(attribute).collect());
    let status = post_with(&t.otlp, "/v1/traces", "Content-Type: application/x-protobuf\r\n", &many);
    assert_eq!(status, 413, "600,000 attributes in {} bytes of protobuf", many.len());
    let status = post_with(&t.otlp, "/v1/traces", "Content-Type: application/x-protobuf\r\nContent-Encoding: gzip\r\n", &gzip(&many));
    assert_eq!(status, 413, "600,000 attributes, gzipped");
    let attrs: String = (0..150_000).map(|i| format!(r#"{{"key":"k","value":{{"intValue":"{i}"}}}},"#)).collect();
    let json = SPAN
        .replace("TRACE", "5b8efff798038103d269b633813fc60d")
        .replace(r#""kind":2,"#, &format!(r#""kind":2,"attributes":[{}],"#, attrs.trim_end_matches(',')));
    let status = post_with(&t.otlp, "/v1/traces", "Content-Type: application/json\r\n", json.as_bytes());
    assert_eq!(status, 413, "150,000 attributes in {} bytes of JSON", json.len());
    t.still_serves("600,000 attributes");

    // 6. A gzip bomb: 1 GiB of zeros in ~1 MB.
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            e.write_all(&zeros).unwrap();
        }
        e.finish().unwrap()
    };
    let status = post_with(&t.otlp, "/v1/traces", "Content-Type: application/x-protobuf\r\nContent-Encoding: gzip\r\n", &bomb);
    assert_eq!(status, 413, "the gzip bomb is cut at the limit");
    t.still_serves("a gzip bomb");

    // 7. StatsD: a flood of distinct names; X-Ray: a flood of full-size datagrams.
    let names: String = (0..2_000).map(|i| format!("hostile.metric.{i}:1|c\n")).collect();
    for _ in 0..50 {
        for part in names.as_bytes().chunks(8_000) {
            let _ = udp.send_to(part, &t.statsd);
        }
    }
    let big = format!("{{\"format\":\"json\",\"version\":1}}\n{{\"name\":\"{}\"}}", "x".repeat(64_000));
    for _ in 0..5_000 {
        let _ = udp.send_to(big.as_bytes(), &t.xray);
    }
    t.still_serves("UDP floods");

    // 8. The health socket: 2,000 connections that never read.
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(t.socket.as_bytes()).unwrap();
    let held: Vec<_> = (0..2_000).filter_map(|_| std::os::unix::net::UnixStream::connect_addr(&addr).ok()).collect();
    assert!(held.len() >= 1_000, "connected {}", held.len());
    eprintln!("health socket: {} connections held", held.len());
    drop(held);
    t.still_serves("2,000 idle health connections");

    let peak = t.peak_kb();
    eprintln!("all attacks in {:?}: peak RSS {peak} kB (ceiling {CEILING_KB} kB)", started.elapsed());
    assert!(peak <= CEILING_KB, "peak RSS {peak} kB is over {CEILING_KB} kB");
    signal(t.pid(), libc::SIGTERM);
    wait_child(&mut t.agent, Duration::from_secs(30), "the agent after SIGTERM");
}

#[test]
fn the_nested_protobuf_is_what_it_says() {
    let request = ExportTraceServiceRequest::decode(&nested_protobuf(20)[..]).expect("valid protobuf within prost's depth (three messages a level)");
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    let mut value = span.attributes[0].value.clone();
    let mut depth = 0;
    while let Some(AnyValue { value: Some(any_value::Value::KvlistValue(list)) }) = value {
        value = list.values[0].value.clone();
        depth += 1;
    }
    assert_eq!((span.attributes[0].key.as_str(), depth), ("deep", 20));
}
