//! `agent run [OPTIONS] -- CMD [ARGS...]`: validate the settings, then supervise CMD.

use std::process::ExitCode;

use anyhow::Context;
use nix::sys::signal::SigSet;
use tracing::{error, info};

use crate::cli::{agent_env_vars, RunArgs};
use crate::config::{self, FileConfig};
use crate::exit::Code;
use crate::health;
use crate::secrets::{self, Resolved};
use crate::supervisor::{self, ChildSpec, Supervisor};

/// The child's variables from the resolved secrets, honouring `--no-override`, with one info line
/// naming (never showing) what was loaded and what replaced or kept an inherited variable.
fn child_env(resolved: Resolved, no_override: bool) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut env = Vec::new();
    let (mut overridden, mut kept) = (Vec::new(), Vec::new());
    let names: Vec<&str> = resolved.vars.iter().map(|v| v.name.as_str()).collect();
    info!(count = names.len(), names = %names.join(","), "loaded secrets");
    for var in &resolved.vars {
        if std::env::var_os(&var.name).is_some() {
            if no_override {
                kept.push(var.name.clone());
                continue;
            }
            overridden.push(var.name.clone());
        }
        env.push((var.name.clone().into(), var.value.expose().into()));
    }
    if !overridden.is_empty() {
        info!(names = %overridden.join(","), "secrets override inherited variables of the same name");
    }
    if !kept.is_empty() {
        info!(names = %kept.join(","), "--no-override: inherited variables kept over secrets of the same name");
    }
    env
}

/// `handled` is the signal set `main` blocked before anything else happened.
pub fn run(args: &RunArgs, file: &FileConfig, handled: &SigSet) -> anyhow::Result<ExitCode> {
    let cfg = config::run_config(args, file)?;
    let health_cfg = health::settings::run_config(&args.health, file)?;
    let secrets_cfg = secrets::settings::config(&args.secrets, file)?;
    let no_override = args.no_override || file.no_override.unwrap_or(false);
    let secrets_dir = args.secrets_dir.clone().or_else(|| file.secrets_dir.clone());
    supervisor::adopt_orphans();
    let health = health::start(health_cfg)?;

    let mut spec = ChildSpec::new(&args.command);
    spec.env_remove = agent_env_vars();
    if !secrets_cfg.sources.is_empty() {
        let resolved = match secrets_cfg.resolve_blocking() {
            Ok(r) => r,
            Err(e) => {
                error!(code = Code::Secrets.as_u8(), "{e}");
                return Ok(Code::Secrets.into());
            }
        };
        if let Some(dir) = &secrets_dir {
            secrets::files::write_all(dir, &resolved).with_context(|| format!("--secrets-dir {}", dir.display()))?;
        }
        spec.env = child_env(resolved, no_override);
    }

    let mut sup = Supervisor::new(&cfg, &spec, handled).context("cannot set up signal handling (signalfd)")?;
    if let Some(h) = &health {
        sup = sup.with_events(h.state.as_ref());
    }
    match sup.run() {
        Ok(outcome) => {
            info!(code = outcome.code, reason = %outcome.reason, "exiting");
            Ok(ExitCode::from(outcome.code))
        }
        Err(e) => {
            error!(code = e.code().as_u8(), "{e}");
            Ok(e.code().into())
        }
    }
}
