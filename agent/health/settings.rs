//! Health settings for `agent run` and `agent health`, layered like every other setting.
//!
//! Both commands build their probe here, from the same variables (`AGENT_HEALTH_URL`, ...), so
//! the supervisor and the direct fallback of `agent health` always probe the same thing.

use std::time::Duration;

use healthcheck::{HttpProbe, Probe, StatusSet, TcpProbe};

use super::socket::SocketName;
use crate::cli::{HealthArgs, HealthRunArgs};
use crate::config::{layered, parse_duration, parse_positive_duration, ConfigError, FileConfig, Key};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_RETRIES: u32 = 3;

/// The supervisor's health settings, validated.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub probe: Option<Probe>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
    /// Where to serve health; `None` when neither a probe nor a socket was configured.
    pub serve_on: Option<SocketName>,
    pub wait_ready: bool,
    /// Trace exports failing for longer than this make the app unhealthy.
    pub exports_failing: Option<Duration>,
}

/// `agent health`'s settings, validated.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub probe: Option<Probe>,
    pub socket: SocketName,
    pub timeout: Duration,
}

/// The five probe settings, as given on the command line (flag or variable) and in the file.
struct ProbeInput<'a> {
    keys: [Key; 5],
    cli: [Option<&'a String>; 5],
    file: [Option<&'a String>; 5],
}

fn build_probe(i: ProbeInput) -> Result<Option<Probe>, ConfigError> {
    let [url_k, tcp_k, status_k, host_k, body_k] = i.keys;
    let url = layered(url_k.clone(), i.cli[0], i.file[0], |s| HttpProbe::new(s.trim()))?;
    let tcp = layered(tcp_k.clone(), i.cli[1], i.file[1], |s| TcpProbe::new(s.trim()))?;
    let status = layered(status_k.clone(), i.cli[2], i.file[2], |s| s.parse::<StatusSet>())?;
    let host = layered(host_k, i.cli[3], i.file[3], |s| Ok::<_, String>(s.to_string()))?;
    let body = layered(body_k, i.cli[4], i.file[4], |s| Ok::<_, String>(s.to_string()))?;
    match (url, tcp) {
        (Some(_), Some(_)) => Err(ConfigError::Value {
            origin: format!("{} and {}", url_k.describe(), tcp_k.describe()),
            message: "both are set: probe either a URL or a TCP address, not both".into(),
        }),
        (Some(mut http), None) => {
            if let Some(s) = status {
                http = http.statuses(s);
            }
            if let Some(h) = host {
                http = http.host(h);
            }
            if let Some(b) = body {
                http = http.body_contains(b);
            }
            Ok(Some(Probe::Http(http)))
        }
        (None, Some(tcp)) => Ok(Some(Probe::Tcp(tcp))),
        (None, None) => Ok(None),
    }
}

pub fn run_config(a: &HealthRunArgs, f: &FileConfig) -> Result<HealthConfig, ConfigError> {
    let probe = build_probe(ProbeInput {
        keys: ["health-url", "health-tcp", "health-status", "health-host", "health-body"].map(Key::run),
        cli: [&a.health_url, &a.health_tcp, &a.health_status, &a.health_host, &a.health_body].map(Option::as_ref),
        file: [&f.health_url, &f.health_tcp, &f.health_status, &f.health_host, &f.health_body].map(Option::as_ref),
    })?;
    let dur =
        |k: &'static str, cli: &Option<String>, file: &Option<String>| layered(Key::run(k), cli.as_ref(), file.as_ref(), parse_positive_duration);
    let retries = a.health_retries.or(f.health_retries).unwrap_or(DEFAULT_RETRIES);
    if retries == 0 {
        return Err(Key::run("health-retries").error(a.health_retries.is_some(), "must be at least 1"));
    }
    let exports_failing =
        layered(Key::run("health-exports-failing"), a.health_exports_failing.as_ref(), f.health_exports_failing.as_ref(), parse_duration)?;
    let socket = a.health_socket.as_ref().or(f.health_socket.as_ref()).map(|s| SocketName::parse(s));
    let serve_on = match (&probe, socket) {
        (_, Some(s)) => Some(s),
        (None, None) if exports_failing.is_none() => None,
        _ => Some(SocketName::default_name()),
    };
    Ok(HealthConfig {
        probe,
        interval: dur("health-interval", &a.health_interval, &f.health_interval)?.unwrap_or(DEFAULT_INTERVAL),
        timeout: dur("health-timeout", &a.health_timeout, &f.health_timeout)?.unwrap_or(DEFAULT_TIMEOUT),
        start_period: layered(Key::run("health-start-period"), a.health_start_period.as_ref(), f.health_start_period.as_ref(), parse_duration)?
            .unwrap_or(Duration::ZERO),
        retries,
        serve_on,
        wait_ready: a.wait_ready || f.wait_ready.unwrap_or(false),
        exports_failing,
    })
}

pub fn client_config(a: &HealthArgs, f: &FileConfig) -> Result<ClientConfig, ConfigError> {
    let probe = build_probe(ProbeInput {
        keys: [
            Key::named("url", "health-url"),
            Key::named("tcp", "health-tcp"),
            Key::named("status", "health-status"),
            Key::named("host", "health-host"),
            Key::named("body", "health-body"),
        ],
        cli: [&a.url, &a.tcp, &a.status, &a.host, &a.body].map(Option::as_ref),
        file: [&f.health_url, &f.health_tcp, &f.health_status, &f.health_host, &f.health_body].map(Option::as_ref),
    })?;
    let socket = a.socket.as_ref().or(f.health_socket.as_ref()).map_or_else(SocketName::default_name, |s| SocketName::parse(s));
    let timeout = layered(Key::named("timeout", "health-timeout"), a.timeout.as_ref(), f.health_timeout.as_ref(), parse_positive_duration)?
        .unwrap_or(DEFAULT_TIMEOUT);
    Ok(ClientConfig { probe, socket, timeout })
}
