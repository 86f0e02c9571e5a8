//! `agent health` against a running supervisor, and on its own: exit 0/1 and the line saying
//! why, within its timeout; the supervisor's probing honours retries and the start period.

mod util;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::*;

const T: Duration = Duration::from_secs(20);

/// `agent run` with health on `socket`, supervising `sleep` (or `cmd`).
fn supervisor(socket: &str, health_args: &[&str], cmd: &[&str]) -> Child {
    let mut c = agent_cmd();
    c.args(["run", "--health-socket", socket]).args(health_args).arg("--");
    if cmd.is_empty() {
        c.args(["sleep", "300"]);
    } else {
        c.args(cmd);
    }
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    wait_until(Duration::from_secs(10), "the supervisor to serve health", || {
        !health(&["--socket", socket]).1.starts_with("unhealthy: not configured")
    });
    child
}

fn health(args: &[&str]) -> (i32, String) {
    let mut c = agent_cmd();
    c.arg("health").args(args);
    let out = run(c, T);
    (code(&out, "agent health"), stdout(&out).trim().to_string())
}

/// Polls `agent health --socket S` until its line starts with `prefix`; returns the last answer.
fn wait_health(socket: &str, prefix: &str) -> (i32, String) {
    let mut last = (0, String::new());
    wait_until(Duration::from_secs(15), &format!("agent health to say {prefix:?}"), || {
        last = health(&["--socket", socket]);
        last.1.starts_with(prefix)
    });
    last
}

fn stop(mut child: Child) {
    signal(child.id(), libc::SIGTERM);
    wait_child(&mut child, T, "agent after SIGTERM");
}

#[test]
fn healthy_app_is_0_and_a_500_is_1_after_retries() {
    let app = TestApp::start(200);
    let s = socket_name("500");
    let url = app.url();
    let sup = supervisor(&s, &["--health-url", &url, "--health-interval", "100ms", "--health-retries", "2"], &[]);
    let (code, line) = wait_health(&s, "healthy:");
    assert_eq!(code, 0);
    assert!(line.starts_with(&format!("healthy: GET {url} -> 200 in ")), "{line}");

    app.set(500);
    let (code, line) = wait_health(&s, "unhealthy:");
    assert_eq!(code, 1);
    assert!(line.starts_with(&format!("unhealthy: GET {url} -> 500, ")) && line.contains(" failures since "), "{line}");

    app.set(200);
    assert_eq!(wait_health(&s, "healthy:").0, 0, "one pass makes it healthy again");
    stop(sup);
}

#[test]
fn hanging_app_is_unhealthy_and_health_answers_within_its_timeout() {
    let app = TestApp::start(0);
    let s = socket_name("hang");
    let url = app.url();
    let sup = supervisor(&s, &["--health-url", &url, "--health-timeout", "300ms", "--health-retries", "1", "--health-interval", "100ms"], &[]);
    let (code, line) = wait_health(&s, "unhealthy:");
    assert_eq!(code, 1);
    assert!(line.contains("-> no answer within 300ms"), "{line}");
    stop(sup);

    // Direct probe of a hanging app: `agent health` itself answers within --timeout.
    let start = Instant::now();
    let (code, line) = health(&["--socket", &socket_name("none"), "--url", &url, "--timeout", "500ms"]);
    let took = start.elapsed();
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("no answer within"), "{line}");
    assert!(took < Duration::from_millis(1500), "answered in {took:?}");
}

#[test]
fn dead_child_is_unhealthy() {
    let s = socket_name("dead");
    // The child fails at once; the long restart backoff keeps the agent up, the app down.
    let sup = supervisor(&s, &["--restart", "on-failure", "--restart-backoff", "60s"], &["sh", "-c", "exit 3"]);
    let (code, line) = wait_health(&s, "unhealthy:");
    assert_eq!((code, line.as_str()), (1, "unhealthy: the app is not running (exited with code 3)"));
    stop(sup);
}

#[test]
fn no_probe_means_healthy_while_the_app_runs() {
    let s = socket_name("noprobe");
    let sup = supervisor(&s, &[], &[]);
    let (code, line) = wait_health(&s, "healthy:");
    assert_eq!(code, 0);
    assert!(line.contains("the app is running") && line.contains("no probe configured"), "{line}");
    stop(sup);
}

#[test]
fn start_period_failures_are_starting_not_unhealthy() {
    let app = TestApp::start(503);
    let url = app.url();
    let s = socket_name("start");
    let sup = supervisor(&s, &["--health-url", &url, "--health-start-period", "1h", "--health-retries", "1", "--health-interval", "100ms"], &[]);
    let (code, line) = wait_health(&s, "starting:");
    assert_eq!(code, 1);
    assert!(line.contains("-> 503") && line.contains("start period of 1h"), "{line}");
    // Once it has passed, failures count even inside the start period.
    app.set(200);
    wait_health(&s, "healthy:");
    app.set(503);
    assert_eq!(wait_health(&s, "unhealthy:").0, 1);
    stop(sup);

    // Without a start period the same failures count at once.
    let app = TestApp::start(503);
    let url = app.url();
    let s = socket_name("nostart");
    let sup = supervisor(&s, &["--health-url", &url, "--health-retries", "1", "--health-interval", "100ms"], &[]);
    assert_eq!(wait_health(&s, "unhealthy:").0, 1);
    stop(sup);
}

#[test]
fn without_a_supervisor_url_probes_directly() {
    let app = TestApp::start(204);
    let none = socket_name("absent");
    let (code, line) = health(&["--socket", &none, "--url", &app.url()]);
    assert_eq!(code, 0, "{line}");
    assert!(line.starts_with(&format!("healthy: GET {} -> 204 in ", app.url())) && line.contains("direct probe"), "{line}");

    let mut c = agent_cmd();
    c.args(["health", "--socket", &none]).env("AGENT_HEALTH_URL", app.url()).env("AGENT_HEALTH_STATUS", "200");
    let out = run(c, T);
    assert_eq!(code_of(&out), 1, "204 is not in the status set 200");
    assert!(stdout(&out).contains("-> 204 (direct probe"), "{}", stdout(&out));

    let closed = Closed::new();
    let (code, line) = health(&["--socket", &none, "--tcp", &format!("127.0.0.1:{}", app.port)]);
    assert_eq!(code, 0, "{line}");
    let (code, line) = health(&["--socket", &none, "--tcp", &format!("127.0.0.1:{}", closed.port)]);
    assert_eq!((code, line.contains("refused")), (1, true), "{line}");
}

fn code_of(out: &std::process::Output) -> i32 {
    code(out, "agent health")
}

#[test]
fn nothing_configured_is_1_with_what_to_set() {
    let (code, line) = health(&["--socket", &socket_name("nothing")]);
    assert_eq!(code, 1);
    assert!(line.starts_with("unhealthy: not configured:") && line.contains("AGENT_HEALTH_URL"), "{line}");
}

#[test]
fn bad_settings_are_unhealthy_with_the_reason_not_another_code() {
    let (exit, line) = health(&["--socket", &socket_name("bad"), "--url", "https://127.0.0.1/x"]);
    assert_eq!(exit, 1);
    assert!(line.contains("--url (AGENT_HEALTH_URL)") || line.contains("--url (or AGENT_HEALTH_URL)"), "{line}");
    assert!(line.contains("https is not supported"), "{line}");

    // agent run rejects a bad probe at start, naming the setting (exit 78).
    let mut c = agent_cmd();
    c.args(["run", "--health-url", "127.0.0.1:4567/health", "--", "true"]);
    let out = run(c, T);
    assert_eq!(code(&out, "bad --health-url"), 78);
    assert!(stderr(&out).contains("--health-url (or AGENT_HEALTH_URL)"), "{}", stderr(&out));
}

#[test]
fn a_taken_socket_is_a_clear_start_error() {
    let s = socket_name("taken");
    let first = supervisor(&s, &[], &[]);
    wait_health(&s, "healthy:");
    let mut c = agent_cmd();
    c.args(["run", "--health-socket", &s, "--", "true"]);
    let out = run(c, T);
    assert_eq!(code(&out, "second agent on the same socket"), 78);
    let err = stderr(&out);
    assert!(err.contains(&format!("@{s}")) && err.contains("AGENT_HEALTH_SOCKET"), "{err}");
    stop(first);
}

#[test]
fn a_hundred_parallel_health_calls_are_all_answered() {
    let app = TestApp::start(200);
    let s = socket_name("parallel");
    let url = app.url();
    let sup = supervisor(&s, &["--health-url", &url, "--health-interval", "1s"], &[]);
    wait_health(&s, "healthy:");
    let children: Vec<Child> = (0..100)
        .map(|_| {
            let mut c = agent_cmd();
            c.args(["health", "--socket", &s]).stdout(Stdio::piped()).stderr(Stdio::null());
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        assert!(stdout(&out).starts_with("healthy: GET"), "{}", stdout(&out));
    }
    stop(sup);
}

#[test]
fn works_when_the_agent_runs_as_a_non_root_user() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: switching to a non-root user needs root");
        return;
    }
    // The binary must be reachable by `nobody`: copy it to a world-readable directory.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bin = dir.path().join("agent");
    std::fs::copy(agent(), &bin).unwrap();
    let app = TestApp::start(200);
    let s = socket_name("nonroot");
    let tcp = format!("127.0.0.1:{}", app.port);
    let mut c = Command::new("setpriv");
    c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&bin)
        .args(["run", "--health-socket", &s, "--health-tcp", &tcp, "--", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut sup = c.spawn().unwrap();
    // Asked by root (as `docker exec` would) and by the same non-root user.
    let (code, line) = wait_health(&s, "healthy:");
    assert_eq!(code, 0);
    assert!(line.contains(&format!("TCP {tcp} -> connected")), "{line}");
    let mut c = Command::new("setpriv");
    c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"]).arg(&bin).args(["health", "--socket", &s]);
    let out = run(c, T);
    assert_eq!(code_of(&out), 0, "{}", stdout(&out));
    // The supervisor runs as nobody.
    let status = read(std::path::Path::new(&format!("/proc/{}/status", sup.id())));
    assert!(status.lines().any(|l| l.starts_with("Uid:") && l.contains("65534")), "setpriv execs the agent as nobody:\n{status}");
    signal(sup.id(), libc::SIGTERM);
    wait_child(&mut sup, T, "agent after SIGTERM");
}

#[test]
fn health_says_when_the_app_waits_for_its_secrets() {
    // A secrets endpoint that never answers keeps the agent in its fetch for --secrets-timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let s = socket_name("secrets");
    let mut c = agent_cmd();
    aws_env(&mut c, &endpoint);
    c.args(["run", "--health-socket", &s, "--secrets-timeout", "20s", "--secret", "A=/x/a", "--", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut agent = c.spawn().unwrap();
    let want = "starting: loading secrets; the app starts once they are all loaded";
    let mut last = (0, String::new());
    wait_until(Duration::from_secs(15), "agent health to report the secrets phase", || {
        last = health(&["--socket", &s]);
        last.1 == want
    });
    assert_eq!(last.0, 1, "{}", last.1);
    signal(agent.id(), libc::SIGKILL);
    let _ = agent.wait();
}
