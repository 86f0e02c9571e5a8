//! The command line, declared once with clap's derive API.
//!
//! Every option can also be set by an `AGENT_*` environment variable (clap shows it in
//! `--help`), and most by a key of the same name in the TOML config file. Options are
//! `Option<_>` here so that `config.rs` can tell "not given" from "given the default" and layer
//! flag > env > file > default. Values are only shaped here; meaning is checked in `config.rs`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "agent",
    version,
    about = "Container entrypoint: runs your app as a correct PID 1, with secrets, health checks and trace forwarding",
    after_help = "Exit codes: the child's own code (128+N if it died of signal N); 64 usage, 70 internal, \
                  78 config, 126 cannot execute, 127 not found. See the README for the full table."
)]
pub struct Cli {
    /// TOML config file; its keys are the long option names (for example `stop-timeout = "25s"`).
    #[arg(long, global = true, env = "AGENT_CONFIG", hide_env_values = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Format of the agent's own log lines on stderr [default: text]
    #[arg(long, global = true, env = "AGENT_LOG_FORMAT", hide_env_values = true, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Least severe level of the agent's own log lines [default: info]
    #[arg(long, global = true, env = "AGENT_LOG_LEVEL", hide_env_values = true, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the `run` variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run CMD as the supervised child: forward signals, reap zombies, stop within a deadline.
    Run(RunArgs),
    /// The container health check: exit 0 when healthy, 1 when not.
    Health(HealthArgs),
    /// Resolve the secrets as `run` would and print, per variable, its name, source, version and
    /// the first 8 hex characters of its value's SHA-256 — never the value.
    Env(EnvArgs),
    /// Print the agent's version and build.
    Version,
}

/// Where the child's secrets come from (shared by `run` and `env`).
#[derive(Debug, Args)]
pub struct SecretsArgs {
    /// Set NAME from VALUEFROM, an SSM parameter name or ARN or a Secrets Manager ARN, as in an ECS
    /// task definition; NAME? makes it optional (repeatable; env: one per line or comma-separated)
    #[arg(long = "secret", env = "AGENT_SECRETS", hide_env_values = true, value_name = "NAME=VALUEFROM", value_delimiter = ',')]
    pub secrets: Vec<String>,

    /// ECS JSON: a `secrets` array, a container definition, or a whole task definition
    /// (register-task-definition input or describe-task-definition output); a container's
    /// `environment` applies too
    #[arg(long, env = "AGENT_SECRETS_FILE", hide_env_values = true, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,

    /// The container of the --secrets-file task definition to take (needed when it has several)
    #[arg(long, env = "AGENT_CONTAINER", hide_env_values = true, value_name = "NAME")]
    pub container: Option<String>,

    /// Every SSM parameter under PATH, recursively, named by its last segment; PATH? may be empty (repeatable)
    #[arg(long, env = "AGENT_SSM_PATH", hide_env_values = true, value_name = "PATH", value_delimiter = ',')]
    pub ssm_path: Vec<String>,

    /// A dotenv file, for local development with no AWS
    #[arg(long, env = "AGENT_ENV_FILE", hide_env_values = true, value_name = "FILE")]
    pub env_file: Option<PathBuf>,

    /// Give up fetching secrets after this long, retries included [default: 60s]
    #[arg(long, env = "AGENT_SECRETS_TIMEOUT", hide_env_values = true, value_name = "DURATION")]
    pub secrets_timeout: Option<String>,

    /// Wait a random time up to this long before fetching, so a fleet does not start at once [default: 0s]
    #[arg(long, env = "AGENT_START_JITTER", hide_env_values = true, value_name = "DURATION")]
    pub start_jitter: Option<String>,

    /// Send every outbound call (AWS, OTLP upstreams) through this http:// proxy [default: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY with NO_PROXY]
    #[arg(long, env = "AGENT_PROXY_URL", hide_env_values = true, value_name = "URL")]
    pub proxy_url: Option<String>,

    /// Fetch secrets with this role's credentials (sts:AssumeRole with the task role) [default: the task role]
    #[arg(long, env = "AGENT_SECRETS_ROLE_ARN", hide_env_values = true, value_name = "ARN")]
    pub secrets_role_arn: Option<String>,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    #[command(flatten)]
    pub secrets: SecretsArgs,
}

#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// How long to wait after forwarding SIGTERM/SIGINT before SIGKILL of everything left [default: 25s]
    #[arg(long, env = "AGENT_STOP_TIMEOUT", hide_env_values = true, value_name = "DURATION")]
    pub stop_timeout: Option<String>,

    /// After the child exits on its own, how long its leftover descendants get between SIGTERM and SIGKILL [default: 2s]
    #[arg(long, env = "AGENT_ORPHAN_GRACE", hide_env_values = true, value_name = "DURATION")]
    pub orphan_grace: Option<String>,

    /// Who receives forwarded signals: the child only, or the child's whole process group [default: child]
    #[arg(long, env = "AGENT_SIGNAL_TARGET", hide_env_values = true, value_name = "TARGET")]
    pub signal_target: Option<SignalTarget>,

    /// Rewrite a forwarded signal, FROM:TO, where TO may be `drop` (repeatable; env: comma-separated)
    #[arg(long, env = "AGENT_REWRITE_SIGNAL", hide_env_values = true, value_name = "FROM:TO", value_delimiter = ',')]
    pub rewrite_signal: Vec<String>,

    /// Report the child's exit code FROM as TO, for example 143:0 (repeatable; env: comma-separated)
    #[arg(long, env = "AGENT_MAP_EXIT", hide_env_values = true, value_name = "FROM:TO", value_delimiter = ',')]
    pub map_exit: Vec<String>,

    /// Restart the child when it fails on its own; never after a stop the agent was asked for [default: never]
    #[arg(long, env = "AGENT_RESTART", hide_env_values = true, value_name = "POLICY")]
    pub restart: Option<RestartPolicy>,

    /// With --restart on-failure: how many restarts at most [default: 5]
    #[arg(long, env = "AGENT_MAX_RESTARTS", hide_env_values = true, value_name = "N")]
    pub max_restarts: Option<u32>,

    /// With --restart on-failure: the first delay, doubled after each restart up to 1m [default: 1s]
    #[arg(long, env = "AGENT_RESTART_BACKOFF", hide_env_values = true, value_name = "DURATION")]
    pub restart_backoff: Option<String>,

    #[command(flatten)]
    pub secrets: SecretsArgs,

    /// Keep inherited variables that a secret of the same name would override
    #[arg(long, env = "AGENT_NO_OVERRIDE", hide_env_values = true)]
    pub no_override: bool,

    /// Also write each secret to DIR/NAME (mode 0400), for apps that read secrets from files
    #[arg(long, env = "AGENT_SECRETS_DIR", hide_env_values = true, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,

    /// Re-read the secrets this often (±10%) and act on a change per --on-change [default: off]
    #[arg(long, env = "AGENT_REFRESH_INTERVAL", hide_env_values = true, value_name = "DURATION")]
    pub refresh_interval: Option<String>,

    /// On a secrets change: restart (graceful stop, start with new values), signal:SIG, or exit [default: restart]
    #[arg(long, env = "AGENT_ON_CHANGE", hide_env_values = true, value_name = "ACTION")]
    pub on_change: Option<String>,

    /// Receive X-Ray SDK segments (UDP) on this address, as the X-Ray daemon does [default: 127.0.0.1:2000]
    #[arg(long, env = "AGENT_XRAY_ADDRESS", hide_env_values = true, value_name = "HOST:PORT")]
    pub xray_address: Option<String>,

    /// Do not receive or forward X-Ray segments
    #[arg(long, env = "AGENT_NO_XRAY", hide_env_values = true)]
    pub no_xray: bool,

    /// Send a partial batch of segments after this long [default: 1s]
    #[arg(long, env = "AGENT_XRAY_FLUSH_INTERVAL", hide_env_values = true, value_name = "DURATION")]
    pub xray_flush_interval: Option<String>,

    /// Memory for segments X-Ray has not taken yet; the oldest are dropped beyond it [default: 4MiB]
    #[arg(long, env = "AGENT_XRAY_BUFFER", hide_env_values = true, value_name = "SIZE")]
    pub xray_buffer: Option<String>,

    /// The UDP socket's receive buffer, so bursts are not dropped by the kernel [default: 4MiB]
    #[arg(long, env = "AGENT_XRAY_RCVBUF", hide_env_values = true, value_name = "SIZE")]
    pub xray_rcvbuf: Option<String>,

    /// Receive OTLP (HTTP, and gRPC too) on this address and relay it upstream [default: 127.0.0.1:4318]
    #[arg(long, env = "AGENT_OTLP_ADDRESS", hide_env_values = true, value_name = "HOST:PORT")]
    pub otlp_address: Option<String>,

    /// Receive StatsD (UDP) on this address into the metrics path, when metrics go somewhere [default: 127.0.0.1:8125]
    #[arg(long, env = "AGENT_STATSD_ADDRESS", hide_env_values = true, value_name = "HOST:PORT")]
    pub statsd_address: Option<String>,

    /// Receive OTLP/gRPC on this address too [default: 127.0.0.1:4317]
    #[arg(long, env = "AGENT_OTLP_GRPC_ADDRESS", hide_env_values = true, value_name = "HOST:PORT")]
    pub otlp_grpc_address: Option<String>,

    /// Do not relay OTLP, even when an upstream is configured (the app's OTEL_* variables are left alone)
    #[arg(long, env = "AGENT_NO_OTLP", hide_env_values = true)]
    pub no_otlp: bool,

    /// Relay OTLP spans to this base URL (/v1/traces is appended), as OTEL_EXPORTER_OTLP_ENDPOINT does
    #[arg(long, env = "AGENT_OTLP_ENDPOINT", hide_env_values = true, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// A header for the OTLP upstream (repeatable); ${NAME} takes NAME from the environment or the secrets
    #[arg(long = "otlp-header", env = "AGENT_OTLP_HEADERS", hide_env_values = true, value_name = "NAME=VALUE", value_delimiter = ',')]
    pub otlp_headers: Vec<String>,

    /// Relay OTLP spans to X-Ray's OTLP endpoint, signed with the task role (SigV4)
    #[arg(long, env = "AGENT_OTLP_XRAY", hide_env_values = true)]
    pub otlp_xray: bool,

    /// Memory for spans an upstream has not taken yet (each upstream); the oldest are dropped beyond it [default: 4MiB]
    #[arg(long, env = "AGENT_OTLP_BUFFER", hide_env_values = true, value_name = "SIZE")]
    pub otlp_buffer: Option<String>,

    /// Send a partial batch of spans after this long [default: 1s]
    #[arg(long, env = "AGENT_OTLP_FLUSH_INTERVAL", hide_env_values = true, value_name = "DURATION")]
    pub otlp_flush_interval: Option<String>,

    /// Send the X-Ray segments the app sends (UDP) to the OTLP upstreams, as OTLP spans, instead of PutTraceSegments
    #[arg(long, env = "AGENT_XRAY_TO_OTLP", hide_env_values = true)]
    pub xray_to_otlp: bool,

    /// Send the app's OTLP spans to X-Ray as segment documents (PutTraceSegments), as ADOT's awsxray exporter does; no Transaction Search needed
    #[arg(long, env = "AGENT_OTLP_XRAY_SEGMENTS", hide_env_values = true)]
    pub otlp_xray_segments: bool,

    /// With --otlp-xray-segments: span attributes that become X-Ray annotations (indexed, searchable), comma-separated; `*` for all [default: none]
    #[arg(long, env = "AGENT_XRAY_INDEXED_ATTRIBUTES", hide_env_values = true, value_name = "NAMES", value_delimiter = ',')]
    pub xray_indexed_attributes: Vec<String>,

    /// Make the trace calls (PutTraceSegments, sampling, X-Ray's OTLP endpoint) with this role's credentials (sts:AssumeRole with the task role), for another account's X-Ray
    #[arg(long, env = "AGENT_ROLE_ARN", hide_env_values = true, value_name = "ARN")]
    pub role_arn: Option<String>,

    /// Write the app's OTLP metrics to stdout as CloudWatch Embedded Metric Format lines (the awslogs driver ships them; CloudWatch extracts the metrics)
    #[arg(long, env = "AGENT_METRICS_EMF", hide_env_values = true)]
    pub metrics_emf: bool,

    /// The CloudWatch namespace of --metrics-emf [default: the resource's service.namespace/service.name]
    #[arg(long, env = "AGENT_METRICS_EMF_NAMESPACE", hide_env_values = true, value_name = "NAME")]
    pub metrics_emf_namespace: Option<String>,

    /// Relay the spans and segments of the agent's own health probe too (dropped and counted as filtered by default)
    #[arg(long, env = "AGENT_KEEP_HEALTH_SPANS", hide_env_values = true)]
    pub keep_health_spans: bool,

    /// After the app has exited, how long the agent may spend sending what traces it still holds [default: 4s]
    #[arg(long, env = "AGENT_FLUSH_TIMEOUT", hide_env_values = true, value_name = "DURATION")]
    pub flush_timeout: Option<String>,

    #[command(flatten)]
    pub health: HealthRunArgs,

    /// The program to run and its arguments (put them after `--`)
    #[arg(required = true, num_args = 1.., value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// The supervisor's health probing (`agent run`). The probe options share their variables with
/// `agent health`, so one `AGENT_HEALTH_URL` in a task definition configures both.
#[derive(Debug, Args)]
pub struct HealthRunArgs {
    /// Probe the app with GET URL (plain http), for example http://127.0.0.1:4567/api/health-check
    #[arg(long, env = "AGENT_HEALTH_URL", hide_env_values = true, value_name = "URL", conflicts_with = "health_tcp")]
    pub health_url: Option<String>,

    /// Probe the app by connecting to HOST:PORT
    #[arg(long, env = "AGENT_HEALTH_TCP", hide_env_values = true, value_name = "HOST:PORT")]
    pub health_tcp: Option<String>,

    /// HTTP statuses that count as healthy, like 200-399 or 200,204 [default: 200-399]
    #[arg(long, env = "AGENT_HEALTH_STATUS", hide_env_values = true, value_name = "SET")]
    pub health_status: Option<String>,

    /// Host header for the HTTP probe [default: the URL's host]
    #[arg(long, env = "AGENT_HEALTH_HOST", hide_env_values = true, value_name = "HOST")]
    pub health_host: Option<String>,

    /// Text the HTTP probe's response body must contain
    #[arg(long, env = "AGENT_HEALTH_BODY", hide_env_values = true, value_name = "TEXT")]
    pub health_body: Option<String>,

    /// Time between probes once the app has passed one [default: 10s]
    #[arg(long, env = "AGENT_HEALTH_INTERVAL", hide_env_values = true, value_name = "DURATION")]
    pub health_interval: Option<String>,

    /// How long one probe may take [default: 2s]
    #[arg(long, env = "AGENT_HEALTH_TIMEOUT", hide_env_values = true, value_name = "DURATION")]
    pub health_timeout: Option<String>,

    /// Failures before the app's first passing probe, within this time, do not count [default: 0s]
    #[arg(long, env = "AGENT_HEALTH_START_PERIOD", hide_env_values = true, value_name = "DURATION")]
    pub health_start_period: Option<String>,

    /// Consecutive counted failures that make the app unhealthy [default: 3]
    #[arg(long, env = "AGENT_HEALTH_RETRIES", hide_env_values = true, value_name = "N")]
    pub health_retries: Option<u32>,

    /// Where the supervisor serves its health state: an abstract socket NAME, or a /PATH
    /// [default: agent-health-<pid namespace id>; served when a probe is set or this is given]
    #[arg(long, env = "AGENT_HEALTH_SOCKET", hide_env_values = true, value_name = "NAME")]
    pub health_socket: Option<String>,

    /// Unhealthy when trace exports have failed for longer than this [default: off]
    #[arg(long, env = "AGENT_HEALTH_EXPORTS_FAILING", hide_env_values = true, value_name = "DURATION")]
    pub health_exports_failing: Option<String>,

    /// Probe every 100 ms until the first pass and log `ready after N ms`
    #[arg(long, env = "AGENT_WAIT_READY", hide_env_values = true)]
    pub wait_ready: bool,
}

/// `agent health`: ask the running supervisor; with none, probe directly.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Probe GET URL directly when no supervisor answers
    #[arg(long, env = "AGENT_HEALTH_URL", hide_env_values = true, value_name = "URL", conflicts_with = "tcp")]
    pub url: Option<String>,

    /// Probe HOST:PORT directly when no supervisor answers
    #[arg(long, env = "AGENT_HEALTH_TCP", hide_env_values = true, value_name = "HOST:PORT")]
    pub tcp: Option<String>,

    /// HTTP statuses that count as healthy for the direct probe [default: 200-399]
    #[arg(long, env = "AGENT_HEALTH_STATUS", hide_env_values = true, value_name = "SET")]
    pub status: Option<String>,

    /// Host header for the direct HTTP probe
    #[arg(long, env = "AGENT_HEALTH_HOST", hide_env_values = true, value_name = "HOST")]
    pub host: Option<String>,

    /// Text the direct probe's response body must contain
    #[arg(long, env = "AGENT_HEALTH_BODY", hide_env_values = true, value_name = "TEXT")]
    pub body: Option<String>,

    /// The supervisor's health socket (as given to `agent run`)
    #[arg(long, env = "AGENT_HEALTH_SOCKET", hide_env_values = true, value_name = "NAME")]
    pub socket: Option<String>,

    /// Answer within this time, whatever happens [default: 2s]
    #[arg(long, env = "AGENT_HEALTH_TIMEOUT", hide_env_values = true, value_name = "DURATION")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignalTarget {
    /// Only the child process (gunicorn's master then tells its workers itself)
    Child,
    /// The child's whole process group
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Never,
    OnFailure,
}

/// Every `AGENT_*` variable the agent reads. They configure the agent, not the app, so the
/// child does not inherit them. A constant, so `agent run` does not build clap's command tree a
/// second time at start-up; a test keeps it equal to the clap definitions.
pub const AGENT_ENV_VARS: &[&str] = &[
    "AGENT_HEALTH_EXPORTS_FAILING",
    "AGENT_XRAY_ADDRESS",
    "AGENT_NO_XRAY",
    "AGENT_XRAY_FLUSH_INTERVAL",
    "AGENT_XRAY_BUFFER",
    "AGENT_XRAY_RCVBUF",
    "AGENT_FLUSH_TIMEOUT",
    "AGENT_OTLP_ADDRESS",
    "AGENT_OTLP_GRPC_ADDRESS",
    "AGENT_STATSD_ADDRESS",
    "AGENT_NO_OTLP",
    "AGENT_OTLP_ENDPOINT",
    "AGENT_OTLP_HEADERS",
    "AGENT_OTLP_XRAY",
    "AGENT_OTLP_BUFFER",
    "AGENT_OTLP_FLUSH_INTERVAL",
    "AGENT_XRAY_TO_OTLP",
    "AGENT_OTLP_XRAY_SEGMENTS",
    "AGENT_XRAY_INDEXED_ATTRIBUTES",
    "AGENT_ROLE_ARN",
    "AGENT_SECRETS_ROLE_ARN",
    "AGENT_PROXY_URL",
    "AGENT_KEEP_HEALTH_SPANS",
    "AGENT_METRICS_EMF",
    "AGENT_METRICS_EMF_NAMESPACE",
    "AGENT_CONFIG",
    "AGENT_LOG_FORMAT",
    "AGENT_LOG_LEVEL",
    "AGENT_SECRETS",
    "AGENT_SECRETS_FILE",
    "AGENT_CONTAINER",
    "AGENT_SSM_PATH",
    "AGENT_ENV_FILE",
    "AGENT_SECRETS_TIMEOUT",
    "AGENT_START_JITTER",
    "AGENT_STOP_TIMEOUT",
    "AGENT_ORPHAN_GRACE",
    "AGENT_SIGNAL_TARGET",
    "AGENT_REWRITE_SIGNAL",
    "AGENT_MAP_EXIT",
    "AGENT_RESTART",
    "AGENT_MAX_RESTARTS",
    "AGENT_RESTART_BACKOFF",
    "AGENT_NO_OVERRIDE",
    "AGENT_SECRETS_DIR",
    "AGENT_REFRESH_INTERVAL",
    "AGENT_ON_CHANGE",
    "AGENT_HEALTH_URL",
    "AGENT_HEALTH_TCP",
    "AGENT_HEALTH_STATUS",
    "AGENT_HEALTH_HOST",
    "AGENT_HEALTH_BODY",
    "AGENT_HEALTH_INTERVAL",
    "AGENT_HEALTH_TIMEOUT",
    "AGENT_HEALTH_START_PERIOD",
    "AGENT_HEALTH_RETRIES",
    "AGENT_HEALTH_SOCKET",
    "AGENT_WAIT_READY",
];

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The `AGENT_*` variables as clap declares them.
    fn declared_env_vars() -> Vec<String> {
        fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if let Some(env) = arg.get_env() {
                    let name = env.to_string_lossy().into_owned();
                    if !out.contains(&name) {
                        out.push(name);
                    }
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, out);
            }
        }
        let mut out = Vec::new();
        walk(&Cli::command(), &mut out);
        out
    }

    #[test]
    fn the_constant_list_matches_the_declarations() {
        let mut declared = declared_env_vars();
        let mut listed: Vec<String> = AGENT_ENV_VARS.iter().map(|s| s.to_string()).collect();
        declared.sort();
        listed.sort();
        assert_eq!(listed, declared, "update AGENT_ENV_VARS in cli.rs");
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn command_after_double_dash_keeps_its_flags() {
        let cli = Cli::try_parse_from(["agent", "run", "--stop-timeout", "5s", "--", "gunicorn", "--bind", "x"]).unwrap();
        let Command::Run(run) = cli.command else { panic!("not run") };
        assert_eq!(run.stop_timeout.as_deref(), Some("5s"));
        assert_eq!(run.command, ["gunicorn", "--bind", "x"]);
    }

    #[test]
    fn command_without_double_dash() {
        let cli = Cli::try_parse_from(["agent", "run", "flask", "run", "--debug"]).unwrap();
        let Command::Run(run) = cli.command else { panic!("not run") };
        assert_eq!(run.command, ["flask", "run", "--debug"]);
    }

    #[test]
    fn every_option_has_an_agent_env_var() {
        let vars = declared_env_vars();
        for v in ["AGENT_CONFIG", "AGENT_STOP_TIMEOUT", "AGENT_REWRITE_SIGNAL", "AGENT_LOG_FORMAT"] {
            assert!(vars.iter().any(|x| x == v), "{v} missing from {vars:?}");
        }
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").unwrap();
        for arg in run.get_arguments().filter(|a| a.get_long().is_some() && a.get_id() != "help") {
            assert!(arg.get_env().is_some(), "--{} has no AGENT_* variable", arg.get_long().unwrap());
        }
        let health = cmd.find_subcommand("health").unwrap();
        for arg in health.get_arguments().filter(|a| a.get_long().is_some() && a.get_id() != "help") {
            assert!(arg.get_env().is_some(), "--{} has no AGENT_* variable", arg.get_long().unwrap());
        }
    }
}
