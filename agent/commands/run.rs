//! `agent run [OPTIONS] -- CMD [ARGS...]`: validate the settings, then supervise CMD.

use std::process::ExitCode;

use anyhow::Context;
use nix::sys::signal::SigSet;
use tracing::{error, info};

use crate::cli::{RunArgs, AGENT_ENV_VARS};
use crate::config::{self, FileConfig};
use crate::exit::Code;
use crate::health;
use crate::config::{layered, parse_duration, parse_size, Key};
use crate::otlp;
use crate::traces;
use crate::secrets::refresh::{self, OnChange, Refresher};
use crate::secrets;
use crate::supervisor::{self, ChildSpec, Supervisor};

/// The X-Ray receiver's settings, or `None` with `--no-xray`.
fn xray_config(args: &RunArgs, file: &FileConfig) -> anyhow::Result<Option<traces::XrayConfig>> {
    if args.no_xray || file.no_xray.unwrap_or(false) {
        return Ok(None);
    }
    let address = layered(Key::run("xray-address"), args.xray_address.as_ref(), file.xray_address.as_ref(), |s| {
        s.trim().parse::<std::net::SocketAddr>().map_err(|_| format!("{s:?} is not HOST:PORT with an IP address, like 127.0.0.1:2000"))
    })?
    .unwrap_or_else(|| traces::DEFAULT_ADDRESS.parse().expect("valid default"));
    let positive = |s: &str| parse_duration(s).and_then(|d| if d.is_zero() { Err("must be more than 0".to_string()) } else { Ok(d) });
    Ok(Some(traces::XrayConfig {
        address,
        flush_interval: layered(Key::run("xray-flush-interval"), args.xray_flush_interval.as_ref(), file.xray_flush_interval.as_ref(), positive)?
            .unwrap_or(std::time::Duration::from_secs(1)),
        buffer: layered(Key::run("xray-buffer"), args.xray_buffer.as_ref(), file.xray_buffer.as_ref(), parse_size)?.unwrap_or(4 << 20),
        rcvbuf: layered(Key::run("xray-rcvbuf"), args.xray_rcvbuf.as_ref(), file.xray_rcvbuf.as_ref(), parse_size)?.unwrap_or(4 << 20),
    }))
}

/// `handled` is the signal set `main` blocked before anything else happened.
pub fn run(args: &RunArgs, file: &FileConfig, handled: &SigSet) -> anyhow::Result<ExitCode> {
    let cfg = config::run_config(args, file)?;
    let health_cfg = health::settings::run_config(&args.health, file)?;
    let secrets_cfg = secrets::settings::config(&args.secrets, file)?;
    let no_override = args.no_override || file.no_override.unwrap_or(false);
    let secrets_dir = args.secrets_dir.clone().or_else(|| file.secrets_dir.clone());
    let refresh_interval = layered(Key::run("refresh-interval"), args.refresh_interval.as_ref(), file.refresh_interval.as_ref(), |s| {
        parse_duration(s).and_then(|d| if d.is_zero() { Err("must be more than 0".to_string()) } else { Ok(d) })
    })?;
    let on_change = layered(Key::run("on-change"), args.on_change.as_ref(), file.on_change.as_ref(), |s| s.parse::<OnChange>())?
        .unwrap_or(OnChange::Restart);
    let xray_cfg = xray_config(args, file)?;
    let otlp_settings = otlp::settings::config(args, file)?;
    let flush_timeout = layered(Key::run("flush-timeout"), args.flush_timeout.as_ref(), file.flush_timeout.as_ref(), parse_duration)?
        .unwrap_or(std::time::Duration::from_secs(4));
    let exports_failing = health_cfg.exports_failing;
    supervisor::adopt_orphans();
    let traces = xray_cfg.and_then(traces::start).map(std::sync::Arc::new);
    let health = health::start(health_cfg)?;
    if let (Some(h), Some(t), Some(limit)) = (&health, &traces, exports_failing) {
        h.state.watch_exports("X-Ray", t.health.clone(), limit);
    }

    let mut control = None;
    let xray_env = traces.as_ref().and(args.xray_address.as_ref().or(file.xray_address.as_ref())).cloned();
    // Dropped when `run` returns, which stops the refresher.
    let (_refresh_stop, refresh_stop_rx) = std::sync::mpsc::channel::<()>();
    let mut spec = ChildSpec::new(&args.command);
    spec.env_remove = AGENT_ENV_VARS.iter().map(|s| s.to_string()).collect();
    if let Some(addr) = xray_env.filter(|a| a.trim() != traces::DEFAULT_ADDRESS) {
        // The SDKs read host:port for both the UDP segments and the TCP sampling endpoint.
        spec.env_fixed.push(("AWS_XRAY_DAEMON_ADDRESS".into(), addr.trim().into()));
    }
    if refresh_interval.is_some() && secrets_cfg.sources.is_empty() {
        tracing::warn!("--refresh-interval is set but no secrets are configured; nothing to refresh");
    }
    if !secrets_cfg.sources.is_empty() {
        if let Some(h) = &health {
            h.state.loading_secrets();
        }
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
        spec.env = secrets::child_env(&resolved, no_override);
        if let Some(interval) = refresh_interval {
            let (tx, rx) = supervisor::control::channel().context("cannot create the control pipe")?;
            control = Some(rx);
            let refresher = Refresher {
                cfg: secrets_cfg.clone(),
                interval,
                on_change,
                no_override,
                secrets_dir: secrets_dir.clone(),
                last: refresh::snapshot(&resolved),
                control: tx,
            };
            refresher.spawn(refresh_stop_rx);
            info!(interval = %humantime::format_duration(interval), on_change = ?on_change, "refreshing secrets");
        }
    }

    // OTLP: the upstreams may come from the secrets (the Honeycomb key), so they are read now.
    let mut otlp_configured = false;
    let relay = match &otlp_settings {
        Some(settings) => match settings.upstreams(&otlp::app_env(&spec.env, &spec.env_remove)) {
            Ok(upstreams) if upstreams.is_empty() => None,
            Ok(upstreams) => {
                otlp_configured = true;
                otlp::start(settings, upstreams).inspect(|_| {
                    let (set, remove) = settings.child_env();
                    spec.env_remove.extend(remove);
                    spec.env_fixed.extend(set.into_iter().map(|(k, v)| (k.into(), v.into())));
                })
            }
            Err(e) => {
                error!(code = Code::Config.as_u8(), "{e}");
                return Ok(Code::Config.into());
            }
        },
        None => None,
    };
    if args.xray_to_otlp || file.xray_to_otlp.unwrap_or(false) {
        match (&traces, &relay) {
            (Some(t), Some(r)) => {
                t.relay_to_otlp(r.ingest.clone());
                info!("X-Ray segments go to the OTLP upstreams as spans (--xray-to-otlp)");
            }
            (None, _) => tracing::warn!("--xray-to-otlp: X-Ray reception is off (--no-xray or its address is taken); nothing to convert"),
            (Some(_), None) if otlp_settings.is_none() => {
                error!(code = Code::Config.as_u8(), "--xray-to-otlp needs the OTLP relay, which --no-otlp turns off");
                return Ok(Code::Config.into());
            }
            (Some(_), None) if otlp_configured => {
                tracing::warn!("--xray-to-otlp: the OTLP relay is not running (see above), so X-Ray segments go to PutTraceSegments");
            }
            (Some(_), None) => {
                error!(code = Code::Config.as_u8(), "--xray-to-otlp needs an OTLP upstream: set OTEL_EXPORTER_OTLP_ENDPOINT, --otlp-endpoint or --otlp-xray");
                return Ok(Code::Config.into());
            }
        }
    }
    if let (Some(h), Some(r), Some(limit)) = (&health, &relay, exports_failing) {
        for (name, exports) in r.health() {
            h.state.watch_exports(&name, exports, limit);
        }
    }

    let mut sup = Supervisor::new(&cfg, spec, handled).context("cannot set up signal handling (signalfd)")?;
    if let Some(rx) = control {
        sup = sup.with_control(rx);
    }
    if let Some(h) = &health {
        sup = sup.with_events(h.state.as_ref());
    }
    // Trace threads start once the app has run a moment: a short-lived command pays for none.
    if let Some(t) = traces.clone() {
        sup = sup.when_settled(std::time::Duration::from_millis(100), move || t.activate());
    }
    // Once the app has been up a moment, give back the start-up code's pages (memory.rs).
    sup = sup.when_settled(std::time::Duration::from_secs(2), || {
        let released = crate::memory::release_startup_pages();
        tracing::debug!(bytes = released, "released start-up code mappings");
    });
    let result = sup.run();
    // The app and everything it started are gone: send what traces are left (X-Ray and OTLP
    // at once, each within the flush timeout), then exit.
    if let Some(r) = &relay {
        r.begin_shutdown(flush_timeout);
    }
    if let Some(t) = traces.and_then(|t| std::sync::Arc::try_unwrap(t).ok()) {
        t.shutdown(flush_timeout);
    }
    if let Some(r) = relay {
        r.finish();
    }
    match result {
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
