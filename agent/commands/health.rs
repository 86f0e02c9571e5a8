//! `agent health`: the container health check. Until probes are configured it is unhealthy and
//! says so, rather than reporting a health it has not checked.

use std::process::ExitCode;

use crate::cli::HealthArgs;
use crate::exit::Code;

pub fn run(_args: &HealthArgs) -> ExitCode {
    println!("unhealthy: agent health is not configured yet (no health probe exists in this version)");
    Code::Unhealthy.into()
}
