//! The child's life under the agent: what it inherits, how it is stopped within the deadline,
//! how its leftovers and orphans are reaped, and restarts.

mod util;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use util::*;

const T: Duration = Duration::from_secs(30);

fn spawn(mut cmd: std::process::Command) -> Child {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

fn stderr_of(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    stderr(&out)
}

#[test]
fn child_gets_only_stdio_and_not_the_agents_variables() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, "stop-timeout = \"3s\"\n").unwrap();
    let mut cmd = agent_cmd();
    cmd.args(["--config", cfg.to_str().unwrap(), "run", "--", "sh", "-c", "ls /proc/$$/fd; env"])
        .env("AGENT_STOP_TIMEOUT", "4s")
        .env("AGENT_SOMETHING_OF_THE_APP", "kept")
        .env("APP_SETTING", "kept");
    // Start the agent itself with nothing but 0, 1 and 2 open, so what the child sees beyond
    // those could only come from the agent.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let out = run(cmd, T);
    assert_eq!(code(&out, "fd listing"), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let fds: Vec<&str> = text.lines().take_while(|l| l.bytes().all(|b| b.is_ascii_digit())).collect();
    assert_eq!(fds, ["0", "1", "2"], "the child inherits stdin, stdout, stderr and nothing else");
    assert!(!text.contains("AGENT_STOP_TIMEOUT") && !text.contains("AGENT_CONFIG"), "agent settings leaked:\n{text}");
    assert!(text.contains("AGENT_SOMETHING_OF_THE_APP=kept") && text.contains("APP_SETTING=kept"), "{text}");
}

#[test]
fn child_has_its_own_process_group() {
    let mut cmd = agent_cmd();
    // Fields 1 and 5 of /proc/PID/stat are the pid and the process group.
    cmd.args(["run", "--", "sh", "-c", "cut -d' ' -f1,5 /proc/$$/stat"]);
    let out = run(cmd, T);
    let line = stdout(&out);
    let v: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(v.len(), 2, "{line}");
    assert_eq!(v[0], v[1], "the child leads its own process group: {line}");
}

/// A child and a grandchild (in its own session, out of the child's group) both ignore
/// SIGTERM; after `--stop-timeout` both are SIGKILLed and the agent exits 137.
fn term_ignorers_are_killed_at_the_deadline(pid1: bool) {
    let dir = tempfile::tempdir().unwrap();
    let gc = dir.path().join("grandchild.pid");
    let script = format!("trap '' TERM; setsid sleep 300 & echo $! > {}; sleep 300", gc.display());
    let args = ["run", "--stop-timeout", "1s", "--", "sh", "-c", &script];
    let child = if pid1 {
        spawn(agent_as_pid1(&args))
    } else {
        spawn({
            let mut c = agent_cmd();
            c.args(args);
            c
        })
    };
    let agent_pid = if pid1 { pid1_host_pid(child.id()) as u32 } else { child.id() };
    wait_until(Duration::from_secs(10), "grandchild pid file", || !read(&gc).trim().is_empty());
    let gc_pid: i32 = read(&gc).trim().parse().unwrap();

    let start = Instant::now();
    signal(agent_pid, libc::SIGTERM);
    let mut child = child;
    let status = wait_child(&mut child, Duration::from_secs(10), "agent after SIGTERM");
    let took = start.elapsed();
    let err = stderr_of(child);
    assert!(took < Duration::from_secs(2), "gone by stop-timeout + 1 s; took {took:?}\n{err}");
    assert!(took >= Duration::from_millis(900), "SIGKILL came before the stop timeout: {took:?}\n{err}");
    assert_eq!(status.code(), Some(137), "the exit code says the child was killed\n{err}");
    assert!(err.contains("did not exit within the stop timeout"), "{err}");
    if !pid1 {
        assert!(!alive(gc_pid), "grandchild {gc_pid} survived");
    }
}

#[test]
fn term_ignoring_child_and_grandchild_are_killed_at_stop_timeout() {
    term_ignorers_are_killed_at_the_deadline(false);
}

#[test]
fn term_ignoring_child_and_grandchild_are_killed_at_stop_timeout_as_pid1() {
    if can_unshare() {
        term_ignorers_are_killed_at_the_deadline(true);
    }
}

#[test]
fn a_thousand_orphans_leave_no_zombie_as_pid1() {
    if !can_unshare() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("orphans.txt");
    let orphans = fixture("orphans");
    let out = run(agent_as_pid1(&["run", "--", orphans.to_str().unwrap(), "1000", report.to_str().unwrap()]), T);
    let text = read(&report);
    assert_eq!(code(&out, "orphans"), 0, "fixture reported: {text}\n{}", stderr(&out));
    assert!(text.starts_with("zombies=0 left=0 orphans=1000"), "{text}");
    assert!(!stderr(&out).contains("subreaper"), "PID 1 needs no subreaper line:\n{}", stderr(&out));
}

#[test]
fn not_pid1_adopts_and_reaps_orphans_and_says_so_calmly() {
    let dir = tempfile::tempdir().unwrap();
    let orphan = dir.path().join("orphan.pid");
    // The subshell exits at once, orphaning `sleep 1`; the child itself lives on.
    let script = format!("(sleep 1 & echo $! > {}); exec sleep 300", orphan.display());
    let mut cmd = agent_cmd();
    cmd.args(["run", "--", "sh", "-c", &script]);
    let mut child = spawn(cmd);
    wait_until(Duration::from_secs(10), "orphan pid file", || !read(&orphan).trim().is_empty());
    let pid: i32 = read(&orphan).trim().parse().unwrap();
    wait_until(Duration::from_secs(10), "the agent to adopt the orphan", || ppid(pid) == Some(child.id() as i32) || !alive(pid));
    wait_until(Duration::from_secs(10), "the agent to reap the orphan", || !alive(pid));
    assert!(child.try_wait().unwrap().is_none(), "the agent is still supervising");
    signal(child.id(), libc::SIGTERM);
    let status = wait_child(&mut child, T, "agent after SIGTERM");
    assert_eq!(status.code(), Some(143), "sleep dies of SIGTERM");
    let err = stderr_of(child);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("subreaper")).collect();
    assert_eq!(lines.len(), 1, "one line about the subreaper:\n{err}");
    assert!(lines[0].contains(" INFO "), "calm, at info level: {}", lines[0]);
    assert!(!err.contains(" WARN ") && !err.contains(" ERROR "), "{err}");
}

#[test]
fn leftovers_get_term_then_kill_after_orphan_grace() {
    let dir = tempfile::tempdir().unwrap();
    let left = dir.path().join("left.pid");
    let script = format!("trap '' TERM; sleep 300 & echo $! > {}; exit 5", left.display());
    let mut cmd = agent_cmd();
    cmd.args(["run", "--orphan-grace", "500ms", "--", "sh", "-c", &script]);
    let start = Instant::now();
    let out = run(cmd, T);
    let took = start.elapsed();
    assert_eq!(code(&out, "leftover"), 5, "{}", stderr(&out));
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "took {took:?}");
    let pid: i32 = read(&left).trim().parse().unwrap();
    assert!(!alive(pid), "the TERM-ignoring leftover {pid} was killed and reaped");
    assert!(stderr(&out).contains("child left processes behind"), "{}", stderr(&out));
}

#[test]
fn well_behaved_leftovers_do_not_wait_for_the_grace_period() {
    let mut cmd = agent_cmd();
    cmd.args(["run", "--orphan-grace", "30s", "--", "sh", "-c", "sleep 300 & exit 0"]);
    let start = Instant::now();
    let out = run(cmd, T);
    assert_eq!(code(&out, "leftover"), 0);
    assert!(start.elapsed() < Duration::from_secs(5), "SIGTERM ended the leftover at once; took {:?}", start.elapsed());
}

#[test]
fn restart_on_failure_with_backoff_and_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut cmd = agent_cmd();
    cmd.args(["run", "--restart", "on-failure", "--max-restarts", "2", "--restart-backoff", "100ms", "--"]).args([
        "sh",
        "-c",
        &format!("echo run >> {}; exit 3", runs.display()),
    ]);
    let start = Instant::now();
    let out = run(cmd, T);
    assert_eq!(code(&out, "restart"), 3);
    assert_eq!(lines(&runs).len(), 3, "first run and 2 restarts");
    assert!(start.elapsed() >= Duration::from_millis(300), "backoff 100ms then 200ms: {:?}", start.elapsed());
    assert!(stderr(&out).contains("no restarts left"), "{}", stderr(&out));

    // Success is not restarted.
    let mut cmd = agent_cmd();
    cmd.args(["run", "--restart", "on-failure", "--", "sh", "-c", &format!("echo ok >> {}.ok", runs.display())]);
    assert_eq!(code(&run(cmd, T), "success"), 0);
    assert_eq!(lines(&dir.path().join("runs.ok")).len(), 1);
}

#[test]
fn no_restart_after_a_requested_stop() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut cmd = agent_cmd();
    cmd.args(["run", "--restart", "on-failure", "--restart-backoff", "10ms", "--"]).args([
        "sh",
        "-c",
        &format!("echo run >> {}; exec sleep 300", runs.display()),
    ]);
    let mut child = spawn(cmd);
    wait_until(Duration::from_secs(10), "first run", || lines(&runs).len() == 1);
    let agent_pid = child.id() as i32;
    wait_until(Duration::from_secs(10), "sleep to replace the shell", || {
        children_of(agent_pid).iter().any(|p| read(std::path::Path::new(&format!("/proc/{p}/comm"))).trim() == "sleep")
    });
    signal(child.id(), libc::SIGTERM);
    let status = wait_child(&mut child, T, "agent after SIGTERM");
    assert_eq!(status.code(), Some(143));
    assert_eq!(lines(&runs).len(), 1, "a stop the agent was asked for is never followed by a restart");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut cmd = agent_cmd();
    cmd.args(["--log-format", "json", "run", "--", "true"]);
    let out = run(cmd, T);
    assert_eq!(code(&out, "json"), 0);
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 2, "{err}");
    for l in &lines {
        assert!(l.starts_with('{') && l.ends_with('}') && l.contains("\"level\""), "not a JSON line: {l}");
    }
    assert!(err.contains("\"message\":\"started child\"") && err.contains("\"program\":\"true\""), "{err}");
    assert!(err.contains("\"message\":\"exiting\"") && err.contains("\"code\":0"), "{err}");
}

#[test]
fn child_starts_with_no_signal_blocked_or_ignored() {
    // The agent blocks nearly every signal for itself; none of that may reach the app.
    // Inherited dispositions pass through (as with tini), so start the agent with every signal
    // at its default (glibc's posix_spawn, which cargo uses, leaves 32 and 33 ignored).
    let mut cmd = agent_cmd();
    cmd.args(["run", "--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
    unsafe {
        cmd.pre_exec(|| {
            // The raw syscall: glibc's signal()/sigaction() refuse its internal signals.
            // A zeroed kernel sigaction is {SIG_DFL, no flags, no restorer, empty mask}.
            let dfl = [0usize; 4];
            for sig in 1..=64 {
                libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), std::ptr::null_mut::<usize>(), 8usize);
            }
            Ok(())
        })
    };
    let out = run(cmd, T);
    let text = stdout(&out);
    assert_eq!(text, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n", "{}", stderr(&out));
}

#[test]
fn start_up_pages_are_released_once_the_child_has_settled_and_the_agent_still_works() {
    let mut cmd = agent_cmd();
    cmd.args(["--log-level", "debug", "run", "--", "sleep", "300"]);
    let mut child = spawn(cmd);
    let pid = child.id();
    let err = collect(child.stderr.take().unwrap());
    let rss = |key: &str| -> u64 {
        read(std::path::Path::new(&format!("/proc/{pid}/status")))
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    // Released 2 s after the start (waited for first: RSS can also fall before it, as the
    // allocator trims what start-up freed): the resident set falls well below its peak.
    wait_until(Duration::from_secs(15), "the release", || err.lock().unwrap().contains("released start-up code mappings"));
    wait_until(Duration::from_secs(15), "VmRSS to fall below VmHWM", || rss("VmRSS:") + 1024 < rss("VmHWM:"));
    // The loop still forwards signals and exits with the child's code afterwards.
    signal(pid, libc::SIGTERM);
    assert_eq!(wait_child(&mut child, T, "agent after SIGTERM").code(), Some(143));
    assert!(err.lock().unwrap().contains("released start-up code mappings"));
}
