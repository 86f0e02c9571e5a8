//! Everything `agent run` will do, from every setting layered (flag > `AGENT_*` > file >
//! default) and validated once, before anything starts: a bad value anywhere is one config
//! error (exit 78) naming where it came from, and nothing has run yet.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::RunArgs;
use crate::config::{self, layered, parse_positive_duration, FileConfig, Key, RunConfig};
use crate::exit::Fatal;
use crate::health::HealthConfig;
use crate::relay::{self, RelaySettings};
use crate::secrets::refresh::OnChange;
use crate::secrets::settings::SecretsConfig;

pub struct Plan {
    pub supervise: RunConfig,
    pub health: HealthConfig,
    pub secrets: SecretsConfig,
    /// `--no-override`: the agent's own environment wins over loaded secrets.
    pub no_override: bool,
    pub secrets_dir: Option<PathBuf>,
    /// `--refresh-interval`: reload the secrets this often, and what to do on a change.
    pub refresh: Option<(Duration, OnChange)>,
    pub relay: RelaySettings,
}

impl Plan {
    pub fn new(args: &RunArgs, file: &FileConfig) -> Result<Plan, Fatal> {
        let secrets = crate::secrets::settings::config(&args.secrets, file)?;
        let interval =
            layered(Key::run("refresh-interval"), args.refresh_interval.as_ref(), file.refresh_interval.as_ref(), parse_positive_duration)?;
        let on_change =
            layered(Key::run("on-change"), args.on_change.as_ref(), file.on_change.as_ref(), |s| s.parse::<OnChange>())?.unwrap_or(OnChange::Restart);
        if interval.is_some() && secrets.sources.is_empty() {
            tracing::warn!("--refresh-interval is set but no secrets are configured; nothing to refresh");
        }
        let mut relay = relay::settings::config(args, file)?;
        relay.aws.proxy = secrets.aws.proxy.clone();
        if secrets.aws.proxy.is_on() {
            tracing::info!(proxy = %secrets.aws.proxy.describe(), "outbound calls go through a proxy");
        }
        Ok(Plan {
            supervise: config::run_config(args, file)?,
            health: crate::health::settings::run_config(&args.health, file)?,
            no_override: args.no_override || file.no_override.unwrap_or(false),
            secrets_dir: args.secrets_dir.clone().or_else(|| file.secrets_dir.clone()),
            refresh: interval.filter(|_| !secrets.sources.is_empty()).map(|i| (i, on_change)),
            secrets,
            relay,
        })
    }
}
