//! The OTLP relay on real parts: the example Flask app instrumented with the real OpenTelemetry
//! SDK (opentelemetry-instrumentation-flask, the OTLP/HTTP protobuf exporter) under gunicorn,
//! wrapped by the agent; a local OTLP backend (tests/aws/otlp_sink.py, decoding with the real
//! opentelemetry-proto) plays Honeycomb and X-Ray's OTLP endpoint; moto holds the Honeycomb key.

mod util;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;
use util::*;

const T: Duration = Duration::from_secs(60);

/// The agent relaying to OTEL_EXPORTER_OTLP_ENDPOINT=`endpoint` (if any), its child made by
/// `otlp_send.py COUNT` (then sleeping), OTLP on a port the agent binds (port 0). Returns the
/// agent, its stderr, the child's output directory, and the OTLP address it bound (when it relays).
fn agent_with_sender(
    endpoint: Option<&str>,
    count: usize,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Child, std::sync::Arc<std::sync::Mutex<String>>, tempfile::TempDir, String) {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = agent_cmd();
    for v in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        cmd.env_remove(v);
    }
    for signal in ["TRACES", "METRICS", "LOGS"] {
        for what in ["ENDPOINT", "HEADERS", "PROTOCOL"] {
            cmd.env_remove(format!("OTEL_EXPORTER_OTLP_{signal}_{what}"));
        }
    }
    if let Some(e) = endpoint {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", e);
    }
    cmd.envs(env.iter().copied())
        .args(["run", "--otlp-address", "127.0.0.1:0", "--otlp-flush-interval", "100ms"])
        .args(extra)
        .arg("--")
        .arg(venv().join("bin/python"))
        .arg(repo().join("tests/aws/otlp_send.py"))
        .arg(count.to_string())
        .arg(out.path())
        .args(["then-exec", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    let otlp = if endpoint.is_some() { bound_address(&err, "relaying OTLP") } else { String::new() };
    (agent, err, out, otlp)
}

fn sent_ids(out: &Path) -> Vec<String> {
    let ids = out.join("ids");
    wait_until(T, "the app to send its spans", || ids.exists());
    lines(&ids)
}

/// The agent's whole log, once the agent has exited and its last line ("exiting") has been read.
fn whole_log(err: &std::sync::Arc<std::sync::Mutex<String>>) -> String {
    wait_until(Duration::from_secs(10), "the agent's last log line", || err.lock().unwrap().contains(" exiting code="));
    err.lock().unwrap().clone()
}

/// A number from the agent's "OTLP spans, final counts" line for an upstream.
fn final_count(log: &str, key: &str) -> u64 {
    final_count_of(log, "OTLP spans", key)
}

/// A number from the agent's "WHAT, final counts" line for an upstream ("OTLP data points"...).
fn final_count_of(log: &str, what: &str, key: &str) -> u64 {
    let marker = format!("{what}, final counts");
    let line = log.lines().find(|l| l.contains(&marker) && l.contains("upstream=")).unwrap_or_else(|| panic!("no {marker}:\n{log}"));
    line.split(&format!(" {key}="))
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{key} in {line}"))
}

#[test]
fn flask_spans_reach_a_honeycomb_style_backend_with_the_key_from_parameter_store() {
    let moto = Moto::start();
    let key = "hc-team-key-8d2f1e";
    moto.put("/cruddur/backend-flask/OTEL_EXPORTER_OTLP_HEADERS", &format!("x-honeycomb-team={key}"));
    let sink = Sink::start(&[]);
    let app = AppListener::new();
    let port = app.port;
    let mut cmd = agent_cmd();
    aws_env(&mut cmd, &moto.endpoint());
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint())
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .env("OTEL_SERVICE_NAME", "backend-flask")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .args(["run", "--secret", "OTEL_EXPORTER_OTLP_HEADERS=/cruddur/backend-flask/OTEL_EXPORTER_OTLP_HEADERS"])
        .args(["--otlp-address", "127.0.0.1:0", "--otlp-flush-interval", "100ms", "--"]);
    example_app(&mut cmd, &app);
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    wait_app(port);
    // The app points at the agent, and the Honeycomb key is not in its environment.
    let (_, body) = http_get(port, "/api/config-check", Duration::from_secs(5)).unwrap();
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["OTEL_EXPORTER_OTLP_HEADERS"], false, "the upstream headers never reach the app: {body}");
    assert_eq!(seen["OTEL_EXPORTER_OTLP_ENDPOINT"], true, "{body}");
    for _ in 0..10 {
        assert_eq!(http_get(port, "/api/activities/home", Duration::from_secs(5)).unwrap().0, 200);
    }
    wait_until(T, "10 request spans at the backend", || sink.spans().iter().filter(|s| s.0 == "GET /api/activities/home").count() >= 10);
    let spans: Vec<_> = sink.spans().into_iter().filter(|s| s.0 == "GET /api/activities/home").collect();
    assert!(spans.iter().all(|s| s.2 == "backend-flask"), "service name kept: {spans:?}");
    let traces: std::collections::HashSet<_> = spans.iter().map(|s| &s.1).collect();
    assert_eq!(traces.len(), 10, "one trace per request");
    for r in sink.requests() {
        assert_eq!(r["headers"]["x-honeycomb-team"], key, "every upstream request carries the key");
        assert_eq!(r["headers"]["content-type"], "application/x-protobuf");
        assert_eq!(r["headers"]["content-encoding"], "gzip");
    }
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent after SIGTERM").code(), Some(0));
    let log = whole_log(&err);
    assert!(log.contains("relaying OTLP"), "{log}");
    assert!(final_count(&log, "sent") >= 10 && final_count(&log, "dropped") == 0, "{log}");
    assert!(!log.contains(key), "the key is never logged:\n{log}");
}

/// The app (otlp_send.py, with `app_env` choosing its exporters) sends N traces, data points
/// and log records; each reaches the backend exactly once, with its signal's headers; the app
/// never sees the key. `grpc_file`: where the test writes the agent's gRPC address for an app
/// that hard-codes its endpoint.
fn all_signals_arrive(app_env: &[(&str, &str)], grpc_file: Option<&Path>) {
    let sink = Sink::start(&[]);
    let key = "hc-key-all-signals-51c2";
    let (generic, metrics) = (format!("x-honeycomb-team={key}"), format!("x-honeycomb-team={key},x-honeycomb-dataset=otlp-metrics"));
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_HEADERS", generic.as_str()),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", metrics.as_str()),
        ("OTLP_SEND_SIGNALS", "traces,metrics,logs"),
    ];
    env.extend_from_slice(app_env);
    const N: usize = 40;
    let (mut agent, err, out, otlp) = agent_with_sender(Some(&sink.endpoint()), N, &[], &env);
    if let Some(f) = grpc_file {
        let grpc = wait_for_field(&err, "relaying OTLP", "grpc");
        std::fs::write(f, &grpc).unwrap();
    }
    let ids = sent_ids(out.path());
    sink.wait_for_ids(&ids, T, "every span");
    wait_until(T, "every data point and log record", || sink.accepted("points").len() > N && sink.accepted("logs").len() >= N);

    // Every data point once, under the app's service name, on /v1/metrics with the dataset header.
    let points: Vec<_> = sink.accepted("points").into_iter().filter(|(p, _, _)| p["metric"] == "otlp_send.work").collect();
    let mut ns: Vec<u64> = points.iter().map(|(p, _, _)| p["attributes"]["n"].as_str().unwrap().parse().unwrap()).collect();
    ns.sort();
    assert_eq!(ns, (0..N as u64).collect::<Vec<_>>(), "each data point exactly once");
    for (p, path, headers) in &points {
        assert_eq!((p["metric"].as_str(), p["service"].as_str(), p["value"].as_i64()), (Some("otlp_send.work"), Some("otlp-send"), Some(1)), "{p}");
        assert_eq!(path, "/v1/metrics");
        assert_eq!((headers["x-honeycomb-team"].as_str(), headers["x-honeycomb-dataset"].as_str()), (Some(key), Some("otlp-metrics")), "{headers}");
    }
    // Every log record once, with the trace it was written in, on /v1/logs without the dataset.
    let logs = sink.accepted("logs");
    assert_eq!(logs.len(), N, "each log record exactly once");
    for (r, path, headers) in &logs {
        let i: usize = r["body"].as_str().unwrap().strip_prefix("log-").unwrap().parse().unwrap();
        assert_eq!(r["trace_id"].as_str(), Some(ids[i].as_str()), "{r}");
        assert_eq!((r["service"].as_str(), r["severity"].as_str()), (Some("otlp-send"), Some("INFO")), "{r}");
        assert_eq!(path, "/v1/logs");
        assert_eq!(headers["x-honeycomb-team"].as_str(), Some(key));
        assert!(headers.get("x-honeycomb-dataset").is_none(), "the metrics dataset stays on metrics: {headers}");
    }
    // The app sent everything to the agent and never saw the key.
    let seen: serde_json::Value = serde_json::from_str(&read(&out.path().join("env.json"))).unwrap();
    assert_eq!(seen["OTEL_EXPORTER_OTLP_ENDPOINT"], format!("http://{otlp}"), "{seen}");
    assert!(seen.get("OTEL_EXPORTER_OTLP_HEADERS").is_none() && seen.get("OTEL_EXPORTER_OTLP_METRICS_HEADERS").is_none(), "{seen}");

    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
    let log = whole_log(&err);
    assert_eq!(final_count(&log, "sent"), N as u64, "{log}");
    assert_eq!(final_count_of(&log, "OTLP data points", "sent"), N as u64 + 1, "the counter's points and the histogram's one: {log}");
    assert_eq!(final_count_of(&log, "OTLP log records", "sent"), N as u64, "{log}");
    assert!(!log.contains(key), "the key is never logged:\n{log}");
}

#[test]
fn traces_metrics_and_logs_reach_the_backend_each_with_its_own_headers_and_no_key_in_the_app() {
    all_signals_arrive(&[], None);
}

#[test]
fn the_sdks_grpc_exporters_work_with_the_endpoint_the_agent_gives() {
    // OTLP/gRPC to OTEL_EXPORTER_OTLP_ENDPOINT, the agent's HTTP port: HTTP/2 is told apart there.
    all_signals_arrive(&[("OTLP_SEND_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")], None);
}

#[test]
fn the_sdks_grpc_exporters_work_hard_coded_to_the_grpc_port() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grpc-endpoint");
    let at = format!("@{}", file.display());
    // gzip too: grpc-encoding and each message's compressed flag.
    all_signals_arrive(&[("OTLP_SEND_GRPC_ENDPOINT", at.as_str()), ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")], Some(&file));
}

/// `NAME=value` from the first log line containing `what`, once it is there.
fn wait_for_field(err: &std::sync::Arc<std::sync::Mutex<String>>, what: &str, name: &str) -> String {
    let mut found = String::new();
    wait_until(T, what, || {
        let text = err.lock().unwrap().clone();
        let line = text.lines().find(|l| l.contains(what)).unwrap_or("");
        found = line.split(&format!(" {name}=")).nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or("").to_string();
        !found.is_empty()
    });
    found
}

#[test]
fn on_ecs_every_signal_carries_the_tasks_identity_and_the_apps_own_attributes_win() {
    // The harness's stand-in for the task metadata endpoint (moto has none).
    let (mut stub, _, port) = python_server("ecs_metadata.py", &["0".to_string()]);
    let sink = Sink::start(&[]);
    let uri = format!("http://127.0.0.1:{port}/v4/cruddur-task");
    let env = [
        ("ECS_CONTAINER_METADATA_URI_V4", uri.as_str()),
        ("OTLP_SEND_SIGNALS", "traces,metrics,logs"),
        ("OTEL_RESOURCE_ATTRIBUTES", "cloud.availability_zone=set-by-the-app"),
    ];
    let (mut agent, err, out, _) = agent_with_sender(Some(&sink.endpoint()), 5, &[], &env);
    let ids = sent_ids(out.path());
    sink.wait_for_ids(&ids, T, "every span");
    wait_until(T, "the data points and log records", || sink.accepted("points").len() >= 5 && sink.accepted("logs").len() >= 5);
    let resources: Vec<serde_json::Value> =
        ["spans", "points", "logs"].iter().flat_map(|k| sink.accepted(k)).map(|(item, _, _)| item["resource"].clone()).collect();
    assert_eq!(resources.len(), 16, "5 spans, 5 counter points and a histogram point, 5 log records");
    let arn = "arn:aws:ecs:us-west-2:111122223333";
    for r in &resources {
        for (k, v) in [
            ("cloud.provider", "aws"),
            ("cloud.platform", "aws_ecs"),
            ("cloud.region", "us-west-2"),
            ("cloud.account.id", "111122223333"),
            ("aws.ecs.task.arn", &format!("{arn}:task/cruddur/cafe0123456789abcdef")),
            ("aws.ecs.task.family", "backend-flask"),
            ("aws.ecs.task.revision", "7"),
            ("aws.ecs.cluster.arn", &format!("{arn}:cluster/cruddur")),
            ("aws.ecs.launchtype", "fargate"),
            ("aws.ecs.container.arn", &format!("{arn}:container/cruddur/cafe0123/5f3b")),
            ("container.id", "cafe0123456789abcdef-1111"),
            ("container.name", "backend-flask"),
            ("service.name", "otlp-send"),
        ] {
            assert_eq!(r[k].as_str(), Some(v), "{k} in {r}");
        }
        assert_eq!(r["aws.log.group.names"], serde_json::json!(["/cruddur/fargate-cluster"]), "{r}");
        assert_eq!(r["aws.log.stream.names"], serde_json::json!(["backend-flask/backend-flask/cafe0123"]), "{r}");
        assert_eq!(r["cloud.availability_zone"], "set-by-the-app", "what the app set wins: {r}");
    }
    signal(agent.id(), libc::SIGTERM);
    wait_child(&mut agent, T, "agent");
    let _ = stub.kill();
    let _ = stub.wait();
    assert!(whole_log(&err).contains("adding the ECS task's identity"));
}

/// The Flask app under the agent, whose probe checks /api/health-check every 200 ms; after ten
/// app requests and SIGTERM: the backend's span names, and the agent's log.
fn flask_with_health_probe(extra: &[&str]) -> (Vec<String>, String) {
    let sink = Sink::start(&[]);
    let app = AppListener::new();
    let port = app.port;
    let mut cmd = agent_cmd();
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint())
        .env("OTEL_SERVICE_NAME", "backend-flask")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .args(["run", "--otlp-address", "127.0.0.1:0", "--otlp-flush-interval", "100ms"])
        .args(["--health-url", &format!("http://127.0.0.1:{port}/api/health-check"), "--health-interval", "200ms"])
        .args(extra)
        .arg("--");
    example_app(&mut cmd, &app);
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    // Not wait_app: its own GET /api/health-check would be a health-check span from another client.
    wait_until(T, "the app to answer", || http_get(port, "/api/activities/home", Duration::from_secs(1)).is_some_and(|(s, _)| s == 200));
    for _ in 0..10 {
        assert_eq!(http_get(port, "/api/activities/home", Duration::from_secs(5)).unwrap().0, 200);
    }
    wait_until(T, "the app's spans at the backend", || sink.spans().iter().filter(|s| s.0 == "GET /api/activities/home").count() >= 10);
    // Several probes have run by now (every 200 ms since the app was ready).
    std::thread::sleep(Duration::from_millis(600));
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(0));
    let log = whole_log(&err);
    (sink.spans().into_iter().map(|s| s.0).collect(), log)
}

#[test]
fn the_agents_own_health_probe_spans_are_filtered_and_counted() {
    let (names, log) = flask_with_health_probe(&[]);
    assert!(!names.iter().any(|n| n.contains("health-check")), "no probe span relayed: {names:?}");
    let line = log.lines().find(|l| l.contains("OTLP spans received, final counts")).expect(&log);
    let filtered: u64 = line.split(" filtered=").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse().ok()).expect(line);
    assert!(filtered >= 2, "the probe's spans are counted as filtered: {line}");
    // With --keep-health-spans they go through like any other.
    let (names, _) = flask_with_health_probe(&["--keep-health-spans"]);
    assert!(names.iter().any(|n| n == "GET /api/health-check"), "{names:?}");
}

#[test]
fn metrics_emf_writes_the_apps_metrics_to_stdout_as_cloudwatch_lines() {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = agent_cmd();
    for v in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        cmd.env_remove(v);
    }
    // No OTLP upstream at all: the metrics go to stdout, which awslogs ships to CloudWatch.
    cmd.env("OTLP_SEND_SIGNALS", "metrics")
        .env("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
        .args(["run", "--metrics-emf", "--metrics-emf-namespace", "cruddur", "--otlp-address", "127.0.0.1:0", "--"])
        .arg(venv().join("bin/python"))
        .arg(repo().join("tests/aws/otlp_send.py"))
        .args(["20", out.path().to_str().unwrap()]);
    let done = run(cmd, T);
    assert_eq!(code(&done, "agent"), 0, "{}", stderr(&done));
    let docs: Vec<serde_json::Value> = stdout(&done).lines().filter(|l| l.contains("\"_aws\"")).map(|l| serde_json::from_str(l).unwrap()).collect();
    let work: Vec<&serde_json::Value> = docs.iter().filter(|d| d.get("otlp_send.work").is_some()).collect();
    assert_eq!(work.len(), 20, "one line per data point: {docs:?}");
    let mut ns: Vec<u64> = work.iter().map(|d| d["n"].as_str().unwrap().parse().unwrap()).collect();
    ns.sort();
    assert_eq!(ns, (0..20).collect::<Vec<_>>());
    for d in &work {
        assert_eq!(d["otlp_send.work"], 1.0, "{d}");
        assert_eq!(d["service.name"], "otlp-send");
        let meta = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(meta["Namespace"], "cruddur");
        assert_eq!(meta["Dimensions"], serde_json::json!([["service.name", "n"]]));
        assert_eq!(meta["Metrics"][0]["Name"], "otlp_send.work");
        assert!(d["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000, "milliseconds: {d}");
    }
    let h = docs.iter().find_map(|d| d.get("otlp_send.duration")).expect("the histogram");
    assert_eq!((h["Count"].as_u64(), h["Sum"].as_f64(), h["Min"].as_f64(), h["Max"].as_f64()), (Some(20), Some(190.0), Some(0.0), Some(19.0)), "{h}");
    let counts: u64 = h["Counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum();
    assert_eq!(counts, 20, "{h}");
    assert_eq!(h["Values"].as_array().unwrap().len(), h["Counts"].as_array().unwrap().len());
    let unit = docs.iter().find(|d| d.get("otlp_send.duration").is_some()).unwrap()["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"].clone();
    assert_eq!(unit, "Milliseconds");
    assert!(stderr(&done).contains("OTLP data points, final counts"), "{}", stderr(&done));
}

#[test]
fn zero_code_instrumentation_with_only_the_grpc_exporter_keeps_tracing() {
    // An image that installed only the gRPC exporter: opentelemetry-instrument's default
    // protocol is gRPC, and the agent must not force another one on it.
    let venv = repo().join(".venv-grpc");
    assert!(venv.join("bin/opentelemetry-instrument").exists(), "run scripts/setup-venv (scripts/test does it)");
    let sink = Sink::start(&[]);
    let mut cmd = agent_cmd();
    for v in ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] {
        cmd.env_remove(v);
    }
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint())
        .env("OTEL_SERVICE_NAME", "zero-code")
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none")
        .args(["run", "--otlp-address", "127.0.0.1:0", "--"])
        .arg(venv.join("bin/opentelemetry-instrument"))
        .arg(venv.join("bin/python"))
        .arg(repo().join("tests/aws/zero_code.py"));
    let out = run(cmd, T);
    assert_eq!(code(&out, "agent"), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("not found"), "{}", stderr(&out));
    let trace_id = stdout(&out).trim().to_string();
    assert_eq!(trace_id.len(), 32, "{}", stdout(&out));
    sink.wait_for_ids(&[trace_id], T, "the zero-code span at the backend");
    assert!(sink.spans().iter().any(|s| s.0 == "zero-code-span" && s.2 == "zero-code"));
}

#[test]
fn statsd_counts_reach_cloudwatch_as_emf_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statsd-address");
    let mut cmd = agent_cmd();
    cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("OTEL_SERVICE_NAME", "backend-flask")
        .args(["run", "--metrics-emf", "--otlp-address", "127.0.0.1:0", "--"])
        .arg(venv().join("bin/python"))
        .arg(repo().join("tests/aws/statsd_send.py"))
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    let out = collect(agent.stdout.take().unwrap());
    std::fs::write(&file, wait_for_field(&err, "relaying OTLP", "statsd")).unwrap();
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(0));
    let log = whole_log(&err);
    let lines = || out.lock().unwrap().matches("\"_aws\"").count();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lines() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = out.lock().unwrap().clone();
    assert_eq!(lines(), 3, "three EMF lines on stdout:\n{text}\nlog:\n{log}");
    let docs: Vec<serde_json::Value> = text.lines().filter(|l| l.contains("\"_aws\"")).map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |name: &str| docs.iter().find(|d| d.get(name).is_some()).unwrap_or_else(|| panic!("{name} in {text}"));
    assert_eq!(find("cruddur.requests")["cruddur.requests"], 20.0, "every increment, sent before the app exited");
    let latency = &find("cruddur.latency")["cruddur.latency"];
    assert_eq!(
        (latency["Count"].as_u64(), latency["Sum"].as_f64(), latency["Min"].as_f64(), latency["Max"].as_f64()),
        (Some(20), Some(190.0), Some(0.0), Some(19.0)),
        "{latency}"
    );
    assert_eq!(find("cruddur.queue")["cruddur.queue"], 7.0);
    assert_eq!(find("cruddur.queue")["service.name"], "backend-flask");
    assert!(log.contains("StatsD lines received, final counts lines=41 rejected=0"), "{log}");
}

#[test]
fn xray_otlp_mode_signs_every_request_with_sigv4() {
    let sink = Sink::start(&["--sigv4-secret", "testing"]);
    let env = [
        ("AWS_ENDPOINT_URL_XRAY", sink.endpoint()),
        ("AWS_REGION", "eu-west-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "AKIDOTLPTEST".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut agent, err, out, _) = agent_with_sender(None, 25, &["--otlp-xray"], &env);
    let ids = sent_ids(out.path());
    sink.wait_for_ids(&ids, T, "every span at the X-Ray OTLP endpoint");
    let requests = sink.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r["path"], "/v1/traces");
        assert_eq!(r["sigv4"], "valid", "{r}");
        assert_eq!(r["scope"], "eu-west-1/xray", "{r}");
    }
    assert!(sink.spans().iter().all(|s| s.2 == "otlp-send"));
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
    let log = whole_log(&err);
    assert_eq!(final_count(&log, "sent"), 25, "{log}");
    assert!(!log.contains("testing"), "no secret key in the log");
}

#[test]
fn a_backend_answering_503_for_a_while_loses_nothing() {
    let sink = Sink::start(&["--fail-for", "3", "--retry-after", "1"]);
    let (mut agent, err, out, _) = agent_with_sender(Some(&sink.endpoint()), 200, &[], &[]);
    let ids = sent_ids(out.path());
    sink.wait_for_ids(&ids, T, "every span after the backend recovers");
    assert!(sink.requests().iter().any(|r| r["answered"] == 503), "the backend did refuse at first");
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
    let log = whole_log(&err);
    assert!(log.contains("keeping the spans and retrying"), "{log}");
    assert_eq!((final_count(&log, "sent"), final_count(&log, "dropped")), (200, 0), "{log}");
    assert!(final_count(&log, "retried") > 0, "{log}");
}

/// One raw HTTP/1.1 request to the agent: (status, body).
fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let status = String::from_utf8_lossy(&buf[..split]).split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, buf[split + 4..].to_vec())
}

#[test]
fn malformed_and_oversized_bodies_are_refused_with_reasons_and_harm_nothing() {
    use std::io::Write;
    let sink = Sink::start(&[]);
    let (mut agent, err, out, otlp) = agent_with_sender(Some(&sink.endpoint()), 1, &[], &[]);
    let first = sent_ids(out.path());
    sink.wait_for_ids(&first, T, "the relay to work");
    let pb = [("Content-Type", "application/x-protobuf")];
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();

    let (status, body) = post(&otlp, "/v1/traces", &pb, b"\xff\xff\xff\xff");
    assert_eq!(status, 400);
    assert!(text(body).contains("not an OTLP ExportTraceServiceRequest in protobuf"));
    let (status, body) = post(&otlp, "/v1/traces", &[("Content-Type", "application/json")], b"{\"resourceSpans\": 7}");
    assert_eq!(status, 400);
    assert!(text(body).contains("in JSON"));
    let (status, body) = post(&otlp, "/v1/traces", &[("Content-Type", "text/plain")], b"hello");
    assert_eq!(status, 415);
    assert!(text(body).contains("application/x-protobuf or application/json"));
    let (status, _) = post(&otlp, "/v1/traces", &[("Content-Type", "application/x-protobuf"), ("Content-Length", "17825792")], b"");
    assert_eq!(status, 413, "declared too large: refused before reading");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 20 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    let (status, body) = post(&otlp, "/v1/traces", &[("Content-Type", "application/x-protobuf"), ("Content-Encoding", "gzip")], &bomb);
    assert_eq!(status, 413, "a gzip bomb stops at the limit: {}", text(body));
    let (status, _) = post(&otlp, "/v1/profiles", &pb, b"");
    assert_eq!(status, 404);

    // JSON works, and a span with an all-zero trace ID is dropped with a partial success.
    let good = "5b8efff798038103d269b633813fc60c";
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"json-client"}}}}]}},
        "scopeSpans":[{{"spans":[
          {{"traceId":"{good}","spanId":"eee19b7ec3c1b174","name":"good","startTimeUnixNano":"1","endTimeUnixNano":"2"}},
          {{"traceId":"00000000000000000000000000000000","spanId":"eee19b7ec3c1b175","name":"bad"}}]}}]}}]}}"#
    );
    let (status, body) = post(&otlp, "/v1/traces", &[("Content-Type", "application/json")], json.as_bytes());
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedSpans"].to_string().trim_matches('"'), "1", "{answer}");
    sink.wait_for_ids(&[good.to_string()], T, "the JSON span at the backend");
    assert!(!sink.spans().iter().any(|s| s.0 == "bad"));

    assert!(agent.try_wait().unwrap().is_none(), "the agent is still running");
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
    let log = whole_log(&err);
    assert!(log.contains("refused an OTLP request with 400"), "{log}");
    assert!(log.contains("the agent receives OTLP at POST /v1/traces, /v1/metrics and /v1/logs"), "the app is told what is served: {log}");
}

#[test]
fn without_an_upstream_the_app_keeps_its_own_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = agent_cmd();
    for v in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] {
        cmd.env_remove(v);
    }
    cmd.env("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=k").args(["run", "--", "sh", "-c"]).arg(format!("env > {}/env", dir.path().display()));
    let out = run(cmd, T);
    assert_eq!(code(&out, "agent"), 0, "{}", stderr(&out));
    let env = read(&dir.path().join("env"));
    assert!(env.contains("OTEL_EXPORTER_OTLP_HEADERS=x-honeycomb-team=k"), "nothing relayed, nothing changed");
    assert!(!env.contains("OTEL_EXPORTER_OTLP_ENDPOINT"));
    assert!(!stderr(&out).contains("relaying OTLP"));
}

#[test]
fn xray_sdk_segments_reach_an_otlp_backend_as_spans_with_xray_to_otlp() {
    let sink = Sink::start(&[]);
    let app = AppListener::new();
    let port = app.port;
    let closed = Closed::new();
    let mut cmd = agent_cmd();
    // X-Ray itself is unreachable: whatever arrives at the sink came through the conversion.
    aws_env(&mut cmd, &closed.endpoint());
    cmd.env_remove("AGENT_NO_XRAY")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint())
        .env("XRAY_ENABLED", "1")
        .env("XRAY_SAMPLING", "false")
        .args(["run", "--xray-to-otlp", "--xray-address", "127.0.0.1:0", "--xray-flush-interval", "100ms"])
        .args(["--otlp-address", "127.0.0.1:0", "--otlp-flush-interval", "100ms", "--"]);
    example_app(&mut cmd, &app);
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    wait_app(port);
    let mut roots = Vec::new();
    for _ in 0..5 {
        let (status, head, _) = http_get_full(port, "/api/activities/home", Duration::from_secs(5)).unwrap();
        assert_eq!(status, 200);
        let header = head.lines().find(|l| l.to_ascii_lowercase().starts_with("x-amzn-trace-id:")).expect(&head);
        // Root=1-5f84c7a1-1234567890abcdef01234567 → the OTLP trace ID 5f84c7a11234567890abcdef01234567
        let root = header.split(['=', ';']).nth(1).unwrap().trim();
        roots.push(root.splitn(3, '-').skip(1).collect::<String>());
    }
    wait_until(T, "the converted segments at the backend", || {
        let spans = sink.spans();
        roots.iter().all(|r| spans.iter().any(|s| &s.1 == r && s.0 == "backend-flask" && s.2 == "backend-flask"))
    });
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(0));
    let log = whole_log(&err);
    assert!(log.contains("X-Ray segments go to the OTLP upstreams"), "{log}");
    assert!(!log.contains("PutTraceSegments"), "X-Ray's API was never called: {log}");
}

#[test]
fn xray_to_otlp_without_an_upstream_is_a_configuration_error() {
    let mut cmd = agent_cmd();
    for v in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] {
        cmd.env_remove(v);
    }
    cmd.env_remove("AGENT_NO_XRAY").args(["run", "--xray-to-otlp", "--xray-address", "127.0.0.1:0", "--", "true"]);
    let out = run(cmd, T);
    assert_eq!(code(&out, "agent"), 78);
    assert!(stderr(&out).contains("--xray-to-otlp needs an OTLP upstream: set OTEL_EXPORTER_OTLP_ENDPOINT"), "{}", stderr(&out));
}

#[test]
fn health_turns_unhealthy_when_an_otlp_upstream_keeps_failing() {
    let closed = Closed::new();
    let down = closed.endpoint();
    let socket = socket_name("otlp-exports");
    let (mut agent, _err, out, _) = agent_with_sender(Some(&down), 20, &["--health-exports-failing", "1s", "--health-socket", &socket], &[]);
    sent_ids(out.path());
    let health = || {
        let mut c = agent_cmd();
        c.args(["health", "--socket", &socket]);
        let out = run(c, T);
        (out.status.code(), stdout(&out))
    };
    let mut last = (None, String::new());
    wait_until(Duration::from_secs(30), "agent health to report the failing upstream", || {
        last = health();
        last.1.starts_with(&format!("unhealthy: {down}/v1/traces exports failing since"))
    });
    assert_eq!(last.0, Some(1), "{}", last.1);
    assert!(last.1.contains("Connection refused") || last.1.contains("connect"), "says why: {}", last.1);
    signal(agent.id(), libc::SIGTERM);
    wait_child(&mut agent, T, "agent");
}
