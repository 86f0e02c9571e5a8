//! `agent run [OPTIONS] -- CMD [ARGS...]`: validate the settings, then supervise CMD.

use std::process::ExitCode;

use anyhow::Context;
use nix::sys::signal::SigSet;
use tracing::{error, info};

use crate::cli::{agent_env_vars, RunArgs};
use crate::config::{self, FileConfig};
use crate::health;
use crate::supervisor::{self, ChildSpec, Supervisor};

/// `handled` is the signal set `main` blocked before anything else happened.
pub fn run(args: &RunArgs, file: &FileConfig, handled: &SigSet) -> anyhow::Result<ExitCode> {
    let cfg = config::run_config(args, file)?;
    let health_cfg = health::settings::run_config(&args.health, file)?;
    supervisor::adopt_orphans();
    let health = health::start(health_cfg)?;

    let mut spec = ChildSpec::new(&args.command);
    spec.env_remove = agent_env_vars();

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
