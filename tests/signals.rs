//! Every forwardable signal reaches the child; `--rewrite-signal` and `--signal-target` change
//! what is sent and to whom. A fixture (`examples/sigrecord.rs`) records what it received.

mod util;
use std::process::{Child, Stdio};
use std::time::Duration;
use util::*;

const T: Duration = Duration::from_secs(20);

fn spawn(mut cmd: std::process::Command) -> Child {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

fn check_all_signals_reach_child(pid1: bool) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("signals.txt");
    let rec = fixture("sigrecord");
    let args = ["run", "--", rec.to_str().unwrap(), out.to_str().unwrap(), "--exit-on", "TERM"];
    let mut child = if pid1 {
        spawn(agent_as_pid1(&args))
    } else {
        spawn({
            let mut c = agent_cmd();
            c.args(args);
            c
        })
    };
    let agent_pid = if pid1 { pid1_host_pid(child.id()) as u32 } else { child.id() };
    wait_for_line(&out, "ready");

    let sent = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
    ];
    for (sig, name) in sent {
        signal(agent_pid, sig);
        wait_for_line(&out, name);
    }
    let status = wait_child(&mut child, T, "agent after SIGTERM");
    assert_eq!(status.code(), Some(0), "the fixture exits 0 on SIGTERM");
    let mut expected = vec!["ready".to_string()];
    expected.extend(sent.iter().map(|(_, n)| n.to_string()));
    assert_eq!(lines(&out), expected, "each signal arrives once, in order");
}

#[test]
fn term_int_hup_quit_usr1_usr2_winch_reach_the_child() {
    check_all_signals_reach_child(false);
}

#[test]
fn signals_reach_the_child_when_agent_is_pid1() {
    if can_unshare() {
        check_all_signals_reach_child(true);
    }
}

#[test]
fn rewrite_changes_and_drops_signals() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("signals.txt");
    let mut cmd = agent_cmd();
    cmd.args(["run", "--rewrite-signal", "TERM:QUIT", "--rewrite-signal", "WINCH:drop", "--"]).arg(fixture("sigrecord")).args([
        out.to_str().unwrap(),
        "--exit-on",
        "QUIT",
    ]);
    let mut child = spawn(cmd);
    wait_for_line(&out, "ready");
    signal(child.id(), libc::SIGWINCH);
    signal(child.id(), libc::SIGUSR1);
    wait_for_line(&out, "SIGUSR1");
    signal(child.id(), libc::SIGTERM);
    let status = wait_child(&mut child, T, "agent after SIGTERM rewritten to SIGQUIT");
    assert_eq!(status.code(), Some(0));
    assert_eq!(lines(&out), ["ready", "SIGUSR1", "SIGQUIT"], "WINCH dropped, TERM arrived as QUIT");
}

/// A TERM or INT rewritten to `drop` is ignored: no stop starts, so the stop timeout never
/// SIGKILLs the app; it runs on and its own exit code is the agent's.
#[test]
fn dropped_term_and_int_leave_the_app_running() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("signals.txt");
    let mut cmd = agent_cmd();
    cmd.args(["run", "--rewrite-signal", "TERM:drop", "--rewrite-signal", "INT:drop", "--stop-timeout", "300ms", "--"])
        .arg(fixture("sigrecord"))
        .args([out.to_str().unwrap(), "--exit-on", "USR2"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    wait_for_line(&out, "ready");
    signal(agent.id(), libc::SIGTERM);
    signal(agent.id(), libc::SIGINT);
    wait_until(T, "both drops logged", || err.lock().unwrap().matches("not stopping").count() == 2);
    // Three stop timeouts: a stop, had one started, would have SIGKILLed the app by now.
    std::thread::sleep(Duration::from_millis(900));
    assert!(agent.try_wait().unwrap().is_none(), "the agent must still run: {}", err.lock().unwrap());
    signal(agent.id(), libc::SIGUSR1);
    wait_for_line(&out, "SIGUSR1");
    signal(agent.id(), libc::SIGUSR2);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(0), "the app's own exit code, not 137: {}", err.lock().unwrap());
    assert_eq!(lines(&out), ["ready", "SIGUSR1", "SIGUSR2"], "neither TERM nor INT reached the app");
}

/// A child shell runs two recorders in its process group: `c` (the child itself, via exec)
/// and `g` (its background job). Only `--signal-target group` reaches `g` with SIGUSR1.
fn group_case(target: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (c, g) = (dir.path().join("c.txt"), dir.path().join("g.txt"));
    let rec = fixture("sigrecord");
    let script = format!("{rec} {g} --exit-on TERM & exec {rec} {c} --exit-on TERM", rec = rec.display(), g = g.display(), c = c.display());
    let mut cmd = agent_cmd();
    cmd.args(["run", "--signal-target", target, "--", "sh", "-c", &script]);
    let mut child = spawn(cmd);
    wait_for_line(&c, "ready");
    wait_for_line(&g, "ready");
    signal(child.id(), libc::SIGUSR1);
    wait_for_line(&c, "SIGUSR1");
    if target == "group" {
        wait_for_line(&g, "SIGUSR1");
    }
    signal(child.id(), libc::SIGTERM);
    let status = wait_child(&mut child, T, "agent after SIGTERM");
    assert_eq!(status.code(), Some(0));
    lines(&g)
}

#[test]
fn signal_target_child_reaches_only_the_child() {
    // `g` gets only the SIGTERM the agent sends to leftovers once the child has exited.
    assert_eq!(group_case("child"), ["ready", "SIGTERM"]);
}

#[test]
fn signal_target_group_reaches_the_whole_group() {
    assert_eq!(group_case("group"), ["ready", "SIGUSR1", "SIGTERM"]);
}

/// A signal that arrives while the agent waits to restart a failed child is not lost: it
/// reaches the next child; TERM then stops the restarts.
#[test]
fn signals_during_a_restart_backoff_reach_the_next_child_and_term_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let (out, first) = (dir.path().join("signals.txt"), dir.path().join("first"));
    // The first run fails; the second is the recorder.
    let script = format!(
        "if [ ! -e {f} ]; then touch {f}; exit 1; fi; exec {rec} {o} --exit-on TERM",
        f = first.display(),
        rec = fixture("sigrecord").display(),
        o = out.display()
    );
    let mut cmd = agent_cmd();
    cmd.args(["run", "--restart", "on-failure", "--restart-backoff", "2s", "--", "sh", "-c", &script]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    wait_until(T, "the first run to fail", || err.lock().unwrap().contains("child failed; restarting"));
    signal(agent.id(), libc::SIGUSR1); // during the 2 s backoff: no child to take it
    wait_for_line(&out, "SIGUSR1");
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(0));
    assert_eq!(lines(&out), ["ready", "SIGUSR1", "SIGTERM"]);

    // TERM during the backoff: no restart at all.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = agent_cmd();
    cmd.args(["run", "--restart", "on-failure", "--restart-backoff", "5s", "--", "sh", "-c", "exit 3"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut agent = cmd.spawn().unwrap();
    let err = collect(agent.stderr.take().unwrap());
    wait_until(T, "the first run to fail", || err.lock().unwrap().contains("child failed; restarting"));
    signal(agent.id(), libc::SIGTERM);
    assert_eq!(wait_child(&mut agent, T, "agent").code(), Some(3));
    assert!(err.lock().unwrap().contains("not restarting"));
    drop(dir);
}
