//! Exit codes are API: the child's pass through, signal deaths become 128+N, exec failures
//! become 126/127 with a message, and `--map-exit` rewrites them.

mod util;
use std::time::Duration;
use util::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn all_256_exit_codes_pass_through() {
    for n in 0..=255 {
        let mut cmd = agent_cmd();
        cmd.args(["run", "--", "sh", "-c", &format!("exit {n}")]);
        let out = run(cmd, T);
        assert_eq!(code(&out, "agent run -- sh -c exit N"), n, "agent run -- sh -c 'exit {n}'\n{}", stderr(&out));
    }
}

#[test]
fn signal_deaths_are_128_plus_n() {
    for (sig, n) in [("HUP", 1), ("INT", 2), ("KILL", 9), ("USR1", 10), ("SEGV", 11), ("TERM", 15)] {
        let mut cmd = agent_cmd();
        cmd.args(["run", "--", "sh", "-c", &format!("kill -{sig} $$; sleep 5")]);
        // The signals' default actions, whatever this test inherited: under `nohup` SIGHUP is
        // ignored, the agent rightly passes that on to its child, and the shell would not die.
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                for s in [libc::SIGHUP, libc::SIGINT, libc::SIGUSR1, libc::SIGTERM] {
                    libc::signal(s, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let out = run(cmd, T);
        assert_eq!(code(&out, sig), 128 + n, "child killed by SIG{sig}\n{}", stderr(&out));
        assert!(stderr(&out).contains(&format!("child died of SIG{sig}")), "{}", stderr(&out));
    }
}

#[test]
fn map_exit_rewrites_codes_flag_over_env_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "map-exit = [\"3:10\"]\n").unwrap();
    let case = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = agent_cmd();
        cmd.args(["--config", file.to_str().unwrap(), "run"]);
        if let Some(f) = flag {
            cmd.args(["--map-exit", f]);
        }
        if let Some(e) = env {
            cmd.env("AGENT_MAP_EXIT", e);
        }
        cmd.args(["--", "sh", "-c", "exit 3"]);
        code(&run(cmd, T), "map-exit")
    };
    assert_eq!(case(None, None), 10, "file applies");
    assert_eq!(case(Some("3:20,4:0"), None), 20, "env beats file");
    assert_eq!(case(Some("3:20"), Some("3:30")), 30, "flag beats env");

    let mut cmd = agent_cmd();
    cmd.args(["run", "--map-exit", "143:0", "--", "sh", "-c", "kill -TERM $$; sleep 5"]);
    let out = run(cmd, T);
    assert_eq!(code(&out, "143:0"), 0);
    assert!(stderr(&out).contains("reported as 0 (--map-exit)"), "{}", stderr(&out));
}

#[test]
fn exec_failures_are_127_and_126_with_the_program_named() {
    let mut cmd = agent_cmd();
    cmd.args(["run", "--", "no-such-program-xyz"]);
    let out = run(cmd, T);
    assert_eq!(code(&out, "not found"), 127);
    assert!(stderr(&out).contains("\"no-such-program-xyz\": not found in PATH"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let mut cmd = agent_cmd();
    cmd.args(["run", "--"]).arg(&script);
    let out = run(cmd, T);
    assert_eq!(code(&out, "not executable"), 126);
    assert!(stderr(&out).contains("not-executable.sh") && stderr(&out).contains("permission denied"), "{}", stderr(&out));

    let bad_interp = dir.path().join("bad-interpreter.sh");
    std::fs::write(&bad_interp, "#!/nonexistent/python\n").unwrap();
    std::fs::set_permissions(&bad_interp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = agent_cmd();
    cmd.args(["run", "--"]).arg(&bad_interp);
    let out = run(cmd, T);
    assert_eq!(code(&out, "bad interpreter"), 127);
    assert!(stderr(&out).contains("#! line"), "{}", stderr(&out));
}

#[test]
fn agent_errors_use_documented_codes() {
    // Usage: no command.
    let mut cmd = agent_cmd();
    cmd.args(["run"]);
    assert_eq!(code(&run(cmd, T), "no command"), 64);

    // Config: a bad duration names the flag and its variable.
    let mut cmd = agent_cmd();
    cmd.args(["run", "--"]).arg("true").env("AGENT_STOP_TIMEOUT", "soon");
    let out = run(cmd, T);
    assert_eq!(code(&out, "bad duration"), 78);
    assert!(stderr(&out).contains("--stop-timeout (or AGENT_STOP_TIMEOUT)") && stderr(&out).contains("\"soon\""), "{}", stderr(&out));

    // Config: an empty --rewrite-signal rule is refused (as dumb-init refuses it), not ignored.
    let mut cmd = agent_cmd();
    cmd.args(["run", "--rewrite-signal", "", "--", "true"]);
    let out = run(cmd, T);
    assert_eq!(code(&out, "empty rewrite"), 78);
    assert!(stderr(&out).contains("--rewrite-signal") && stderr(&out).contains("empty rule"), "{}", stderr(&out));

    // Config: an unknown key in the file is named, with the file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "stop-timout = \"5s\"\n").unwrap();
    let mut cmd = agent_cmd();
    cmd.args(["--config", file.to_str().unwrap(), "run", "--", "true"]);
    let out = run(cmd, T);
    assert_eq!(code(&out, "unknown key"), 78);
    assert!(stderr(&out).contains("stop-timout") && stderr(&out).contains("agent.toml"), "{}", stderr(&out));

    // Config: a missing file is named.
    let mut cmd = agent_cmd();
    cmd.args(["run", "--", "true"]).env("AGENT_CONFIG", "/nonexistent/agent.toml");
    let out = run(cmd, T);
    assert_eq!(code(&out, "missing file"), 78);
    assert!(stderr(&out).contains("/nonexistent/agent.toml"), "{}", stderr(&out));
}

#[test]
fn version_prints_name_and_version() {
    let mut cmd = agent_cmd();
    cmd.arg("version");
    let out = run(cmd, T);
    assert_eq!(code(&out, "version"), 0);
    assert!(stdout(&out).starts_with(&format!("agent {}", env!("CARGO_PKG_VERSION"))), "{}", stdout(&out));
}

#[test]
fn help_never_shows_the_values_of_agent_variables() {
    for sub in ["run", "health", "env"] {
        let mut cmd = agent_cmd();
        cmd.args([sub, "--help"])
            .env("AGENT_SECRETS", "DB=/very/private/reference-x9")
            .env("AGENT_HEALTH_BODY", "expected-body-x9")
            .env("AGENT_STOP_TIMEOUT", "7s");
        let out = run(cmd, T);
        let text = stdout(&out);
        assert!(text.contains("AGENT_STOP_TIMEOUT") || sub != "run", "{text}");
        assert!(!text.contains("x9") && !text.contains("=7s"), "agent {sub} --help shows a variable's value:\n{text}");
    }
}
