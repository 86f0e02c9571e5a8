//! Processes: signals, /proc, PID 1 in a new PID namespace.
#![allow(unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

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

/// The direct children of `pid`, from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    read(Path::new(&format!("/proc/{pid}/task/{pid}/children"))).split_whitespace().filter_map(|s| s.parse().ok()).collect()
}

/// A "kB" field of /proc/PID/status (VmRSS:, VmHWM:), or 0.
pub fn status_kb(pid: u32, key: &str) -> u64 {
    read(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}
