//! A terminal's job control through the agent, as `agent run -- flask run` on a laptop meets it:
//! an interactive bash on a pseudo-terminal (`tests/tty/shell.py`, Python's `pty`) types the
//! commands and keys a person would, and each scenario is first run with the bare command, so a
//! failure here is the agent's and not the harness's.

mod util;
use std::process::Command;
use std::time::Duration;
use util::*;

/// Runs one scenario of `tests/tty/shell.py` with `agent` (`-`: the bare command).
fn scenario(agent: &str, name: &str) {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/tty/shell.py")).args([agent, name]);
    // X-Ray off, as agent_cmd() has it: parallel tests must not contend for 127.0.0.1:2000.
    cmd.env("AGENT_NO_XRAY", "true");
    let out = run(cmd, Duration::from_secs(90));
    let shown = stdout(&out);
    let who = if agent == "-" { "the bare command (the harness's control)" } else { "the agent" };
    assert!(out.status.success() && shown.contains("ok"), "{name} with {who}:\n{shown}{}", stderr(&out));
}

fn both(name: &str) {
    scenario("-", name);
    scenario(agent().to_str().unwrap(), name);
}

#[test]
fn ctrl_z_gives_the_prompt_back_and_fg_resumes_the_app() {
    both("ctrl-z");
}

#[test]
fn a_background_reader_stops_and_fg_brings_it_back_with_the_terminal() {
    both("bg-reader");
}

#[test]
fn ctrl_c_ends_the_app_with_130() {
    both("ctrl-c");
}
