//! Shared helpers for the black-box tests: find the binaries, run the agent with a deadline,
//! wait on conditions (never on bare sleeps), and say clearly when a test cannot run here.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub fn agent() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_agent"))
}

/// A fixture program from `examples/` (cargo builds examples for `cargo test`).
pub fn fixture(name: &str) -> PathBuf {
    let p = agent().parent().unwrap().join("examples").join(name);
    assert!(p.exists(), "fixture {} not built; run `cargo test` (it builds examples)", p.display());
    p
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A command for the agent with a clean `AGENT_*` environment, so the developer's shell can't leak in.
/// X-Ray reception is off (`AGENT_NO_XRAY`) so parallel tests do not contend for 127.0.0.1:2000;
/// the trace tests turn it back on.
pub fn agent_cmd() -> Command {
    let mut cmd = Command::new(agent());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AGENT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AGENT_NO_XRAY", "true");
    cmd
}

/// Polls `cond` until it is true or `within` passes; panics with `what` on time-out.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for a child with a deadline; kills it and panics (printing the command) on time-out.
pub fn wait_child(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a command to completion with a deadline, capturing stdout and stderr.
pub fn run(mut cmd: Command, within: Duration) -> Output {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{desc}: still running after {within:?}");
        }
    }
}

/// The exit code, with the command and its stderr in the panic message if there is none.
pub fn code(out: &Output, desc: &str) -> i32 {
    out.status.code().unwrap_or_else(|| panic!("{desc}: killed by a signal; stderr:\n{}", stderr(out)))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn lines(path: &Path) -> Vec<String> {
    read(path).lines().map(str::to_string).collect()
}

/// Whether `unshare --pid --fork --mount-proc` works here (it needs root). Tests that need the
/// agent to be PID 1 print why they skip when it does not.
pub fn can_unshare() -> bool {
    let ok = Command::new("unshare").args(["--pid", "--fork", "--mount-proc", "true"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: `unshare --pid --fork --mount-proc` is not available (needs root); PID 1 behaviour not tested here");
    }
    ok
}

/// The agent as PID 1 of a new PID namespace: `unshare --pid --fork --mount-proc agent ARGS`.
pub fn agent_as_pid1(args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc"]).arg(agent()).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AGENT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AGENT_NO_XRAY", "true");
    cmd
}

pub fn signal(pid: u32, sig: i32) {
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill({pid}, {sig})");
}

pub fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry but state Z: count it as gone only once reaped.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The parent pid of `pid`, from /proc.
pub fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The host pid of the agent started by `agent_as_pid1` (the only child of `unshare`).
pub fn pid1_host_pid(unshare_pid: u32) -> i32 {
    let path = format!("/proc/{unshare_pid}/task/{unshare_pid}/children");
    let mut found = 0;
    wait_until(Duration::from_secs(10), "unshare to fork the agent", || {
        found = read(Path::new(&path)).split_whitespace().next().and_then(|s| s.parse().ok()).unwrap_or(0);
        found != 0
    });
    found
}

/// Waits until the file at `path` has a line equal to `line`.
pub fn wait_for_line(path: &Path, line: &str) {
    wait_until(Duration::from_secs(10), &format!("{line:?} in {}", path.display()), || lines(path).iter().any(|l| l == line));
}

/// The direct children of `pid`, from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    read(Path::new(&format!("/proc/{pid}/task/{pid}/children"))).split_whitespace().filter_map(|s| s.parse().ok()).collect()
}

/// The project's Python venv (made by `scripts/setup-venv`), or `TEST_VENV`.
pub fn venv() -> PathBuf {
    let v = std::env::var_os("TEST_VENV").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv"));
    assert!(v.join("bin/python").exists(), "no Python venv at {}: run scripts/setup-venv (scripts/test does it for you)", v.display());
    v
}

/// A plain HTTP/1.0 GET on 127.0.0.1; returns (status, body) or None if it could not connect.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    http_get_full(port, path, timeout).map(|(s, _, b)| (s, b))
}

/// Like `http_get`, with the response head too: (status, head, body).
pub fn http_get_full(port: u16, path: &str, timeout: Duration) -> Option<(u16, String, String)> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = buf.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.to_string())).unwrap_or_default();
    Some((status, head, body))
}

/// Collects a child's pipe into a shared string as it is written.
pub fn collect<R: std::io::Read + Send + 'static>(mut r: R) -> std::sync::Arc<std::sync::Mutex<String>> {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

/// A small HTTP app for health tests: answers every GET with the current status, or never
/// answers while the status is 0 ("hang"). Runs on threads in the test process.
pub struct TestApp {
    pub port: u16,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl TestApp {
    pub fn start(status: u16) -> TestApp {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let st = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(status));
        let shared = st.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let st = shared.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf);
                    let code = st.load(Ordering::SeqCst);
                    if code == 0 {
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                    let _ = write!(c, "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                });
            }
        });
        TestApp { port, status: st }
    }

    pub fn set(&self, status: u16) {
        self.status.store(status, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }
}

/// A health socket name unique to this test process and `tag`.
pub fn socket_name(tag: &str) -> String {
    format!("agent-test-{}-{tag}", std::process::id())
}

/// A real `moto_server` from the venv on a free 127.0.0.1 port, killed on drop.
pub struct Moto {
    pub port: u16,
    child: Child,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let m = Moto { port, child };
        wait_until(Duration::from_secs(30), "moto_server to listen", || http_get(port, "/moto-api/", Duration::from_millis(500)).is_some());
        m
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Seeds the standard data set (tests/aws/seed.py); returns NAME -> expected value.
    pub fn seed(&self) -> std::collections::HashMap<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let expected = dir.path().join("expected.json");
        let out = run(
            {
                let mut c = Command::new(venv().join("bin/python"));
                c.arg(repo().join("tests/aws/seed.py")).arg(self.endpoint()).arg(&expected);
                c
            },
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "seed.py failed:\n{}", stderr(&out));
        serde_json::from_str(&read(&expected)).unwrap()
    }
}

impl Moto {
    /// Creates or overwrites one SSM parameter (SecureString), with boto3.
    pub fn put(&self, name: &str, value: &str) {
        let mut c = Command::new(venv().join("bin/python"));
        c.args([
            "-c",
            "import boto3, sys; boto3.client('ssm', endpoint_url=sys.argv[1], region_name='us-east-1', \
                       aws_access_key_id='t', aws_secret_access_key='t').put_parameter(Name=sys.argv[2], Value=sys.argv[3], \
                       Type='SecureString', Overwrite=True)",
        ])
        .args([self.endpoint().as_str(), name, value]);
        let out = run(c, Duration::from_secs(60));
        assert!(out.status.success(), "put_parameter {name}: {}", stderr(&out));
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Points a command at a local AWS stand-in, with fake credentials and no IMDS look-ups.
pub fn aws_env(cmd: &mut Command, endpoint: &str) {
    for v in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"] {
        cmd.env_remove(v);
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// The fault-injecting proxy (tests/aws/faultproxy.py) in front of `upstream`.
pub struct FaultProxy {
    pub port: u16,
    child: Child,
    out: std::sync::Arc<std::sync::Mutex<String>>,
}

impl FaultProxy {
    pub fn start(upstream: &str, fault: &[&str]) -> FaultProxy {
        Self::start_on(free_port(), upstream, fault)
    }

    pub fn start_on(port: u16, upstream: &str, fault: &[&str]) -> FaultProxy {
        let mut args = vec![port.to_string(), upstream.to_string()];
        args.extend(fault.iter().map(|f| f.to_string()));
        let (child, out) = python_server("faultproxy.py", &args);
        FaultProxy { port, child, out }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the proxy; returns (requests, faults) it saw.
    pub fn stop(mut self) -> (u64, u64) {
        drop(self.child.stdin.take());
        let _ = wait_child(&mut self.child, Duration::from_secs(10), "fault proxy");
        let text = self.out.lock().unwrap().clone();
        let num = |k: &str| text.split(k).nth(1).and_then(|s| s.split_whitespace().next()).and_then(|s| s.parse().ok()).unwrap_or(0);
        (num("requests="), num("faults="))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a file written by `env -0`.
pub fn read_env0(path: &Path) -> std::collections::HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    String::from_utf8(bytes).unwrap().split('\0').filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect()
}

/// Fails if any secret value (longer than 5 characters, so not "5432") appears in `text`.
pub fn assert_no_secret_values<'a>(text: &str, values: impl IntoIterator<Item = &'a String>, what: &str) {
    for v in values {
        if v.len() > 5 {
            assert!(!text.contains(v.as_str()), "a secret value leaked into {what}");
            for line in v.lines().filter(|l| l.len() > 5) {
                assert!(!text.contains(line), "part of a secret value leaked into {what}");
            }
        }
    }
}

/// Appends the example app under gunicorn (examples/backend-flask) as the agent's command, on
/// 127.0.0.1:`port`, and wires the agent's stderr for `collect`.
pub fn example_app(cmd: &mut Command, port: u16) {
    let app = repo().join("examples/backend-flask");
    cmd.arg(venv().join("bin/gunicorn"))
        .arg("-c")
        .arg(app.join("gunicorn.conf.py"))
        .arg("--chdir")
        .arg(&app)
        .arg("app:app")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
}

/// Waits until the example app answers its health check.
pub fn wait_app(port: u16) {
    wait_until(Duration::from_secs(30), "the app to answer", || {
        http_get(port, "/api/health-check", Duration::from_secs(1)).is_some_and(|(s, _)| s == 200)
    });
}

/// A "kB" field of /proc/PID/status (VmRSS:, VmHWM:), or 0.
pub fn status_kb(pid: u32, key: &str) -> u64 {
    read(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Starts one of the harness's Python servers (tests/aws/SCRIPT ARGS...) and waits for it to
/// print "ready". Its stdin is a pipe (closing it stops the fault proxy); its stdout is collected.
pub fn python_server(script: &str, args: &[String]) -> (Child, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut child = Command::new(venv().join("bin/python"))
        .arg(repo().join("tests/aws").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = collect(child.stdout.take().unwrap());
    wait_until(Duration::from_secs(20), &format!("{script} to listen"), || out.lock().unwrap().contains("ready"));
    (child, out)
}

/// The local OTLP backend (tests/aws/otlp_sink.py; also answers PutTraceSegments), stopped on drop.
pub struct Sink {
    pub port: u16,
    log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Sink {
    pub fn start(extra: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let (port, log) = (free_port(), dir.path().join("requests.jsonl"));
        let mut args = vec![port.to_string(), log.display().to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let (child, _) = python_server("otlp_sink.py", &args);
        Sink { port, log, child, _dir: dir }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request it received, as logged.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        if !self.log.exists() {
            return Vec::new();
        }
        lines(&self.log).iter().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The spans it accepted (answered 200): (name, trace id, service.name).
    pub fn spans(&self) -> Vec<(String, String, String)> {
        self.requests()
            .iter()
            .filter(|r| r["answered"] == 200)
            .flat_map(|r| r["spans"].as_array().cloned().unwrap_or_default())
            .map(|s| (s["name"].as_str().unwrap().into(), s["trace_id"].as_str().unwrap().into(), s["service"].as_str().unwrap().into()))
            .collect()
    }

    pub fn wait_for_ids(&self, ids: &[String], within: Duration, what: &str) {
        wait_until(within, what, || {
            let got: std::collections::HashSet<String> = self.spans().into_iter().map(|s| s.1).collect();
            ids.iter().all(|id| got.contains(id))
        });
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
