//! The binaries and their output: the agent under test, fixtures, the venv, and running a
//! command to completion with a deadline.
#![allow(unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

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
/// the trace tests turn it back on. OTLP/gRPC's and StatsD's own ports are free ones
/// (`AGENT_OTLP_GRPC_ADDRESS`, `AGENT_STATSD_ADDRESS`), for the same reason.
pub fn agent_cmd() -> Command {
    agent_cmd_of(&agent())
}

/// `agent_cmd` for another build of the agent (the static binary, say).
pub fn agent_cmd_of(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AGENT_") {
            cmd.env_remove(k);
        }
    }
    // A developer's or CI's own proxy must not reach the agents under test.
    for v in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"] {
        cmd.env_remove(v);
    }
    cmd.env("AGENT_NO_XRAY", "true").env("AGENT_OTLP_GRPC_ADDRESS", "127.0.0.1:0").env("AGENT_STATSD_ADDRESS", "127.0.0.1:0");
    cmd
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

/// The project's Python venv (made by `scripts/setup-venv`), or `TEST_VENV`.
pub fn venv() -> PathBuf {
    let v = std::env::var_os("TEST_VENV").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv"));
    assert!(v.join("bin/python").exists(), "no Python venv at {}: run scripts/setup-venv (scripts/test does it for you)", v.display());
    v
}
