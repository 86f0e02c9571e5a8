//! Bounded memory under hostile input: every listener of one agent (OTLP/HTTP and OTLP/gRPC on
//! one port, the X-Ray UDP socket and its sampling proxy, StatsD, the health socket) gets what
//! a broken or hostile client could send — huge declared Content-Lengths, slow-loris
//! connections (many open, none finishing), bodies that arrive slowly and never end, values
//! nested 20,000 deep, a span with 600,000 attributes, a gzip bomb, floods of datagrams, HTTP/2
//! connections full of gRPC calls that never finish — and
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
        let statsd = statsd_address(&err);
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

    // 3b. Requests being read at once, counted: the sampling proxy reads 64; with 64 stalled,
    //     the next request is refused at once with 503 and Retry-After.
    let mut slow = Vec::new();
    for _ in 0..64 {
        let mut s = TcpStream::connect(&t.xray).unwrap();
        s.write_all(b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").unwrap();
        slow.push(s);
    }
    let mut answer = String::new();
    wait_until(Duration::from_secs(10), "the 65th sampling request refused", || {
        let mut s = TcpStream::connect(&t.xray).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(
            b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        );
        answer.clear();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 503")
    });
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1") && lower.contains("64 requests"), "{answer}");
    drop(slow);
    t.still_serves("64 stalled sampling requests");

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

    // 9. HTTP/2 (OTLP/gRPC on the same port). 200 connections each opening the 8 calls a
    //    connection may have, sending 600 bytes of a 1 MiB message on each, never finishing
    //    one and never reading an answer: all held, within the budgets.
    let h2: Vec<TcpStream> = (0..200).filter_map(|_| h2_stalled(&t.otlp, 8, 600)).collect();
    assert!(h2.len() >= 190, "connected {}", h2.len());
    // 50 more opening 100 calls at once: past the 8, each call is refused (RST_STREAM,
    // REFUSED_STREAM), and past 32 refusals the connection is closed (GOAWAY,
    // ENHANCE_YOUR_CALM) rather than kept with its reset streams.
    for _ in 0..50 {
        let mut s = h2_stalled(&t.otlp, 100, 600).expect("an HTTP/2 connection");
        let frames = h2_frames(&mut s, |f| f.iter().any(|(kind, _, _)| *kind == 0x7), Duration::from_secs(10));
        let goaway = frames.iter().find(|(kind, _, _)| *kind == 0x7).map(|(_, _, p)| p.clone());
        assert_eq!(goaway.as_deref().map(|p| &p[4..8]), Some(&[0, 0, 0, 0xb][..]), "GOAWAY with ENHANCE_YOUR_CALM");
    }
    // One more, read: calls 9 to 12 are refused, so the frames were taken as HTTP/2 and the cap
    // holds.
    let mut probe = h2_stalled(&t.otlp, 12, 600).expect("an HTTP/2 connection");
    let frames = h2_frames(&mut probe, |f| f.iter().filter(|(kind, _, _)| *kind == 0x3).count() >= 4, Duration::from_secs(10));
    let refused: Vec<u32> = frames.iter().filter(|(kind, _, p)| *kind == 0x3 && p[..] == [0, 0, 0, 7]).map(|(_, id, _)| *id).collect();
    assert_eq!(refused, vec![17, 19, 21, 23], "the 9th to 12th calls refused");
    eprintln!("HTTP/2: {} connections of 8 stalled calls held", h2.len());
    t.still_serves("HTTP/2 floods");
    drop((h2, probe));

    let peak = t.peak_kb();
    eprintln!("all attacks in {:?}: peak RSS {peak} kB (ceiling {CEILING_KB} kB)", started.elapsed());
    assert!(peak <= CEILING_KB, "peak RSS {peak} kB is over {CEILING_KB} kB");
    signal(t.pid(), libc::SIGTERM);
    wait_child(&mut t.agent, Duration::from_secs(30), "the agent after SIGTERM");
}

/// An HTTP/2 frame (RFC 9113 section 4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HTTP/2 client by hand (the tests have no h2 client): one connection opening `calls`
/// OTLP/gRPC Export calls, each sending `bytes` of a message declared 1 MiB long and never
/// finishing it; nothing is read. Header blocks are HPACK literals without indexing.
fn h2_stalled(address: &str, calls: u32, bytes: usize) -> Option<TcpStream> {
    let mut s = TcpStream::connect(address).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
        (":authority", "x"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.extend_from_slice(&[0, name.len() as u8]);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
    let mut message = vec![0u8; bytes];
    message[..5].copy_from_slice(&[0, 0, 0x10, 0, 0]); // not compressed, 1 MiB
    for call in 0..calls {
        out.extend(h2_frame(0x1, 0x4, 2 * call + 1, &block)); // HEADERS, END_HEADERS
        out.extend(h2_frame(0x0, 0, 2 * call + 1, &message)); // DATA, the stream left open
    }
    s.write_all(&out).ok()?;
    Some(s)
}

/// Reads HTTP/2 frames (kind, stream, payload) until `enough` says so, the connection closes
/// or `within` passes.
fn h2_frames(s: &mut TcpStream, enough: impl Fn(&[(u8, u32, Vec<u8>)]) -> bool, within: Duration) -> Vec<(u8, u32, Vec<u8>)> {
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + within;
    let (mut buf, mut frames) = (Vec::new(), Vec::new());
    let mut chunk = [0u8; 16384];
    while !enough(&frames) && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while buf.len() >= 9 {
            let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            frames.push((buf[3], stream, buf[9..9 + len].to_vec()));
            buf.drain(..9 + len);
        }
    }
    frames
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
