//! `agent health`: the container health check. Exit 0 healthy, 1 not, and one line on stdout
//! that says why.
//!
//! It asks the running supervisor over its health socket. With no supervisor there, it probes
//! `--url`/`--tcp` (`AGENT_HEALTH_URL`, `AGENT_HEALTH_TCP`) itself; with neither, it says what
//! to configure. Everything happens within `--timeout` (2 s by default, under ECS's minimum
//! timeout), and even a bad setting is reported as `unhealthy: …` with exit 1, never as another
//! code, because a health check's only words are 0 and 1.

use std::io::Read;
use std::process::ExitCode;
use std::time::Instant;

use crate::cli::HealthArgs;
use crate::config::FileConfig;
use crate::exit::Code;
use crate::health::settings::{client_config, ClientConfig};
use crate::health::socket;

pub fn run(args: &HealthArgs, file: &FileConfig) -> ExitCode {
    let (healthy, line) = match client_config(args, file) {
        Ok(cfg) => check(&cfg),
        Err(e) => (false, format!("unhealthy: agent health is misconfigured: {e}")),
    };
    println!("{line}");
    if healthy {
        Code::Healthy.into()
    } else {
        Code::Unhealthy.into()
    }
}

fn check(cfg: &ClientConfig) -> (bool, String) {
    let deadline = Instant::now() + cfg.timeout;
    match socket::connect(&cfg.socket) {
        Ok(mut conn) => {
            let left = deadline.saturating_duration_since(Instant::now()).max(std::time::Duration::from_millis(1));
            let _ = conn.set_read_timeout(Some(left));
            let mut answer = String::new();
            match (&mut conn).take(4096).read_to_string(&mut answer) {
                Ok(_) if !answer.trim().is_empty() => {
                    let line = answer.trim().to_string();
                    (line.starts_with("healthy:"), line)
                }
                Ok(_) => (false, format!("unhealthy: the agent on {} closed without an answer", cfg.socket)),
                Err(_) => {
                    (false, format!("unhealthy: the agent on {} did not answer within {}", cfg.socket, humantime::format_duration(cfg.timeout)))
                }
            }
        }
        Err(e) => match &cfg.probe {
            Some(probe) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let how = format!("direct probe; no agent on {}", cfg.socket);
                match probe.check(left) {
                    Ok(s) => {
                        let ms = s.elapsed.as_secs_f64() * 1000.0;
                        let what = s.status.map_or("connected".to_string(), |c| c.to_string());
                        (true, format!("healthy: {} -> {what} in {ms:.1}ms ({how})", probe.describe()))
                    }
                    Err(err) => (false, format!("unhealthy: {} -> {err} ({how})", probe.describe())),
                }
            }
            None => (
                false,
                format!(
                    "unhealthy: not configured: no agent serves health on {} ({e}), and neither --url nor --tcp \
                     (AGENT_HEALTH_URL, AGENT_HEALTH_TCP) is set to probe directly; set AGENT_HEALTH_URL, \
                     e.g. http://127.0.0.1:4567/api/health-check, in the container's environment",
                    cfg.socket
                ),
            ),
        },
    }
}
