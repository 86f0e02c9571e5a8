//! The ECS examples stay true to the agent: valid JSON, the agent as entrypoint and health
//! check, no X-Ray sidecar, no task-definition `secrets`, timeouts that nest, and only `AGENT_*`
//! settings that exist (a typo here would be a silent default in a real task).

mod util;
use std::time::Duration;
use util::*;

fn json(path: &str) -> serde_json::Value {
    let p = repo().join(path);
    serde_json::from_str(&read(&p)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_task_definition_uses_the_agent_and_no_sidecar() {
    let td = json("examples/ecs/task-definition.json");
    let containers = td["containerDefinitions"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "the xray daemon sidecar is gone");
    let c = &containers[0];
    assert!(!read(&repo().join("examples/ecs/task-definition.json")).contains("aws-xray-daemon"));
    assert_eq!(c["entryPoint"], serde_json::json!(["/agent", "run", "--"]));
    assert_eq!(c["healthCheck"]["command"], serde_json::json!(["CMD", "/agent", "health"]));
    assert!(c.get("secrets").is_none(), "the agent fetches secrets with the task role");

    // Every AGENT_* setting is one the agent reads: `agent run --help` lists its variables.
    let mut help = agent_cmd();
    help.args(["run", "--help"]);
    let help = stdout(&run(help, Duration::from_secs(20)));
    let env = c["environment"].as_array().unwrap();
    let get = |name: &str| env.iter().find(|e| e["name"] == name).and_then(|e| e["value"].as_str()).map(str::to_string);
    for e in env {
        let name = e["name"].as_str().unwrap();
        if name.starts_with("AGENT_") {
            assert!(help.contains(&format!("[env: {name}]")), "{name} is not an agent setting");
        }
    }

    // The timeouts nest: gunicorn's graceful_timeout < stop timeout, stop + flush < stopTimeout.
    let secs = |s: &str| s.trim_end_matches('s').parse::<u64>().unwrap();
    let stop = secs(&get("AGENT_STOP_TIMEOUT").unwrap());
    let flush = secs(&get("AGENT_FLUSH_TIMEOUT").unwrap());
    assert!(stop + flush < c["stopTimeout"].as_u64().unwrap(), "{stop} + {flush} must stay under stopTimeout");
    let conf = read(&repo().join("examples/backend-flask/gunicorn.conf.py"));
    let graceful: u64 = conf.lines().find_map(|l| l.strip_prefix("graceful_timeout = ")).unwrap().trim().parse().unwrap();
    assert!(graceful < stop, "gunicorn's graceful_timeout {graceful} must stay under --stop-timeout {stop}");

    // And the agent accepts these settings as they are.
    let mut check = agent_cmd();
    for e in env {
        let name = e["name"].as_str().unwrap();
        if name.starts_with("AGENT_") && name != "AGENT_SSM_PATH" && name != "AGENT_START_JITTER" {
            check.env(name, e["value"].as_str().unwrap());
        }
    }
    check.args(["run", "--health-socket", &socket_name("td"), "--", "true"]);
    let out = run(check, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn the_task_role_policy_grants_what_the_agent_calls() {
    let text = read(&repo().join("examples/ecs/task-role-policy.json"));
    let _ = json("examples/ecs/task-role-policy.json");
    for action in
        ["ssm:GetParameters", "ssm:GetParametersByPath", "kms:Decrypt", "xray:PutTraceSegments", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    {
        assert!(text.contains(action), "{action} missing");
    }
    let hc = json("examples/ecs/healthcheck.json");
    assert_eq!(hc["healthCheck"]["command"], serde_json::json!(["CMD", "/agent", "health"]));
}
