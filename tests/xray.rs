//! X-Ray in place of the daemon sidecar: the example app instrumented with the real
//! aws-xray-sdk (XRayMiddleware) under gunicorn sends its segments to the agent, which delivers
//! them to a real moto_server; malformed datagrams are counted and harm nothing.

mod util;
use std::process::Stdio;
use std::time::Duration;
use util::*;

const T: Duration = Duration::from_secs(60);

/// The traces moto holds for these ids, with their segment counts (boto3 BatchGetTraces).
fn traces_in_moto(moto: &Moto, ids: &[String]) -> Vec<(String, usize)> {
    let mut c = std::process::Command::new(venv().join("bin/python"));
    c.arg(repo().join("tests/aws/xray_traces.py")).arg(moto.endpoint()).args(ids);
    let out = run(c, T);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn every_requests_segment_reaches_xray() {
    let moto = Moto::start();
    let app = AppListener::new();
    let port = app.port;
    let mut cmd = agent_cmd();
    aws_env(&mut cmd, &moto.endpoint());
    cmd.env_remove("AGENT_NO_XRAY").env("XRAY_ENABLED", "1").env("XRAY_SAMPLING", "false").args([
        "run",
        "--xray-address",
        "127.0.0.1:0",
        "--xray-flush-interval",
        "200ms",
        "--",
    ]);
    example_app(&mut cmd, &app);
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    let xray = bound_address(&err, "receiving X-Ray segments");
    wait_app(port);
    let mut ids = Vec::new();
    for i in 0..20 {
        let path = if i % 2 == 0 { "/api/activities/home" } else { "/api/message_groups" };
        let (status, head, _) = http_get_full(port, path, Duration::from_secs(5)).expect("answer");
        assert_eq!(status, 200);
        let header = head.lines().find(|l| l.to_ascii_lowercase().starts_with("x-amzn-trace-id:")).expect(&head);
        let root = header.split(['=', ';']).nth(1).expect(header).trim().to_string();
        ids.push(root);
    }
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent after SIGTERM").code(), Some(0));
    let log = err.lock().unwrap().clone();
    assert!(log.contains(&format!("receiving X-Ray segments address={xray}")), "{log}");
    assert!(log.contains("X-Ray segments, final counts"), "{log}");
    // Every request's segment arrived (the health checks' traces are there too, uncounted here).
    let found = traces_in_moto(&moto, &ids);
    let mut missing: Vec<&String> = ids.iter().filter(|id| !found.iter().any(|(f, n)| f == *id && *n >= 1)).collect();
    missing.dedup();
    assert!(missing.is_empty(), "traces missing in X-Ray: {missing:?}\n{log}");
}

#[test]
fn malformed_datagrams_are_counted_and_harm_nothing() {
    let moto = Moto::start();
    let (mut agent, err, xray) = agent_with_xray(&moto.endpoint(), true, &[]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let good = r#"{"format":"json","version":1}
{"trace_id":"1-5f84c7a1-1234567890abcdef01234567","id":"0123456789abcdef","name":"ok","start_time":1700000000.0,"end_time":1700000001.0}"#;
    let bad: [&[u8]; 5] = [
        b"no newline at all",
        b"{\"format\":\"json\",\"version\":2}\n{}",
        b"not json\n{\"id\":\"x\"}",
        b"{\"format\":\"json\",\"version\":1}\n\xff\xfe\xfd",
        &[0u8; 60000],
    ];
    for d in bad {
        sock.send_to(d, &xray).unwrap();
    }
    sock.send_to(good.as_bytes(), &xray).unwrap();
    wait_until(Duration::from_secs(10), "the rejections to be logged", || err.lock().unwrap().matches("rejected an X-Ray datagram").count() >= 3);
    assert!(agent.try_wait().unwrap().is_none(), "the agent is still running");
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
    let log = err.lock().unwrap().clone();
    assert!(log.contains("received=6 sent=1 rejected=5 dropped=0"), "{log}");
}

#[test]
fn the_agents_own_health_probe_segments_are_filtered_and_counted() {
    let moto = Moto::start();
    let (mut agent, err, xray) = agent_with_xray(&moto.endpoint(), true, &[]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let segment = |id: &str, ua: &str| {
        format!(
            "{{\"format\": \"json\", \"version\": 1}}\n{{\"trace_id\": \"1-5f84c7a1-1234567890abcdef0123456{}\", \"id\": \"{id}\", \"name\": \"backend-flask\", \
             \"start_time\": 1700000000.0, \"end_time\": 1700000001.0, \"http\": {{\"request\": {{\"method\": \"GET\", \"user_agent\": \"{ua}\"}}}}}}",
            &id[15..]
        )
    };
    sock.send_to(segment("0123456789abcde1", "agent-health").as_bytes(), &xray).unwrap();
    sock.send_to(segment("0123456789abcde2", "Mozilla/5.0").as_bytes(), &xray).unwrap();
    wait_in_moto(&moto, &["1-5f84c7a1-1234567890abcdef01234562".to_string()], T, "the app's segment in X-Ray");
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
    let log = err.lock().unwrap().clone();
    assert!(log.contains("received=1 sent=1 rejected=0 dropped=0 retried=0 filtered=1"), "the probe's segment is left out and counted: {log}");
    assert!(traces_in_moto(&moto, &["1-5f84c7a1-1234567890abcdef01234561".to_string()]).is_empty(), "never sent");
}

fn send_segments(address: &str, count: usize, ids_file: &std::path::Path, pad: usize) -> Vec<String> {
    let mut c = std::process::Command::new(venv().join("bin/python"));
    c.arg(repo().join("tests/aws/send_segments.py")).arg(address).arg(count.to_string()).arg(ids_file).arg(pad.to_string());
    let out = run(c, T);
    assert!(out.status.success(), "{}", stderr(&out));
    lines(ids_file)
}

/// Polls moto until every id is there, or fails after `within`.
fn wait_in_moto(moto: &Moto, ids: &[String], within: Duration, what: &str) {
    let mut missing = ids.len();
    wait_until(within, what, || {
        let found = traces_in_moto(moto, ids);
        missing = ids.iter().filter(|id| !found.iter().any(|(f, _)| f == *id)).count();
        missing == 0
    });
}

#[test]
fn xray_down_for_30s_keeps_memory_bounded_counts_drops_and_delivery_resumes() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint(), &["none"]);
    let proxy_port = proxy.port;
    let (mut agent, err, xray) = agent_with_xray(&proxy.endpoint(), true, &["--xray-buffer", "4MiB", "--xray-flush-interval", "100ms"]);
    // A first delivery sets up the exporter (AWS config, TLS roots); measure from there on.
    let dir = tempfile::tempdir().unwrap();
    let first = send_segments(&xray, 10, &dir.path().join("first"), 0);
    wait_in_moto(&moto, &first, Duration::from_secs(30), "a first delivery");
    let baseline = status_kb(agent.id(), "VmHWM:");

    // X-Ray is away for 30 s while 30,000 segments of ~1 KB (about 30 MB) arrive, in three
    // bursts: far more than the 4 MiB budget.
    proxy.stop();
    let outage = std::time::Instant::now();
    let mut last_burst = Vec::new();
    for i in 0..3u64 {
        last_burst = send_segments(&xray, 10_000, &dir.path().join(format!("burst{i}")), 900);
        // The outage lasts 30 s whatever the bursts take: this is the scenario, not a wait for a result.
        let until = Duration::from_secs(10 * (i + 1));
        std::thread::sleep(until.saturating_sub(outage.elapsed()));
    }
    assert!(err.lock().unwrap().contains("X-Ray is not taking segments"));
    let peak = status_kb(agent.id(), "VmHWM:");
    eprintln!("peak RSS during the outage: {baseline} kB -> {peak} kB");
    assert!(peak.saturating_sub(baseline) < 10 * 1024, "memory stayed near the 4 MiB budget (30 MB arrived): {baseline} kB -> peak {peak} kB");

    // X-Ray comes back: what the budget kept (the newest) and what comes next are delivered.
    let proxy = FaultProxy::start_on(proxy_port, &moto.endpoint(), &["none"]);
    let after = send_segments(&xray, 10, &dir.path().join("after"), 0);
    wait_in_moto(&moto, &after, Duration::from_secs(60), "delivery to resume");
    wait_in_moto(&moto, &last_burst[last_burst.len() - 20..], Duration::from_secs(30), "the newest kept segments to be delivered");

    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
    let log = err.lock().unwrap().clone();
    let counts = log.lines().find(|l| l.contains("final counts")).expect(&log).to_string();
    let num = |k: &str| -> u64 {
        counts.split(&format!("{k}=")).nth(1).and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    assert_eq!(num("received"), 30_020, "{counts}");
    assert!(num("dropped") >= 25_000, "what did not fit in 4 MiB was dropped, oldest first: {counts}");
    assert_eq!(num("sent") + num("dropped") + num("rejected"), 30_020, "every segment is accounted for: {counts}");
    assert!(num("retried") > 0, "{counts}");
    drop(proxy);
}

#[test]
fn segments_sent_before_the_app_exits_are_delivered_after_sigterm() {
    let moto = Moto::start();
    let xray = "127.0.0.1:0";
    let dir = tempfile::tempdir().unwrap();
    let ids_file = dir.path().join("ids");
    let mut cmd = agent_cmd();
    aws_env(&mut cmd, &moto.endpoint());
    // The child sends 400 segments through AWS_XRAY_DAEMON_ADDRESS (set by the agent), then idles.
    cmd.env_remove("AGENT_NO_XRAY")
        .args(["run", "--xray-address", xray, "--"])
        .arg(venv().join("bin/python"))
        .arg(repo().join("tests/aws/send_segments.py"))
        .args(["-", "400"])
        .arg(&ids_file)
        .args(["200", "then-exec", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    wait_until(Duration::from_secs(30), "the child to send its segments", || ids_file.exists());
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
    let ids = lines(&ids_file);
    assert_eq!(ids.len(), 400);
    let log = err.lock().unwrap().clone();
    assert!(log.contains("received=400 sent=400"), "{log}");
    wait_in_moto(&moto, &ids, Duration::from_secs(20), "every segment in X-Ray");
}

/// The harness's stand-in for X-Ray's sampling APIs (moto has none), on a port it chose.
fn xray_stub(log: &std::path::Path) -> (std::process::Child, u16) {
    let (c, _, port) = python_server("xray_stub.py", &["0".to_string(), log.display().to_string()]);
    (c, port)
}

fn sampling_client(address: &str) -> std::process::Output {
    let mut c = std::process::Command::new(venv().join("bin/python"));
    c.arg(repo().join("tests/aws/sampling_client.py")).arg(address);
    run(c, T)
}

/// `agent run --xray-address 127.0.0.1:0 [flags] -- sleep 300` against `endpoint`, once it
/// receives; with the address it bound.
fn agent_with_xray(endpoint: &str, credentials: bool, flags: &[&str]) -> (std::process::Child, std::sync::Arc<std::sync::Mutex<String>>, String) {
    let mut cmd = agent_cmd();
    aws_env(&mut cmd, endpoint);
    if !credentials {
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
            .env("AWS_CONFIG_FILE", "/nonexistent/config");
    }
    cmd.env_remove("AGENT_NO_XRAY")
        .args(["run", "--xray-address", "127.0.0.1:0"])
        .args(flags)
        .args(["--", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    wait_until(Duration::from_secs(10), "the receiver", || err.lock().unwrap().contains("receiving X-Ray segments"));
    let xray = bound_address(&err, "receiving X-Ray segments");
    (agent, err, xray)
}

/// An agent relaying to the sampling stub; stopped (with the stub) on drop.
struct SamplingSetup {
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
    xray: String,
    stub: std::process::Child,
    agent: std::process::Child,
    err: std::sync::Arc<std::sync::Mutex<String>>,
}

impl SamplingSetup {
    fn start(credentials: bool) -> SamplingSetup {
        // A stub upstream stands in for X-Ray's sampling APIs, which moto lacks.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("upstream.jsonl");
        let (stub, stub_port) = xray_stub(&log);
        let (agent, err, xray) = agent_with_xray(&format!("http://127.0.0.1:{stub_port}"), credentials, &[]);
        SamplingSetup { _dir: dir, log, xray, stub, agent, err }
    }
}

impl Drop for SamplingSetup {
    fn drop(&mut self) {
        signal(self.agent.id(), libc::SIGTERM);
        wait_child(&mut self.agent, T, "agent");
        let _ = self.stub.kill();
        let _ = self.stub.wait();
    }
}

#[test]
fn the_sdks_sampling_client_gets_rules_through_the_agent_signed() {
    let setup = SamplingSetup::start(true);
    let (log, xray) = (&setup.log, &setup.xray);

    let out = sampling_client(xray);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"rules": ["stub-rule"], "targets": ["stub-rule"]}"#);
    let upstream: Vec<serde_json::Value> = lines(log).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    for path in ["/GetSamplingRules", "/SamplingTargets"] {
        let r = upstream.iter().find(|r| r["path"] == path).unwrap_or_else(|| panic!("{path} not forwarded: {upstream:?}"));
        let auth = r["authorization"].as_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=testing/") && auth.contains("/us-east-1/xray/aws4_request"), "{path} signed: {auth}");
    }

    // Anything else is 404, and answered by the agent, not forwarded.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(xray).unwrap();
    s.write_all(b"POST /TraceSegments HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(!lines(log).iter().any(|l| l.contains("/TraceSegments")), "not forwarded");
}

/// A POST to the agent's sampling proxy: (status line, body).
fn sampling_post(address: &str, path: &str, body: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

#[test]
fn sampling_requests_and_answers_pass_through_as_they_came() {
    let setup = SamplingSetup::start(true);
    // A field the agent does not know (adaptive sampling's boost statistics) reaches X-Ray...
    let boost = r#"{"SamplingStatisticsDocuments":[],"SamplingBoostStatisticsDocuments":[{"RuleName":"stub-rule","ServiceName":"s","Timestamp":1700000000,"AnomalyCount":1,"TotalCount":2,"SampledAnomalyCount":1}]}"#;
    let (status, _) = sampling_post(&setup.xray, "/SamplingTargets", boost);
    assert!(status.contains(" 200"), "{status}");
    let forwarded: Vec<serde_json::Value> = lines(&setup.log).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(forwarded.last().unwrap()["body"], boost, "the body is forwarded as it came");
    // ...and one in X-Ray's answer reaches the app.
    let (status, rules) = sampling_post(&setup.xray, "/GetSamplingRules", "{}");
    assert!(status.contains(" 200"), "{status}");
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    assert_eq!(rules["SamplingRuleRecords"][0]["SamplingRule"]["SamplingRateBoost"]["MaxRate"], 0.2, "{rules}");
    // X-Ray's refusal comes back with its status and words.
    let (status, answer) = sampling_post(&setup.xray, "/SamplingTargets", r#"{"SamplingStatisticsDocuments":[{"RuleName":"not-a-rule"}]}"#);
    assert!(status.contains(" 400"), "{status}");
    assert!(answer.contains("InvalidRequestException") && answer.contains("no such rule"), "{answer}");
    // A body that is not JSON is the app's mistake, said by the agent, not forwarded.
    let before = lines(&setup.log).len();
    let (status, answer) = sampling_post(&setup.xray, "/GetSamplingRules", "{not json");
    assert!(status.contains(" 400") && answer.contains("/GetSamplingRules is not JSON"), "{status} {answer}");
    assert_eq!(lines(&setup.log).len(), before, "not forwarded");
}

#[test]
fn without_credentials_sampling_gets_503_and_nothing_is_forwarded() {
    let setup = SamplingSetup::start(false);
    let out = sampling_client(&setup.xray);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("503"), "{}", stdout(&out));
    assert!(read(&setup.log).is_empty(), "nothing reached X-Ray unsigned: {}", read(&setup.log));
    assert!(setup.err.lock().unwrap().contains("sampling proxy: no AWS credentials"));
}

#[test]
fn health_can_turn_unhealthy_when_exports_keep_failing() {
    let closed = Closed::new();
    let socket = socket_name("exports");
    let mut cmd = agent_cmd();
    aws_env(&mut cmd, &closed.endpoint());
    cmd.env_remove("AGENT_NO_XRAY")
        .args([
            "run",
            "--xray-address",
            "127.0.0.1:0",
            "--xray-flush-interval",
            "100ms",
            "--health-exports-failing",
            "1s",
            "--health-socket",
            &socket,
        ])
        .args(["--", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut agent = cmd.spawn().unwrap();
    let xray = bound_address(&collect(agent.stderr.take().unwrap()), "receiving X-Ray segments");
    let health = || {
        let mut c = agent_cmd();
        c.args(["health", "--socket", &socket]);
        let out = run(c, T);
        (out.status.code(), stdout(&out))
    };
    wait_until(Duration::from_secs(10), "the health socket", || health().0 == Some(0));
    let dir = tempfile::tempdir().unwrap();
    send_segments(&xray, 5, &dir.path().join("ids"), 0);
    let mut last = (None, String::new());
    wait_until(Duration::from_secs(30), "agent health to report failing exports", || {
        last = health();
        last.1.starts_with("unhealthy: X-Ray exports failing since")
    });
    assert_eq!(last.0, Some(1), "{}", last.1);
    assert!(last.1.contains("(longer than 1s)"), "{}", last.1);
    signal(agent.id(), libc::SIGTERM);
    wait_child(&mut agent, T, "agent");
}

#[test]
fn a_short_lived_app_still_gets_its_segment_delivered() {
    // The child sends one segment and exits at once, before the pipeline's threads would start
    // (100 ms): the agent finds the datagram waiting at shutdown, starts, and delivers it.
    let moto = Moto::start();
    let xray = "127.0.0.1:0";
    let trace = "1-6560a0b0-0123456789abcdef01234567";
    let seg = format!(
        r#"{{"format":"json","version":1}}
{{"trace_id":"{trace}","id":"1111222233334444","name":"short","start_time":1700831408.0,"end_time":1700831408.5}}"#
    );
    // One write, one datagram (bash's printf would split it at the newline).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("segment");
    std::fs::write(&file, seg).unwrap();
    let mut cmd = agent_cmd();
    aws_env(&mut cmd, &moto.endpoint());
    cmd.env_remove("AGENT_NO_XRAY").args([
        "run",
        "--xray-address",
        xray,
        "--",
        "bash",
        "-c",
        // The address the agent bound, as the SDKs read it.
        &format!("cat {} > \"/dev/udp/${{AWS_XRAY_DAEMON_ADDRESS%:*}}/${{AWS_XRAY_DAEMON_ADDRESS#*:}}\"", file.display()),
    ]);
    let start = std::time::Instant::now();
    let out = run(cmd, T);
    assert_eq!(code(&out, "short-lived app"), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("received=1 sent=1"), "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(5));
    wait_in_moto(&moto, &[trace.to_string()], Duration::from_secs(10), "the short-lived app's trace");
}

#[test]
fn put_trace_segments_requests_carry_a_valid_sigv4_signature() {
    // The OTLP test sink also answers PutTraceSegments, and checks signatures with botocore.
    let sink = Sink::start(&["--sigv4-secret", "testing"]);
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _err, xray) = agent_with_xray(&sink.endpoint(), true, &["--xray-flush-interval", "100ms"]);
    let ids = send_segments(&xray, 3, &dir.path().join("ids"), 0);
    wait_until(T, "the segments at the stand-in", || {
        let docs: String = sink.requests().iter().map(|r| r["documents"].to_string()).collect();
        ids.iter().all(|id| docs.contains(id.as_str()))
    });
    for r in sink.requests() {
        assert_eq!(r["path"], "/TraceSegments");
        assert_eq!(r["sigv4"], "valid", "{r}");
        assert_eq!(r["scope"], "us-east-1/xray", "{r}");
    }
    signal(agent.id(), libc::SIGTERM);
    wait_child(&mut agent, T, "agent");
}
