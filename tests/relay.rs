//! The relay as one pipeline, end to end: nothing the agent took in is lost at shutdown (SIGTERM
//! right after the app sent, or the app exiting by itself), and every listener is bounded and
//! pushes back instead of dropping: 503 + Retry-After when the buffers are full, 413 before
//! reading an oversized body, and one log line for an HTTP/2 client on the HTTP/1 port.

mod util;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use util::*;

const T: Duration = Duration::from_secs(60);

type Log = Arc<Mutex<String>>;

fn otlp_env(cmd: &mut std::process::Command, endpoint: &str) {
    for v in ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        cmd.env_remove(v);
    }
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
}

fn spawn(mut cmd: std::process::Command) -> (Child, Log) {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    (agent, err)
}

fn whole_log(err: &Log) -> String {
    wait_until(Duration::from_secs(10), "the agent's last log line", || err.lock().unwrap().contains(" exiting code="));
    err.lock().unwrap().clone()
}

/// Every "final counts" line says the counts add up, and there is at least one.
fn assert_balanced(log: &str) {
    let finals: Vec<&str> = log.lines().filter(|l| l.contains("final counts")).collect();
    assert!(!finals.is_empty(), "{log}");
    assert!(!log.contains("do not add up"), "{log}");
}

/// X-Ray trace id `1-5f84c7a1-1234…` as the OTLP trace id the conversion gives it.
fn otlp_trace_id(xray: &str) -> String {
    xray.splitn(3, '-').skip(1).collect()
}

#[test]
fn sigterm_right_after_xray_segments_with_xray_to_otlp_delivers_every_one() {
    for round in 0..3 {
        let sink = Sink::start(&[]);
        let dir = tempfile::tempdir().unwrap();
        let ids_file = dir.path().join("ids");
        let closed = Closed::new();
        let mut cmd = agent_cmd();
        aws_env(&mut cmd, &closed.endpoint());
        otlp_env(&mut cmd, &sink.endpoint());
        cmd.env_remove("AGENT_NO_XRAY")
            .args(["run", "--xray-to-otlp", "--xray-address", "127.0.0.1:0", "--otlp-address", "127.0.0.1:0", "--"])
            .arg(venv().join("bin/python"))
            .arg(repo().join("tests/aws/send_segments.py"))
            .args(["-", "20"])
            .arg(&ids_file)
            .args(["0", "then-exec", "sleep", "300"]);
        let (mut agent, err) = spawn(cmd);
        wait_until(T, "the app to send its segments", || ids_file.exists());
        signal(agent.id(), libc::SIGTERM); // right away: the segments are still in the agent
        assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
        let log = whole_log(&err);
        let ids: Vec<String> = lines(&ids_file).iter().map(|i| otlp_trace_id(i)).collect();
        let got: std::collections::HashSet<String> = sink.spans().into_iter().map(|s| s.1).collect();
        let missing = ids.iter().filter(|i| !got.contains(*i)).count();
        assert_eq!(missing, 0, "round {round}: {missing} of 20 converted segments never reached the upstream:\n{log}");
        assert!(log.contains("received=20 sent=20 rejected=0 dropped=0"), "the X-Ray and OTLP counts: {log}");
        assert_balanced(&log);
    }
}

/// The agent relaying to `sink`, flushing only at shutdown (a 1 h interval), its app
/// `otlp_send.py COUNT OUT` (then `after`, if any); with the app's output directory.
fn agent_with_otlp_sender(sink: &Sink, count: usize, after: &[&str]) -> (Child, Log, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = agent_cmd();
    otlp_env(&mut cmd, &sink.endpoint());
    cmd.args(["run", "--otlp-address", "127.0.0.1:0", "--otlp-flush-interval", "1h", "--"])
        .arg(venv().join("bin/python"))
        .arg(repo().join("tests/aws/otlp_send.py"))
        .arg(count.to_string())
        .arg(out.path())
        .args(after);
    let (agent, err) = spawn(cmd);
    (agent, err, out)
}

#[test]
fn sigterm_right_after_otlp_spans_delivers_every_one() {
    let sink = Sink::start(&[]);
    // Only the shutdown flush can deliver them.
    let (mut agent, err, out) = agent_with_otlp_sender(&sink, 20, &["then-exec", "sleep", "300"]);
    let ids = out.path().join("ids");
    wait_until(T, "the app to send its spans", || ids.exists());
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
    let log = whole_log(&err);
    sink.wait_for_ids(&lines(&ids), Duration::from_secs(5), "every span at the upstream");
    assert!(log.contains("received=20 sent=20 rejected=0 dropped=0"), "{log}");
    assert_balanced(&log);
}

#[test]
fn an_app_that_exits_right_after_sending_loses_nothing() {
    let sink = Sink::start(&[]);
    let (mut agent, err, out) = agent_with_otlp_sender(&sink, 15, &[]);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(0));
    let log = whole_log(&err);
    sink.wait_for_ids(&lines(&out.path().join("ids")), Duration::from_secs(5), "every span at the upstream");
    assert!(log.contains("received=15 sent=15"), "{log}");
    assert_balanced(&log);
}

#[test]
fn sigterm_right_after_xray_segments_delivers_them_with_put_trace_segments() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let ids_file = dir.path().join("ids");
    let mut cmd = agent_cmd();
    aws_env(&mut cmd, &moto.endpoint());
    cmd.env_remove("AGENT_NO_XRAY")
        .args(["run", "--xray-address", "127.0.0.1:0", "--xray-flush-interval", "1h", "--"])
        .arg(venv().join("bin/python"))
        .arg(repo().join("tests/aws/send_segments.py"))
        .args(["-", "30"])
        .arg(&ids_file)
        .args(["0", "then-exec", "sleep", "300"]);
    let (mut agent, err) = spawn(cmd);
    wait_until(T, "the app to send its segments", || ids_file.exists());
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
    let log = whole_log(&err);
    assert!(log.contains("received=30 sent=30 rejected=0 dropped=0"), "{log}");
    assert_balanced(&log);
    assert_eq!(lines(&ids_file).len(), 30);
}

/// An OTLP protobuf request of `n` spans with `pad` bytes of name each.
fn otlp_body(n: usize, pad: usize) -> Vec<u8> {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: [[1u8; 8], (i as u64 + 1).to_be_bytes()].concat(),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: "x".repeat(pad),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans { scope_spans: vec![ScopeSpans { spans, ..Default::default() }], ..Default::default() }],
    }
    .encode_to_vec()
}

/// One HTTP/1.1 POST; (status, head).
fn post(address: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    http_post(address, path, content_type, body)
}

/// The agent relaying to `upstream`, its OTLP receiver on a port it chose; with its address.
fn agent_with_otlp(upstream: &str, extra: &[&str]) -> (Child, Log, String) {
    let mut cmd = agent_cmd();
    otlp_env(&mut cmd, upstream);
    cmd.args(["run", "--otlp-address", "127.0.0.1:0"]).args(extra).args(["--", "sleep", "300"]);
    let (agent, err) = spawn(cmd);
    let otlp = bound_address(&err, "relaying OTLP");
    (agent, err, otlp)
}

#[test]
fn full_buffers_answer_503_with_retry_after_and_count_it() {
    // The upstream refuses connections: the 64 KiB buffer fills, then the app is told to wait.
    let closed = Closed::new();
    let (mut agent, err, otlp) = agent_with_otlp(&closed.endpoint(), &["--otlp-buffer", "64KiB"]);
    let body = otlp_body(20, 400); // ~9 KB
    let mut answers = Vec::new();
    for _ in 0..20 {
        let (status, head) = post(&otlp, "/v1/traces", "application/x-protobuf", &body);
        answers.push(status);
        if status == 503 {
            assert!(head.to_ascii_lowercase().contains("retry-after: 5"), "{head}");
            break;
        }
        assert_eq!(status, 200, "{head}");
    }
    assert_eq!(answers.last(), Some(&503), "{answers:?}");
    let accepted = (answers.len() - 1) as u64 * 20;
    // ~3 MB more while the upstream is down: all pushed back, memory stays near the budget.
    let baseline = status_kb(agent.id(), "VmHWM:");
    for _ in 0..300 {
        assert_eq!(post(&otlp, "/v1/traces", "application/x-protobuf", &body).0, 503);
    }
    let peak = status_kb(agent.id(), "VmHWM:");
    assert!(peak.saturating_sub(baseline) < 6 * 1024, "memory stays near the 64 KiB budget: {baseline} kB -> peak {peak} kB");
    signal(agent.id(), libc::SIGTERM);
    wait_child(&mut agent, T, "agent");
    let log = whole_log(&err);
    assert_eq!(log.matches("buffer is full").count(), 1, "said once a minute at most: {log}");
    assert!(log.contains(&format!("received={accepted} sent=0 rejected=0 dropped={accepted}")), "accepted = dropped at the end: {log}");
    assert!(log.contains("throttled=6020"), "301 requests of 20 spans were refused: {log}");
    assert_balanced(&log);
}

#[test]
fn full_buffers_answer_grpc_unavailable_with_retry_info() {
    // As above, over OTLP/gRPC (grpcio's own client, on the HTTP port: HTTP/2 is told apart).
    let closed = Closed::new();
    let (mut agent, err, otlp) = agent_with_otlp(&closed.endpoint(), &["--otlp-buffer", "64KiB"]);
    let mut c = std::process::Command::new(venv().join("bin/python"));
    c.arg(repo().join("tests/aws/grpc_export.py")).args([otlp.as_str(), "50", "20"]);
    let out = run(c, T);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let codes: Vec<&str> = answer["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(codes.last(), Some(&"UNAVAILABLE"), "{answer}");
    assert!(codes[..codes.len() - 1].iter().all(|c| *c == "OK") && codes.len() > 1, "{answer}");
    assert_eq!(answer["retry_seconds"], 5, "the SDK is told when to retry: {answer}");
    signal(agent.id(), libc::SIGTERM);
    wait_child(&mut agent, T, "agent");
    let log = whole_log(&err);
    let accepted = (codes.len() - 1) * 20;
    assert!(log.contains(&format!("received={accepted} sent=0 rejected=0 dropped={accepted}")), "{log}");
    assert!(log.contains("throttled=20"), "the refused call is counted: {log}");
    assert_balanced(&log);
}

#[test]
fn a_256_mib_sampling_request_gets_413_and_memory_stays_bounded() {
    let closed = Closed::new();
    let mut cmd = agent_cmd();
    aws_env(&mut cmd, &closed.endpoint());
    cmd.env_remove("AGENT_NO_XRAY").args(["run", "--xray-address", "127.0.0.1:0", "--", "sleep", "300"]);
    let (mut agent, err) = spawn(cmd);
    let xray = bound_address(&err, "receiving X-Ray segments");
    let before = status_kb(agent.id(), "VmHWM:");
    // Declared: refused before a byte of the body is read.
    let mut s = TcpStream::connect(&xray).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\nContent-Length: 268435456\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    // Not declared (chunked): cut at the limit while reading.
    let mut s = TcpStream::connect(&xray).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /SamplingTargets HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let chunk = [b"100000\r\n".as_slice(), &vec![b'{'; 1 << 20], b"\r\n"].concat();
    for _ in 0..256 {
        if s.write_all(&chunk).is_err() {
            break; // the agent answered and closed
        }
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 413"), "{}", String::from_utf8_lossy(&answer[..answer.len().min(200)]));
    let after = status_kb(agent.id(), "VmHWM:");
    assert!(after < before + 8 * 1024, "peak RSS {before} kB -> {after} kB");
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
}

#[test]
fn snake_case_otlp_json_is_relayed() {
    let sink = Sink::start(&[]);
    let (mut agent, err, otlp) = agent_with_otlp(&sink.endpoint(), &["--otlp-flush-interval", "100ms"]);
    let body = br#"{"resource_spans":[{"resource":{"attributes":[{"key":"service.name","value":{"string_value":"snake"}}]},
        "scope_spans":[{"spans":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174","name":"GET /snake",
        "kind":2,"start_time_unix_nano":"1544712660000000000","end_time_unix_nano":"1544712661000000000"}]}]}]}"#;
    assert_eq!(post(&otlp, "/v1/traces", "application/json", body).0, 200);
    sink.wait_for_ids(&["5b8efff798038103d269b633813fc60c".to_string()], T, "the snake_case span at the upstream");
    assert!(sink.spans().iter().any(|s| s.0 == "GET /snake" && s.2 == "snake"));
    signal(agent.id(), libc::SIGTERM);
    wait_child(&mut agent, T, "agent");
    assert_balanced(&whole_log(&err));
}

#[test]
fn out_of_file_descriptors_pauses_accepts_instead_of_spinning() {
    let closed = Closed::new();
    let mut cmd = agent_cmd();
    otlp_env(&mut cmd, &closed.endpoint());
    cmd.args(["run", "--otlp-address", "127.0.0.1:0", "--", "sleep", "300"]);
    // Few descriptors: a handful of connections exhaust them (set for the agent alone, by
    // prlimit, before it starts).
    let mut pre = std::process::Command::new("prlimit");
    pre.arg("--nofile=40:40").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => pre.env(k, v),
            None => pre.env_remove(k),
        };
    }
    let (mut agent, err) = spawn(pre);
    let log = || err.lock().unwrap().clone();
    let otlp = bound_address(&err, "relaying OTLP");
    // The relay thread starts when the app has run 100 ms; a first request makes sure it runs.
    assert_eq!(post(&otlp, "/v1/traces", "application/x-protobuf", &otlp_body(1, 1)).0, 200);
    let held: Vec<TcpStream> = (0..60).filter_map(|_| TcpStream::connect(&otlp).ok()).collect();
    wait_until(T, "the out-of-descriptors warning", || log().contains("out of file descriptors"));
    let before = cpu_ticks(agent.id());
    std::thread::sleep(Duration::from_secs(1)); // measuring CPU over a second: the scenario, not a wait
    let used = cpu_ticks(agent.id()) - before;
    assert!(used < 30, "the accept loop spun: {used} ticks of CPU in 1 s");
    drop(held);
    wait_until(T, "accepts to resume", || post(&otlp, "/v1/traces", "application/x-protobuf", &otlp_body(1, 1)).0 == 200);
    signal(agent.id(), libc::SIGTERM);
    wait_child(&mut agent, T, "agent");
}
