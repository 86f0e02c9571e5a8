//! The agent's settings, layered flag > environment (`AGENT_*`) > config file > default and
//! validated once, at start, into plain typed values.
//!
//! clap already merges flags over environment variables; this module adds the TOML file under
//! them and the defaults under that. A bad value is reported with where it came from
//! (`--stop-timeout`, `AGENT_STOP_TIMEOUT` or the file's key) and what would fix it; an
//! unknown key in the file is rejected by name, so a typo never silently means "default".

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{Cli, LogFormat, LogLevel, RestartPolicy, RunArgs, SignalTarget};
use crate::signals::{Rewrite, RewriteTable};

pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(25);
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(2);
pub const DEFAULT_MAX_RESTARTS: u32 = 5;
pub const DEFAULT_RESTART_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: {message}")]
    Value { origin: String, message: String },
}

/// The config file. Keys are the long option names; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub log_format: Option<LogFormat>,
    pub log_level: Option<LogLevel>,
    pub stop_timeout: Option<String>,
    pub orphan_grace: Option<String>,
    pub signal_target: Option<SignalTarget>,
    pub rewrite_signal: Option<Vec<String>>,
    pub map_exit: Option<Vec<String>>,
    pub restart: Option<RestartPolicy>,
    pub max_restarts: Option<u32>,
    pub restart_backoff: Option<String>,
    pub health_url: Option<String>,
    pub health_tcp: Option<String>,
    pub health_status: Option<String>,
    pub health_host: Option<String>,
    pub health_body: Option<String>,
    pub health_interval: Option<String>,
    pub health_timeout: Option<String>,
    pub health_start_period: Option<String>,
    pub health_retries: Option<u32>,
    pub health_socket: Option<String>,
    pub wait_ready: Option<bool>,
    pub secrets: Option<Vec<String>>,
    pub secrets_file: Option<PathBuf>,
    pub container: Option<String>,
    pub ssm_path: Option<Vec<String>>,
    pub env_file: Option<PathBuf>,
    pub secrets_timeout: Option<String>,
    pub start_jitter: Option<String>,
    pub no_override: Option<bool>,
    pub secrets_dir: Option<PathBuf>,
    pub refresh_interval: Option<String>,
    pub on_change: Option<String>,
    pub xray_address: Option<String>,
    pub no_xray: Option<bool>,
    pub xray_flush_interval: Option<String>,
    pub xray_buffer: Option<String>,
    pub xray_rcvbuf: Option<String>,
    pub flush_timeout: Option<String>,
    pub otlp_address: Option<String>,
    pub otlp_grpc_address: Option<String>,
    pub statsd_address: Option<String>,
    pub no_otlp: Option<bool>,
    pub otlp_endpoint: Option<String>,
    pub otlp_header: Option<Vec<String>>,
    pub otlp_xray: Option<bool>,
    pub otlp_buffer: Option<String>,
    pub otlp_flush_interval: Option<String>,
    pub xray_to_otlp: Option<bool>,
    pub otlp_xray_segments: Option<bool>,
    pub proxy_url: Option<String>,
    pub role_arn: Option<String>,
    pub secrets_role_arn: Option<String>,
    pub xray_indexed_attributes: Option<Vec<String>>,
    pub keep_health_spans: Option<bool>,
    pub metrics_emf: Option<bool>,
    pub metrics_emf_namespace: Option<String>,
    pub health_exports_failing: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            // toml's message names the key and shows the line; keep it on one log line.
            message: e.to_string().lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(" | "),
        })
    }
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone)]
pub struct Global {
    pub log_format: LogFormat,
    pub log_level: LogLevel,
}

/// Everything `agent run` needs, validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub stop_timeout: Duration,
    pub orphan_grace: Duration,
    pub signal_target: SignalTarget,
    pub rewrites: RewriteTable,
    pub map_exit: Vec<(u8, u8)>,
    pub restart: RestartPolicy,
    pub max_restarts: u32,
    pub restart_backoff: Duration,
}

impl RunConfig {
    /// The exit code to report for the child's code, after `--map-exit`.
    pub fn map_exit(&self, code: u8) -> u8 {
        self.map_exit.iter().find(|(from, _)| *from == code).map_or(code, |(_, to)| *to)
    }
}

/// Reads the config file named by `--config`/`AGENT_CONFIG`, if any.
pub fn load_file(cli: &Cli) -> Result<FileConfig, ConfigError> {
    match &cli.config {
        Some(path) => FileConfig::load(path),
        None => Ok(FileConfig::default()),
    }
}

pub fn global(cli: &Cli, file: &FileConfig) -> Global {
    Global {
        log_format: cli.log_format.or(file.log_format).unwrap_or(LogFormat::Text),
        log_level: cli.log_level.or(file.log_level).unwrap_or(LogLevel::Info),
    }
}

/// Names a setting in error messages: its flag, its variable and its config file key.
#[derive(Debug, Clone)]
pub struct Key {
    flag: &'static str,
    env: String,
    file: &'static str,
}

impl Key {
    /// An `agent run` setting: `--stop-timeout`, `AGENT_STOP_TIMEOUT`, file key `stop-timeout`.
    pub fn run(flag: &'static str) -> Key {
        Key { flag, env: format!("AGENT_{}", flag.to_ascii_uppercase().replace('-', "_")), file: flag }
    }

    /// A setting whose flag differs from its file key (`agent health --url` is `health-url`).
    pub fn named(flag: &'static str, file: &'static str) -> Key {
        Key { flag, env: Key::run(file).env, file }
    }

    /// Where a value came from, for error messages: `--flag (or AGENT_X)` or the file's key.
    fn origin(&self, from_cli: bool) -> String {
        if from_cli {
            format!("--{} (or {})", self.flag, self.env)
        } else {
            format!("config file key {:?}", self.file)
        }
    }

    /// `--flag (AGENT_X)`, for messages about a setting regardless of where it was given.
    pub fn describe(&self) -> String {
        format!("--{} ({})", self.flag, self.env)
    }

    pub fn error(&self, from_cli: bool, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::Value { origin: self.origin(from_cli), message: message.to_string() }
    }
}

/// An IAM role's ARN, roughly checked: `arn:PARTITION:iam::ACCOUNT:role/NAME`.
pub fn parse_role_arn(s: &str) -> Result<String, String> {
    let s = s.trim();
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource.starts_with("role/") =>
        {
            Ok(s.to_string())
        }
        _ => Err(format!("{s:?} is not a role ARN like arn:aws:iam::111122223333:role/xray-writer")),
    }
}

/// Picks the flag/env value over the file's, and parses it with `parse`, naming the origin on error.
pub fn layered<T, E: std::fmt::Display>(
    key: Key,
    cli: Option<&String>,
    file: Option<&String>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, ConfigError> {
    let (raw, from_cli) = match (cli, file) {
        (Some(v), _) => (v, true),
        (None, Some(v)) => (v, false),
        (None, None) => return Ok(None),
    };
    parse(raw).map(Some).map_err(|e| key.error(from_cli, e))
}

fn layered_list<T, E: std::fmt::Display>(
    key: Key,
    cli: &[String],
    file: Option<&Vec<String>>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Vec<T>, ConfigError> {
    let (items, from_cli) = if !cli.is_empty() { (cli, true) } else { (file.map_or(&[][..], |v| v), false) };
    // An empty item (`--rewrite-signal ''`, `A,,B`) is refused, as dumb-init refuses an empty
    // rewrite: it is a typo more often than a wish for nothing.
    items.iter().map(|s| parse(s).map_err(|e| key.error(from_cli, e))).collect()
}

/// Parses durations the way people write them: `500ms`, `25s`, `5m`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration ({e}); write it like 500ms, 25s or 5m"))
}

/// A duration that must be more than 0 (intervals, timeouts).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).and_then(|d| if d.is_zero() { Err("must be more than 0".to_string()) } else { Ok(d) })
}

/// An address with an IP (not a name: nothing to resolve at start), like 127.0.0.1:2000.
pub fn parse_address(s: &str) -> Result<std::net::SocketAddr, String> {
    s.trim().parse().map_err(|_| format!("{s:?} is not HOST:PORT with an IP address, like 127.0.0.1:2000"))
}

/// Parses sizes: `8MiB`, `512KiB`, `4MB`, `1000000`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("{s:?} is not a size; write it like 8MiB, 512KiB or 1000000"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use B, KiB, MiB or GiB")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_map_exit(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("{s:?} is not FROM:TO with exit codes 0-255 (for example 143:0)");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    Ok((u8::from_str(a.trim()).map_err(|_| bad())?, u8::from_str(b.trim()).map_err(|_| bad())?))
}

pub fn run_config(args: &RunArgs, file: &FileConfig) -> Result<RunConfig, ConfigError> {
    let rewrites = layered_list(Key::run("rewrite-signal"), &args.rewrite_signal, file.rewrite_signal.as_ref(), Rewrite::from_str)?;
    Ok(RunConfig {
        stop_timeout: layered(Key::run("stop-timeout"), args.stop_timeout.as_ref(), file.stop_timeout.as_ref(), parse_duration)?
            .unwrap_or(DEFAULT_STOP_TIMEOUT),
        orphan_grace: layered(Key::run("orphan-grace"), args.orphan_grace.as_ref(), file.orphan_grace.as_ref(), parse_duration)?
            .unwrap_or(DEFAULT_ORPHAN_GRACE),
        signal_target: args.signal_target.or(file.signal_target).unwrap_or(SignalTarget::Child),
        rewrites: RewriteTable::new(&rewrites),
        map_exit: layered_list(Key::run("map-exit"), &args.map_exit, file.map_exit.as_ref(), parse_map_exit)?,
        restart: args.restart.or(file.restart).unwrap_or(RestartPolicy::Never),
        max_restarts: args.max_restarts.or(file.max_restarts).unwrap_or(DEFAULT_MAX_RESTARTS),
        restart_backoff: layered(Key::run("restart-backoff"), args.restart_backoff.as_ref(), file.restart_backoff.as_ref(), parse_duration)?
            .unwrap_or(DEFAULT_RESTART_BACKOFF),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["agent", "run"];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&["--", "true"]);
        match Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Run(r) => r,
            _ => unreachable!(),
        }
    }

    fn file(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(Path::new("agent.toml"), text)
    }

    #[test]
    fn defaults() {
        let c = run_config(&args(&[]), &FileConfig::default()).unwrap();
        assert_eq!(c.stop_timeout, Duration::from_secs(25));
        assert_eq!(c.orphan_grace, Duration::from_secs(2));
        assert_eq!(c.signal_target, SignalTarget::Child);
        assert_eq!(c.restart, RestartPolicy::Never);
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let f = file("stop-timeout = \"5m\"\norphan-grace = \"500ms\"\nmap-exit = [\"143:0\"]\n").unwrap();
        let c = run_config(&args(&["--stop-timeout", "10s"]), &f).unwrap();
        assert_eq!(c.stop_timeout, Duration::from_secs(10));
        assert_eq!(c.orphan_grace, Duration::from_millis(500));
        assert_eq!(c.map_exit(143), 0);
        assert_eq!(c.map_exit(1), 1);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = file("stop-timout = \"5s\"\n").unwrap_err().to_string();
        assert!(err.contains("agent.toml") && err.contains("stop-timout"), "{err}");
    }

    #[test]
    fn bad_values_name_their_origin() {
        let err = run_config(&args(&["--stop-timeout", "soon"]), &FileConfig::default()).unwrap_err().to_string();
        assert!(err.contains("--stop-timeout") && err.contains("AGENT_STOP_TIMEOUT") && err.contains("25s"), "{err}");
        let f = file("map-exit = [\"143:zero\"]").unwrap();
        let err = run_config(&args(&[]), &f).unwrap_err().to_string();
        assert!(err.contains("config file key \"map-exit\"") && err.contains("143:zero"), "{err}");
    }
}
