//! A real gunicorn + Flask app (examples/backend-flask) under the agent: it becomes ready and
//! `agent health` says so; SIGTERM to the agent drains an in-flight request, gunicorn exits 0,
//! and so does the agent.

mod util;
use std::process::Stdio;
use std::time::Duration;
use util::*;

fn drains_on_sigterm(pid1: bool) {
    let venv = venv();
    let app = repo().join("examples/backend-flask");
    // The test binds the app's socket and hands it to gunicorn as descriptor 3.
    let listener = AppListener::new();
    let port = listener.port;
    let gunicorn = venv.join("bin/gunicorn");
    let conf = app.join("gunicorn.conf.py");
    let socket = socket_name(if pid1 { "gunicorn-pid1" } else { "gunicorn" });
    let health_url = format!("http://127.0.0.1:{port}/api/health-check");
    let args = [
        "run",
        "--health-url",
        &health_url,
        "--health-socket",
        &socket,
        "--wait-ready",
        "--",
        gunicorn.to_str().unwrap(),
        "-c",
        conf.to_str().unwrap(),
        "--bind",
        "fd://3",
        "--chdir",
        app.to_str().unwrap(),
        "app:app",
    ];
    let mut cmd = if pid1 {
        agent_as_pid1(&args)
    } else {
        let mut c = agent_cmd();
        c.args(args);
        c
    };
    listener.hand_to(&mut cmd);
    cmd.env("WEB_CONCURRENCY", "2");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let agent_pid = if pid1 { pid1_host_pid(child.id()) as u32 } else { child.id() };
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());

    // Ready is what the agent says: its health check passes once gunicorn answers.
    let mut line = String::new();
    wait_until(Duration::from_secs(30), "agent health to report the app healthy", || {
        let mut c = agent_cmd();
        c.args(["health", "--socket", &socket]);
        let out = run(c, Duration::from_secs(5));
        line = stdout(&out);
        out.status.code() == Some(0)
    });
    assert!(line.starts_with(&format!("healthy: GET {health_url} -> 200 in ")), "{line}");
    assert!(err.lock().unwrap().contains("ready after"), "--wait-ready logs readiness");
    let slow = std::thread::spawn(move || http_get(port, "/api/slow?seconds=2", Duration::from_secs(20)));
    wait_until(Duration::from_secs(10), "the slow request to start", || out.lock().unwrap().contains("slow request started"));

    signal(agent_pid, libc::SIGTERM);
    let status = wait_child(&mut child, Duration::from_secs(25), "agent after SIGTERM");
    let logs = err.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "gunicorn drained and exited 0, and so did the agent:\n{logs}");
    let (code, body) = slow.join().unwrap().expect("the in-flight request got an answer");
    assert_eq!(code, 200, "the in-flight request completed during the drain: {body}");
    assert!(body.contains("slept"), "{body}");
    assert!(logs.contains("Handling signal: term"), "gunicorn's master got SIGTERM:\n{logs}");
    assert!(logs.contains("child exited") && logs.contains("code=0"), "{logs}");
    assert!(!logs.contains("did not exit within the stop timeout"), "nothing needed killing:\n{logs}");
}

#[test]
fn gunicorn_drains_and_exits_zero_on_sigterm() {
    drains_on_sigterm(false);
}

#[test]
fn gunicorn_drains_and_exits_zero_on_sigterm_as_pid1() {
    if can_unshare() {
        drains_on_sigterm(true);
    }
}
