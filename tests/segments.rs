//! OpenTelemetry spans into X-Ray as segments (`--otlp-xray-segments`), on real parts: the
//! example Flask app with the real OpenTelemetry SDK (Flask instrumentation, OTLP/HTTP exporter)
//! and the real aws-xray-sdk at once, under gunicorn, wrapped by the agent; moto's X-Ray as the
//! backend, read back with boto3 (GetTraceSummaries, BatchGetTraces: tests/aws/xray_dump.py).

mod util;
use std::process::Command;
use std::time::Duration;
use util::*;

const T: Duration = Duration::from_secs(60);

/// Every trace moto's X-Ray holds: (trace id, its documents).
fn xray_traces(endpoint: &str) -> Vec<(String, Vec<serde_json::Value>)> {
    let mut c = Command::new(venv().join("bin/python"));
    c.arg(repo().join("tests/aws/xray_dump.py")).arg(endpoint);
    let out = run(c, T);
    assert!(out.status.success(), "xray_dump.py: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    v.as_array().unwrap().iter().map(|t| (t["id"].as_str().unwrap().to_string(), t["documents"].as_array().unwrap().clone())).collect()
}

/// The X-Ray trace ID in a response's X-Amzn-Trace-Id header (the X-Ray SDK's).
fn xray_root(head: &str) -> String {
    let header = head.lines().find(|l| l.to_ascii_lowercase().starts_with("x-amzn-trace-id:")).expect(head);
    header.split(['=', ';']).nth(1).unwrap().trim().to_string()
}

fn is_otel(doc: &serde_json::Value) -> bool {
    doc["aws"]["xray"]["sdk"].as_str().is_some_and(|s| s.starts_with("opentelemetry"))
}

/// An OpenTelemetry trace of one of the test's requests (not of the wait for the app to answer).
fn otel_activity(docs: &[serde_json::Value]) -> bool {
    docs.iter().any(|d| is_otel(d) && d["http"]["request"]["url"].as_str().is_some_and(|u| u.contains("/api/activities/")))
}

#[test]
fn otel_flask_spans_come_back_from_xray_as_segments_beside_the_xray_sdks() {
    let moto = Moto::start();
    let app = AppListener::new();
    let port = app.port;
    let mut cmd = agent_cmd();
    aws_env(&mut cmd, &moto.endpoint());
    for v in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS"] {
        cmd.env_remove(v);
    }
    cmd.env_remove("AGENT_NO_XRAY")
        .env("OTEL_SERVICE_NAME", "backend-flask")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("XRAY_ENABLED", "1")
        .env("XRAY_SAMPLING", "false")
        .args(["run", "--otlp-xray-segments", "--xray-indexed-attributes", "http.route"])
        .args(["--xray-address", "127.0.0.1:0", "--xray-flush-interval", "100ms"])
        .args(["--otlp-address", "127.0.0.1:0", "--otlp-flush-interval", "100ms", "--"]);
    example_app(&mut cmd, &app);
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    wait_app(port);
    let mut sdk_roots = Vec::new();
    for _ in 0..5 {
        let (status, head, _) = http_get_full(port, "/api/activities/home", Duration::from_secs(5)).unwrap();
        assert_eq!(status, 200);
        sdk_roots.push(xray_root(&head));
    }
    let (status, head, _) = http_get_full(port, "/api/activities/fail", Duration::from_secs(5)).unwrap();
    assert_eq!(status, 500);
    sdk_roots.push(xray_root(&head));

    // Six OpenTelemetry traces (five with a child span) and the X-Ray SDK's six, all in X-Ray.
    let mut traces = Vec::new();
    wait_until(T, "12 traces in X-Ray", || {
        traces = xray_traces(&moto.endpoint());
        let otel = traces.iter().filter(|(_, d)| otel_activity(d)).count();
        let sdk = sdk_roots.iter().filter(|r| traces.iter().any(|(id, _)| id == *r)).count();
        let complete = traces.iter().filter(|(_, d)| otel_activity(d)).all(|(_, d)| d.len() >= 2 || d[0]["fault"] == true);
        otel == 6 && sdk == 6 && complete
    });
    let otel: Vec<_> = traces.iter().filter(|(_, d)| otel_activity(d)).collect();
    let mut homes = 0;
    for (id, docs) in &otel {
        let segment = docs.iter().find(|d| d.get("type").is_none()).unwrap_or_else(|| panic!("a segment in {docs:?}"));
        assert_eq!(segment["trace_id"], id.as_str());
        assert_eq!(segment["name"], "backend-flask", "named after service.name: {segment}");
        assert_eq!(segment["http"]["request"]["method"], "GET");
        let url = segment["http"]["request"]["url"].as_str().unwrap();
        if url.ends_with("/api/activities/home") {
            homes += 1;
            assert_eq!(segment["http"]["response"]["status"], 200, "{segment}");
            assert_eq!(segment["fault"], false);
            assert_eq!(segment["annotations"]["http.route"], "/api/activities/home", "{segment}");
            let child = docs.iter().find(|d| d["type"] == "subsegment").unwrap_or_else(|| panic!("a subsegment in {docs:?}"));
            assert_eq!(child["name"], "home-activities-mock-data");
            assert_eq!(child["parent_id"], segment["id"], "the child links to the request's segment");
            assert_eq!(child["trace_id"], segment["trace_id"]);
        } else {
            assert!(url.ends_with("/api/activities/fail"), "{url}");
            assert_eq!(segment["http"]["response"]["status"], 500, "{segment}");
            assert_eq!(segment["fault"], true, "{segment}");
            let e = &segment["cause"]["exceptions"][0];
            assert_eq!(e["type"], "RuntimeError", "{segment}");
            assert_eq!(e["message"], "the activities store is down");
            assert!(e["stack"].as_array().is_some_and(|s| s.iter().any(|f| f["label"] == "activities_fail")), "the traceback's frames: {e}");
        }
    }
    assert_eq!(homes, 5);
    // The X-Ray SDK's segments are there as they were sent.
    for r in &sdk_roots {
        let (_, docs) = traces.iter().find(|(id, _)| id == r).unwrap();
        assert!(docs.iter().all(|d| !is_otel(d) && d["name"] == "backend-flask"), "{docs:?}");
    }

    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent after SIGTERM").code(), Some(0));
    wait_until(Duration::from_secs(10), "the agent's last log line", || err.lock().unwrap().contains(" exiting code="));
    let log = err.lock().unwrap().clone();
    assert!(log.contains("OTLP spans go to X-Ray as segment documents"), "{log}");
    let line = log.lines().find(|l| l.contains("X-Ray segments, final counts (received = sent + rejected + dropped)")).expect(&log);
    assert!(line.contains(" dropped=0") && line.contains(" rejected=0") && !line.contains(" sent=0 "), "{line}");
}

#[test]
fn otlp_xray_segments_with_xray_to_otlp_is_a_configuration_error() {
    let mut cmd = agent_cmd();
    cmd.args(["run", "--otlp-xray-segments", "--xray-to-otlp", "--", "true"]);
    let out = run(cmd, T);
    assert_eq!(code(&out, "agent"), 78);
    assert!(stderr(&out).contains("cannot go with --xray-to-otlp, which sends traces the opposite way"), "{}", stderr(&out));
}
