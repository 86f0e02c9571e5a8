//! The README's demo command, run the way CI can: `scripts/demo --once` must end in "demo: OK",
//! with secrets loaded, health served, and X-Ray segments and OTLP spans delivered.

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
    assert!(text.contains("\"app_misses\": []"), "every Cruddur secret and relay setting reached the app: {text}");
    assert!(text.contains("\"kept_from_app\": [\"OTEL_EXPORTER_OTLP_HEADERS\"]"), "the Honeycomb key stays with the agent: {text}");
    assert!(text.contains("\"xray_traces_delivered\": \"3/3\""), "{text}");
    assert!(text.contains("\"otlp_header_on_every_request\": true"), "{text}");
    // The values scripts/demo.py seeds: none may appear in anything the demo printed.
    let everything = format!("{text}{}", stderr(&out));
    for value in
        ["AKIADEMODEMODEMO0001", "demo-secret-access-key-not-real", "postgresql://cruddur:demo-password", "demo-honeycomb-key", "demo-db-password"]
    {
        assert!(!everything.contains(value), "a seeded secret value was printed");
    }
}
