//! The README's demo command, run the way CI can: `scripts/demo --once` must end in "demo: OK".

mod util;
use std::process::Command;
use std::time::Duration;
use util::*;

#[test]
fn demo_runs_once_and_reports_ok() {
    let _ = venv();
    let mut cmd = Command::new(repo().join("scripts/demo"));
    cmd.arg("--once").env("DEMO_AGENT_BIN", agent());
    let out = run(cmd, Duration::from_secs(120));
    let text = stdout(&out);
    assert_eq!(code(&out, "scripts/demo --once"), 0, "{text}\n{}", stderr(&out));
    assert!(text.contains("demo: OK"), "{text}");
    assert!(text.contains("\"agent_exit_code\": 0"), "{text}");
    assert!(text.contains("\"secrets_missing\": []"), "every Cruddur secret reached the app: {text}");
    // The values scripts/demo.py seeds: none may appear in anything the demo printed.
    let everything = format!("{text}{}", stderr(&out));
    for value in ["AKIADEMODEMODEMO0001", "demo-secret-access-key-not-real", "postgresql://cruddur:demo-password", "demo-honeycomb-key", "demo-db-password"] {
        assert!(!everything.contains(value), "a seeded secret value was printed");
    }
}
