//! Egress proxies and cross-account roles, on real parts: a recording forward proxy
//! (tests/aws/forward_proxy.py: plain http in absolute form, https through CONNECT, Basic
//! proxy credentials), moto for SSM, STS (AssumeRole) and X-Ray, the real OpenTelemetry SDK as
//! the app, and a TLS OTLP backend the agent trusts through SSL_CERT_FILE.

mod util;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use util::*;

const T: Duration = Duration::from_secs(60);

/// A harness server, killed when the test ends (however it ends).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The recording forward proxy (with `auth`: requiring those Basic credentials), logging to
/// `log`; its port.
fn forward_proxy(log: &Path, auth: Option<&str>) -> (Killed, u16) {
    let mut args = vec!["0".to_string(), log.display().to_string()];
    args.extend(auth.map(str::to_string));
    let (child, _, port) = python_server("forward_proxy.py", &args);
    (Killed(child), port)
}

/// The forward proxy's log: one JSON object per request it handled.
fn proxy_log(path: &Path) -> Vec<serde_json::Value> {
    if !path.exists() {
        return Vec::new();
    }
    lines(path).iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The agent with `otlp_send.py COUNT` as its app (then sleeping), OTLP on port 0.
fn agent_with_app(cmd: &mut Command, count: usize, out: &Path) -> (Child, std::sync::Arc<std::sync::Mutex<String>>) {
    cmd.args(["--otlp-address", "127.0.0.1:0", "--otlp-flush-interval", "100ms", "--"])
        .arg(venv().join("bin/python"))
        .arg(repo().join("tests/aws/otlp_send.py"))
        .arg(count.to_string())
        .arg(out)
        .args(["then-exec", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    (agent, err)
}

fn stop(mut agent: Child, err: &std::sync::Arc<std::sync::Mutex<String>>) -> String {
    signal(agent.id(), libc::SIGTERM);
    // The app (sleep) dies of the SIGTERM the agent forwards: 128 + 15.
    assert_eq!(wait_child(&mut agent, T, "agent after SIGTERM").code(), Some(143));
    wait_until(Duration::from_secs(10), "the agent's last log line", || err.lock().unwrap().contains(" exiting code="));
    let log = err.lock().unwrap().clone();
    log
}

#[test]
fn secrets_and_segments_go_through_the_proxy_and_another_accounts_role_signs_put_trace_segments() {
    let moto = Moto::start();
    moto.put("/egress/DB_PASSWORD", "pw-8d2f1e");
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("proxy.jsonl");
    let (_proxy, proxy_port) = forward_proxy(&log_path, Some("proxyuser:s3cret-pw"));
    let out = dir.path().join("app");
    std::fs::create_dir(&out).unwrap();
    let mut cmd = agent_cmd();
    aws_env(&mut cmd, &moto.endpoint());
    for v in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] {
        cmd.env_remove(v);
    }
    // moto is plain http: HTTP_PROXY is the one that applies.
    cmd.env("HTTP_PROXY", format!("http://proxyuser:s3cret-pw@127.0.0.1:{proxy_port}")).args([
        "run",
        "--secret",
        "DB_PASSWORD=/egress/DB_PASSWORD",
        "--otlp-xray-segments",
        "--role-arn",
        "arn:aws:iam::111122223333:role/xray-writer",
    ]);
    let (agent, err) = agent_with_app(&mut cmd, 5, &out);
    let ids = out.join("ids");
    wait_until(T, "the app to send its spans", || ids.exists());
    let ids: Vec<String> = lines(&ids).iter().map(|h| format!("1-{}-{}", &h[..8], &h[8..])).collect();
    let mut assumed = String::new();
    wait_until(T, "sts:AssumeRole through the proxy", || {
        assumed = proxy_log(&log_path).iter().find_map(|r| r["assumed"].as_str().map(str::to_string)).unwrap_or_default();
        !assumed.is_empty()
    });
    // The spans are in the role's account (moto keeps accounts apart; the assumed key reads it).
    wait_until(T, "the 5 traces in the other account's X-Ray", || {
        let mut c = Command::new(venv().join("bin/python"));
        c.arg(repo().join("tests/aws/xray_dump.py")).arg(moto.endpoint()).arg(&assumed);
        let found: serde_json::Value = serde_json::from_str(&stdout(&run(c, T))).unwrap_or_default();
        let found: Vec<&str> = found.as_array().map(|a| a.iter().filter_map(|t| t["id"].as_str()).collect()).unwrap_or_default();
        ids.iter().all(|id| found.contains(&id.as_str()))
    });
    let log = stop(agent, &err);

    let requests = proxy_log(&log_path);
    assert!(requests.iter().all(|r| r["proxy_auth"] == true && r["status"] == 200), "every request carried the proxy's credentials: {requests:?}");
    let ssm: Vec<_> = requests.iter().filter(|r| r["amz_target"].as_str().is_some_and(|t| t.starts_with("AmazonSSM."))).collect();
    assert!(!ssm.is_empty() && ssm.iter().all(|r| r["key"] == "testing"), "secrets keep the task role: {requests:?}");
    assert!(
        !requests.iter().any(|r| r["target"].as_str().is_some_and(|t| t.ends_with("/v1/traces"))),
        "the app's OTLP for the agent stays local (the agent adds loopback to the app's NO_PROXY): {requests:?}"
    );
    let puts: Vec<_> = requests.iter().filter(|r| r["target"].as_str().is_some_and(|t| t.ends_with("/TraceSegments"))).collect();
    assert!(!puts.is_empty(), "PutTraceSegments went through the proxy: {requests:?}");
    assert!(puts.iter().all(|r| r["key"] == assumed.as_str()), "the assumed role's key ({assumed}) signs PutTraceSegments: {puts:?}");
    assert_ne!(assumed, "testing");
    assert!(!log.contains("s3cret-pw"), "the proxy's password is never logged:\n{log}");
    assert!(log.contains(&format!("http://***@127.0.0.1:{proxy_port}")), "the proxy is named, its credentials hidden:\n{log}");
    assert!(log.contains("trace calls use the role arn:aws:iam::111122223333:role/xray-writer"), "{log}");
}

#[test]
fn https_upstreams_go_through_a_connect_tunnel_with_tls_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path());
    let sink = Sink::start(&["--tls", cert.to_str().unwrap(), key.to_str().unwrap()]);
    let log_path = dir.path().join("proxy.jsonl");
    let (_proxy, proxy_port) = forward_proxy(&log_path, None);
    let out = dir.path().join("app");
    std::fs::create_dir(&out).unwrap();
    let mut cmd = agent_cmd();
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("https://localhost:{}", sink.port))
        .env("SSL_CERT_FILE", &cert)
        .env("https_proxy", format!("http://127.0.0.1:{proxy_port}"))
        .arg("run");
    let (agent, err) = agent_with_app(&mut cmd, 5, &out);
    let ids = out.join("ids");
    wait_until(T, "the app to send its spans", || ids.exists());
    let ids = lines(&ids);
    sink.wait_for_ids(&ids, T, "the spans at the https backend");
    let log = stop(agent, &err);
    let tunnels: Vec<_> = proxy_log(&log_path).into_iter().filter(|r| r["method"] == "CONNECT").collect();
    assert!(
        !tunnels.is_empty() && tunnels.iter().all(|r| r["target"] == format!("localhost:{}", sink.port).as_str() && r["status"] == 200),
        "the agent asked the proxy for a tunnel to the backend: {tunnels:?}"
    );
    assert!(log.contains("outbound calls go through a proxy"), "{log}");
}

#[test]
fn a_proxy_setting_that_cannot_work_is_a_configuration_error_that_hides_the_password() {
    let mut cmd = agent_cmd();
    cmd.env("HTTPS_PROXY", "https://user:pw-4410@proxy.internal:443").args(["run", "--", "true"]);
    let out = run(cmd, T);
    assert_eq!(code(&out, "agent"), 78);
    let err = stderr(&out);
    assert!(err.contains("HTTPS_PROXY: https://***@proxy.internal:443: only http:// proxies are supported"), "{err}");
    assert!(!err.contains("pw-4410"), "{err}");
    let mut cmd = agent_cmd();
    cmd.args(["run", "--role-arn", "xray-writer", "--", "true"]);
    let out = run(cmd, T);
    assert_eq!(code(&out, "agent"), 78);
    assert!(stderr(&out).contains("--role-arn (or AGENT_ROLE_ARN): \"xray-writer\" is not a role ARN"), "{}", stderr(&out));
}
