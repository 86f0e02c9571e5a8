//! Nothing takes PID 1 down: a panic injected into each of the agent's side jobs (through
//! `AGENT_TEST_PANIC`, agent/fault.rs, only in builds with the `fault-injection` feature, which
//! scripts/test turns on) stops that job only. After each: the panic is one ERROR line; the
//! app keeps running; the supervisor still reaps (the app makes orphans all the time) and still
//! forwards SIGTERM (the app exits 7 on it, and so does the agent); what the job did is taken
//! over or counted (health probes on each question, `agent health` probes directly, a dead
//! sink's spans counted as dropped).
#![cfg_attr(not(feature = "fault-injection"), allow(dead_code))]

mod util;
use std::process::{Child, Stdio};
use std::time::Duration;
use util::*;

/// The app: makes an orphan every 50 ms (the agent must reap them) and exits 7 on SIGTERM.
const APP: &str = "trap 'exit 7' TERM; while :; do (sleep 0.02 &); sleep 0.05; done";

/// A minimal OTLP/JSON trace request with one span.
const SPAN: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"panics-test"}}]},
"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"s","kind":2,
"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}"#;

struct Agent {
    child: Child,
    pid: u32,
    err: std::sync::Arc<std::sync::Mutex<String>>,
}

fn agent(point: &str, args: &[&str], env: &[(&str, &str)]) -> Agent {
    let mut cmd = agent_cmd();
    cmd.env("AGENT_TEST_PANIC", point).envs(env.iter().copied()).arg("run").args(args).args(["--", "sh", "-c", APP]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let err = collect(child.stderr.take().unwrap());
    Agent { pid: child.id(), child, err }
}

impl Agent {
    fn log(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits for the one ERROR line of the injected panic.
    fn panicked(&self, point: &str) {
        let marker = format!("injected panic at {point}");
        wait_until(Duration::from_secs(20), &format!("the panic at {point} to be logged"), || self.log().contains(&marker));
    }

    fn health(&self, args: &[&str]) -> (i32, String) {
        let mut c = agent_cmd();
        c.arg("health").args(args);
        let out = run(c, Duration::from_secs(10));
        (code(&out, "agent health"), stdout(&out).trim().to_string())
    }

    /// The supervisor still reaps (no orphan, all made after the panic, stays a zombie), still
    /// forwards SIGTERM (the app's
    /// exit code 7 is the agent's); the panic was logged once. Returns the whole log.
    fn stop(mut self, point: &str) -> String {
        wait_until(Duration::from_secs(10), "the agent to have no zombie children", || {
            children_of(self.pid as i32).iter().all(|c| !read(std::path::Path::new(&format!("/proc/{c}/stat"))).contains(") Z "))
        });
        assert!(alive(self.pid as i32), "the agent is still running after the panic at {point}");
        signal(self.pid, libc::SIGTERM);
        let status = wait_child(&mut self.child, Duration::from_secs(20), "the agent after SIGTERM");
        let log = self.log();
        assert_eq!(status.code(), Some(7), "SIGTERM forwarded; the app's code is the agent's:\n{log}");
        let marker = format!("injected panic at {point}");
        assert_eq!(log.lines().filter(|l| l.contains(&marker) && l.contains("ERROR")).count(), 1, "logged once:\n{log}");
        assert!(log.contains("the app and the rest of the agent keep running"), "{log}");
        assert!(!log.contains("RUST_BACKTRACE") && !log.contains("thread '"), "no default panic output:\n{log}");
        log
    }
}

#[cfg(not(feature = "fault-injection"))]
#[test]
fn panics_need_the_fault_injection_feature() {
    assert!(std::env::var_os("CI").is_none(), "CI runs the tests with --features fault-injection (scripts/test)");
    eprintln!("SKIP: built without --features fault-injection; the panic tests did not run");
}

#[cfg(feature = "fault-injection")]
mod injected {
    use super::*;

    #[test]
    fn health_prober() {
        let app = TestApp::start(200);
        let socket = socket_name("panic-prober");
        let a = agent("health-prober", &["--health-url", &app.url(), "--health-socket", &socket], &[]);
        a.panicked("health-prober");
        // The server probes on each question now: the verdict stays live.
        let (c, line) = a.health(&["--socket", &socket]);
        assert_eq!(c, 0, "{line}");
        assert!(line.starts_with("healthy: GET ") && line.contains("the agent's health-prober stopped after a panic"), "{line}");
        app.set(503);
        let mut last = String::new();
        wait_until(Duration::from_secs(20), "agent health to see the app fail", || {
            let (c, line) = a.health(&["--socket", &socket]);
            last = line;
            c == 1 && last.starts_with("unhealthy: GET ")
        });
        a.stop("health-prober");
    }

    #[test]
    fn health_server() {
        let app = TestApp::start(200);
        let socket = socket_name("panic-server");
        let a = agent("health-server", &["--health-url", &app.url(), "--health-socket", &socket], &[]);
        wait_until(Duration::from_secs(10), "the health socket", || a.log().contains("serving health"));
        let (c, line) = a.health(&["--socket", &socket]);
        assert_eq!(c, 1, "the question that met the panic gets no answer: {line}");
        a.panicked("health-server");
        // The socket closed with the thread: `agent health` probes the app itself.
        let (c, line) = a.health(&["--socket", &socket, "--url", &app.url()]);
        assert_eq!(c, 0, "{line}");
        assert!(line.contains("(direct probe; no agent on"), "{line}");
        a.stop("health-server");
    }

    #[test]
    fn secrets_refresh() {
        let moto = Moto::start();
        moto.put("/panic/TOKEN", "token-p1");
        let endpoint = moto.endpoint();
        let env = [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        let a = agent("secrets-refresh", &["--secret", "TOKEN=/panic/TOKEN", "--refresh-interval", "200ms"], &env);
        a.panicked("secrets-refresh");
        // Its control pipe closed: the supervisor's loop must not wake on it forever.
        let before = cpu_ticks(a.pid);
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_ticks(a.pid) - before;
        assert!(used < 30, "the agent used {used} ticks of CPU in 1 s after the refresher stopped: a busy loop");
        assert!(a.log().contains("the secrets refresher has stopped"), "the supervisor noticed:\n{}", a.log());
        a.stop("secrets-refresh");
    }

    #[test]
    fn xray_receive() {
        let closed = Closed::new();
        let mut env = vec![("AGENT_NO_XRAY", "false")];
        let endpoint = closed.endpoint();
        env.push(("AWS_ENDPOINT_URL", &endpoint));
        let a = agent("xray-receive", &["--xray-address", "127.0.0.1:0"], &env);
        let address = bound_address(&a.err, "receiving X-Ray segments");
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let doc = r#"{"format":"json","version":1}
{"name":"s","id":"70de5b6f19ff9a0a","trace_id":"1-581cf771-a006649127e371903a2de979","start_time":1.0,"end_time":2.0}"#;
        sock.send_to(doc.as_bytes(), &address).unwrap();
        a.panicked("xray-receive");
        let log = a.stop("xray-receive");
        assert!(log.contains("X-Ray segments, final counts (received = sent + rejected + dropped)"), "the books still close:\n{log}");
    }

    #[test]
    fn otlp_receiver() {
        let sink = Sink::start(&[]);
        let a = agent(
            "otlp-receiver",
            &["--otlp-address", "127.0.0.1:0", "--otlp-flush-interval", "100ms"],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())],
        );
        let address = bound_address(&a.err, "relaying OTLP");
        let (status, head) = http_post(&address, "/v1/traces", "application/json", SPAN.as_bytes());
        assert_eq!(status, 0, "the request that met the panic gets no answer (its connection closes): {head}");
        a.panicked("otlp-receiver");
        // One request's panic ends that connection only: the next is relayed.
        let (status, head) = http_post(&address, "/v1/traces", "application/json", SPAN.as_bytes());
        assert_eq!(status, 200, "{head}");
        wait_until(Duration::from_secs(10), "the span at the backend", || sink.spans().len() == 1);
        let log = a.stop("otlp-receiver");
        assert!(log.contains("received=1 sent=1 rejected=0 dropped=0"), "{log}");
        assert!(log.contains("component=\"OTLP listener\""), "attributed to the listener:\n{log}");
    }

    #[test]
    fn sink() {
        let sink = Sink::start(&[]);
        let socket = socket_name("panic-sink");
        let a = agent(
            "sink",
            &["--otlp-address", "127.0.0.1:0", "--otlp-flush-interval", "100ms", "--health-socket", &socket, "--health-exports-failing", "1h"],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())],
        );
        let address = bound_address(&a.err, "relaying OTLP");
        let (status, head) = http_post(&address, "/v1/traces", "application/json", SPAN.as_bytes());
        assert_eq!(status, 200, "{head}");
        a.panicked("sink");
        // With --health-exports-failing, a side job that stopped makes the task unhealthy.
        let (c, line) = a.health(&["--socket", &socket]);
        assert_eq!(c, 1, "{line}");
        assert!(line.starts_with("unhealthy: the agent's sink ") && line.contains("stopped after a panic at "), "{line}");
        let (status, head) = http_post(&address, "/v1/traces", "application/json", SPAN.as_bytes());
        assert_eq!(status, 200, "the buffer still has room: {head}");
        let log = a.stop("sink");
        assert!(sink.spans().is_empty(), "nothing was sent");
        assert!(log.contains("had stopped after a panic: the spans it held are counted as dropped"), "{log}");
        assert!(log.contains("received=2 sent=0 rejected=0 dropped=2"), "received = sent + rejected + dropped:\n{log}");
    }

    #[test]
    fn statsd() {
        let sink = Sink::start(&[]);
        let socket = socket_name("panic-statsd");
        let a = agent(
            "statsd",
            &[
                "--otlp-address",
                "127.0.0.1:0",
                "--statsd-address",
                "127.0.0.1:0",
                "--otlp-flush-interval",
                "100ms",
                "--health-socket",
                &socket,
                "--health-exports-failing",
                "1h",
            ],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())],
        );
        let address = bound_address(&a.err, "relaying OTLP");
        let statsd = statsd_address(&a.err);
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.send_to(b"hits:1|c", &statsd).unwrap();
        a.panicked("statsd");
        let (c, line) = a.health(&["--socket", &socket]);
        assert_eq!(c, 1, "{line}");
        assert!(line.starts_with("unhealthy: the agent's StatsD receiver stopped after a panic at "), "{line}");
        // The rest of the relay goes on: a span is still relayed.
        let (status, head) = http_post(&address, "/v1/traces", "application/json", SPAN.as_bytes());
        assert_eq!(status, 200, "{head}");
        wait_until(Duration::from_secs(10), "the span at the backend", || sink.spans().len() == 1);
        let log = a.stop("statsd");
        assert!(log.contains("received=1 sent=1 rejected=0 dropped=0"), "{log}");
    }

    #[test]
    fn sampling() {
        let closed = Closed::new();
        let endpoint = closed.endpoint();
        let env = [("AGENT_NO_XRAY", "false"), ("AWS_ENDPOINT_URL", endpoint.as_str())];
        let a = agent("sampling", &["--xray-address", "127.0.0.1:0"], &env);
        let address = bound_address(&a.err, "receiving X-Ray segments");
        let (status, head) = http_post(&address, "/GetSamplingRules", "application/json", b"{}");
        assert_eq!(status, 0, "the request that met the panic gets no answer (its connection closes): {head}");
        a.panicked("sampling");
        // One request's panic ends that connection only: the proxy answers the next.
        let (status, head) = http_post(&address, "/GetSamplingRules", "application/json", b"not json");
        assert_eq!(status, 400, "{head}");
        a.stop("sampling");
    }

    #[test]
    fn relay() {
        let sink = Sink::start(&[]);
        let a = agent("relay", &["--otlp-address", "127.0.0.1:0"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint())]);
        let address = bound_address(&a.err, "relaying OTLP");
        a.panicked("relay");
        let (status, _) = http_post(&address, "/v1/traces", "application/json", SPAN.as_bytes());
        assert_eq!(status, 0, "the relay's sockets closed with it: nothing accepted");
        let log = a.stop("relay");
        assert!(log.contains("the relay had stopped after a panic"), "{log}");
    }
}
