//! `--refresh-interval` against a real moto_server: a changed parameter restarts the child with
//! the new value, or signals it (with --secrets-dir rewritten), or ends the agent; a refresh that
//! fails keeps the child running and is logged once.

mod util;
use std::process::{Child, Stdio};
use std::time::Duration;
use util::*;

const T: Duration = Duration::from_secs(60);

fn spawn_agent(endpoint: &str, args: &[&str]) -> (Child, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut c = agent_cmd();
    aws_env(&mut c, endpoint);
    c.arg("run").args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let err = collect(child.stderr.take().unwrap());
    (child, err)
}

#[test]
fn a_change_restarts_the_child_with_the_new_value() {
    let moto = Moto::start();
    moto.put("/r/TOKEN", "token-old-w1");
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let script = format!("echo \"$TOKEN\" >> {}; exec sleep 300", runs.display());
    let (mut agent, err) = spawn_agent(&moto.endpoint(), &["--secret", "TOKEN=/r/TOKEN", "--refresh-interval", "200ms", "--", "sh", "-c", &script]);
    wait_until(Duration::from_secs(20), "the first run", || lines(&runs) == ["token-old-w1"]);
    moto.put("/r/TOKEN", "token-new-w1");
    wait_until(Duration::from_secs(20), "a run with the new value", || lines(&runs) == ["token-old-w1", "token-new-w1"]);
    assert!(agent.try_wait().unwrap().is_none(), "the agent keeps supervising");
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(143));
    let log = err.lock().unwrap().clone();
    assert!(log.contains("secrets changed names=TOKEN"), "{log}");
    assert!(log.contains("starting the child again with refreshed secrets"), "{log}");
    assert!(!log.contains("token-old-w1") && !log.contains("token-new-w1"), "values never logged");
}

#[test]
fn a_change_can_signal_the_child_and_rewrite_the_secrets_dir() {
    let moto = Moto::start();
    moto.put("/r/KEY", "key-old-w2");
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("signals");
    let sdir = dir.path().join("secrets");
    let fixture = fixture("sigrecord");
    let mut c = agent_cmd();
    aws_env(&mut c, &moto.endpoint());
    c.args([
        "run",
        "--secret",
        "KEY=/r/KEY",
        "--secrets-dir",
        sdir.to_str().unwrap(),
        "--refresh-interval",
        "200ms",
        "--on-change",
        "signal:HUP",
        "--",
    ])
    .arg(&fixture)
    .arg(&rec)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut agent = c.spawn().unwrap();
    wait_for_line(&rec, "ready");
    assert_eq!(read(&sdir.join("KEY")), "key-old-w2");
    moto.put("/r/KEY", "key-new-w2");
    wait_for_line(&rec, "SIGHUP");
    assert_eq!(read(&sdir.join("KEY")), "key-new-w2", "the file is rewritten before the signal");
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(0), "sigrecord exits 0 on SIGTERM");
    assert!(!sdir.exists(), "the secrets directory is removed when the agent exits");
}

#[test]
fn a_change_can_end_the_agent() {
    let moto = Moto::start();
    moto.put("/r/X", "x-old-w3");
    let (mut agent, err) =
        spawn_agent(&moto.endpoint(), &["--secret", "X=/r/X", "--refresh-interval", "200ms", "--on-change", "exit", "--", "sleep", "300"]);
    wait_until(Duration::from_secs(20), "the child to start", || err.lock().unwrap().contains("started child"));
    moto.put("/r/X", "x-new-w3");
    let status = wait_child(&mut agent, T, "agent after the change");
    assert_eq!(status.code(), Some(143), "sleep stopped by SIGTERM; the agent exits with its code");
    assert!(err.lock().unwrap().contains("stopping the child and exiting (--on-change exit)"));
}

#[test]
fn a_failing_refresh_keeps_the_child_and_is_logged_once() {
    let moto = Moto::start();
    moto.put("/r/Y", "y-value-w4");
    let proxy = FaultProxy::start(&moto.endpoint(), &["none"]);
    let proxy_port = proxy.port;
    let (mut agent, err) =
        spawn_agent(&proxy.endpoint(), &["--secret", "Y=/r/Y", "--refresh-interval", "200ms", "--secrets-timeout", "1s", "--", "sleep", "300"]);
    wait_until(Duration::from_secs(20), "the child to start", || err.lock().unwrap().contains("started child"));
    proxy.stop();
    wait_until(Duration::from_secs(20), "a failed refresh", || err.lock().unwrap().contains("secrets refresh failed"));
    // Several more refreshes fail (each within its 1 s timeout) before the endpoint returns.
    std::thread::sleep(Duration::from_secs(3));
    let proxy = FaultProxy::start_on(proxy_port, &moto.endpoint(), &["none"]);
    wait_until(Duration::from_secs(20), "the refresh to recover", || err.lock().unwrap().contains("secrets refresh works again"));
    assert!(agent.try_wait().unwrap().is_none(), "the child kept running on its last good values");
    signal(agent.id(), libc::SIGTERM);
    wait_child(&mut agent, T, "agent");
    let log = err.lock().unwrap().clone();
    assert_eq!(log.matches("secrets refresh failed").count(), 1, "logged once:\n{log}");
    assert!(!log.contains("started child pid") || log.matches("started child").count() == 1, "not restarted:\n{log}");
    drop(proxy);
}
