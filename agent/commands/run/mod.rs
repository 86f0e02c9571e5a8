//! `agent run [OPTIONS] -- CMD [ARGS...]`: the plan (every setting, validated), then its steps:
//! health, secrets, relay, supervise the app, shut the relay down, exit with the app's code.

mod plan;

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::SigSet;
use tracing::info;

use self::plan::Plan;
use crate::cli::{RunArgs, AGENT_ENV_VARS};
use crate::config::FileConfig;
use crate::exit::{Code, Fatal};
use crate::health::{self, Health};
use crate::relay::{self, Relays};
use crate::secrets::files::SecretsDir;
use crate::secrets::refresh::{self, Refresher};
use crate::secrets::{self, Resolved};
use crate::supervisor::{self, control, ChildSpec, ControlReceiver, Supervisor};

/// `handled` is the signal set `main` blocked before anything else happened.
pub fn run(args: &RunArgs, file: &FileConfig, handled: &SigSet) -> Result<ExitCode, Fatal> {
    let plan = Plan::new(args, file)?;
    supervisor::adopt_orphans();
    let health = health::start(plan.health.clone())?;
    let mut spec = ChildSpec::new(&args.command);
    spec.env_remove = AGENT_ENV_VARS.iter().map(|s| s.to_string()).collect();

    let secrets_dir = plan.secrets_dir.as_deref().map(|d| Arc::new(SecretsDir::new(d)));
    // However `run` ends (an error included), the secrets files go with it.
    let _remove_files = RemoveOnReturn(secrets_dir.clone());
    let resolved = load_secrets(&plan, health.as_ref(), secrets_dir.as_deref())?;
    if let Some(r) = &resolved {
        spec.env = secrets::child_env(r, plan.no_override);
    }
    // Dropped when `run` returns, which stops the refresher.
    let (_refresh_stop, refresh_stop_rx) = std::sync::mpsc::channel::<()>();
    let control = match (&resolved, plan.refresh) {
        (Some(r), Some(_)) => Some(start_refresher(&plan, r, refresh_stop_rx, secrets_dir.clone())?),
        _ => None,
    };

    // The relay reads its OTLP upstreams from the app's environment: the Honeycomb key may be
    // one of the secrets just loaded.
    let (relays, env) = relay::start(&plan.relay, &app_env(&spec.env, &spec.env_remove))?;
    spec.env_remove.extend(env.remove);
    spec.env_fixed.extend(env.set.into_iter().map(|(k, v)| (k.into(), v.into())));
    let relays = Arc::new(relays);
    if let (Some(h), Some(limit)) = (&health, plan.health.exports_failing) {
        for (name, exports) in relays.exports() {
            h.state.watch_exports(name, exports.clone(), limit);
        }
    }

    let result = supervise(&plan, spec, handled, control, health.as_ref(), relays.clone());
    // The app and everything it started are gone: what the relay holds goes out, within the
    // flush timeout, before the agent exits.
    relays.shutdown(None);
    let outcome = result?;
    info!(code = outcome.code, reason = %outcome.reason, "exiting");
    Ok(ExitCode::from(outcome.code))
}

struct RemoveOnReturn(Option<Arc<SecretsDir>>);

impl Drop for RemoveOnReturn {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            d.remove_all();
        }
    }
}

/// Loads the secrets (none configured: `None`); a failure is exit 69 and the app never starts.
fn load_secrets(plan: &Plan, health: Option<&Health>, dir: Option<&SecretsDir>) -> Result<Option<Resolved>, Fatal> {
    if plan.secrets.sources.is_empty() {
        return Ok(None);
    }
    if let Some(h) = health {
        h.state.loading_secrets();
    }
    let resolved = plan.secrets.resolve_blocking().map_err(|e| Fatal::new(Code::Secrets, e))?;
    if let Some(dir) = dir {
        if let Err(e) = dir.write_all(&resolved) {
            return Err(Fatal::internal(&format!("--secrets-dir {}", dir.path().display()), format!("{e:#}")));
        }
    }
    Ok(Some(resolved))
}

fn start_refresher(
    plan: &Plan,
    resolved: &Resolved,
    stop: std::sync::mpsc::Receiver<()>,
    secrets_dir: Option<Arc<SecretsDir>>,
) -> Result<ControlReceiver, Fatal> {
    let (interval, on_change) = plan.refresh.expect("called with a refresh interval");
    let (tx, rx) = control::channel().map_err(|e| Fatal::internal("cannot create the control pipe", e))?;
    let refresher = Refresher {
        cfg: plan.secrets.clone(),
        interval,
        on_change,
        no_override: plan.no_override,
        secrets_dir,
        last: refresh::snapshot(resolved),
        control: tx,
    };
    refresher.spawn(stop);
    info!(interval = %humantime::format_duration(interval), on_change = ?on_change, "refreshing secrets");
    Ok(rx)
}

fn supervise(
    plan: &Plan,
    spec: ChildSpec,
    handled: &SigSet,
    control: Option<ControlReceiver>,
    health: Option<&Health>,
    relays: Arc<Relays>,
) -> Result<supervisor::Outcome, Fatal> {
    let mut sup = Supervisor::new(&plan.supervise, spec, handled).map_err(|e| Fatal::internal("cannot set up signal handling (signalfd)", e))?;
    if let Some(rx) = control {
        sup = sup.with_control(rx);
    }
    if let Some(h) = health {
        sup = sup.with_events(h.state.as_ref());
    }
    // The relay's threads start once the app has run a moment: a short-lived command pays for none.
    sup = sup.when_settled(Duration::from_millis(100), move || relays.activate());
    // Once the app has been up a moment, give back the start-up code's pages (memory.rs).
    sup = sup.when_settled(Duration::from_secs(2), || {
        let released = crate::memory::release_startup_pages();
        tracing::debug!(bytes = released, "released start-up code mappings");
    });
    sup.run().map_err(|e| Fatal::new(e.code(), e))
}

/// The environment the app would get: the agent's own, without `removed`, with `secrets` on top.
fn app_env(secrets: &[(OsString, OsString)], removed: &[String]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    for (k, v) in secrets {
        if let (Some(k), Some(v)) = (k.to_str(), v.to_str()) {
            env.insert(k.to_string(), v.to_string());
        }
    }
    for k in removed {
        env.remove(k);
    }
    env
}
