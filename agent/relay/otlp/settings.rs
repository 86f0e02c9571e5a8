//! Where the OTLP relay listens and where it sends, validated once at start.
//!
//! Two steps: `config` checks the agent's own settings (flags > `AGENT_*` > file) before anything
//! runs; `Settings::upstreams` then reads the OpenTelemetry variables from the environment the app
//! would get — the agent's own plus the secrets just loaded — because users keep the Honeycomb
//! key in Parameter Store and hand it over as `OTEL_EXPORTER_OTLP_HEADERS`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::signal::Kind as Signal;

use crate::cli::RunArgs;
use crate::config::{layered, parse_address, parse_positive_duration, parse_size, ConfigError, FileConfig, Key};

pub const DEFAULT_ADDRESS: &str = "127.0.0.1:4318";
pub const DEFAULT_GRPC_ADDRESS: &str = "127.0.0.1:4317";

/// The agent's own OTLP settings, before the environment is read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub address: SocketAddr,
    /// Where OTLP/gRPC is received besides `address` (which takes it too).
    pub grpc_address: SocketAddr,
    /// Where StatsD is received, when metrics have somewhere to go.
    pub statsd_address: SocketAddr,
    pub endpoint: Option<String>,
    pub headers: Vec<String>,
    pub xray: bool,
    pub buffer: usize,
    pub flush_interval: Duration,
    /// `--metrics-emf`: metrics also go to stdout as CloudWatch EMF lines, in this namespace
    /// (`None`: the resource's service.namespace/service.name).
    pub emf: Option<Option<String>>,
}

/// One place one signal goes.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub kind: Kind,
    pub signal: Signal,
    pub url: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub gzip: bool,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Any OTLP/HTTP endpoint (Honeycomb, a collector).
    Http,
    /// X-Ray's OTLP endpoint, SigV4-signed; the URL is found from the AWS configuration at first use.
    Xray,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{var}: {message}")]
    Invalid { var: String, message: String },
}

fn invalid(var: &str, message: impl Into<String>) -> UpstreamError {
    UpstreamError::Invalid { var: var.to_string(), message: message.into() }
}

/// The agent's settings, or `None` with `--no-otlp`.
pub fn config(args: &RunArgs, file: &FileConfig) -> Result<Option<Settings>, ConfigError> {
    if args.no_otlp || file.no_otlp.unwrap_or(false) {
        return Ok(None);
    }
    let address = layered(Key::run("otlp-address"), args.otlp_address.as_ref(), file.otlp_address.as_ref(), parse_address)?
        .unwrap_or_else(|| DEFAULT_ADDRESS.parse().expect("valid default"));
    let endpoint = layered(Key::run("otlp-endpoint"), args.otlp_endpoint.as_ref(), file.otlp_endpoint.as_ref(), |s| {
        base_url(s, Signal::Traces).map(|_| s.trim().to_string())
    })?;
    let headers = if args.otlp_headers.is_empty() { file.otlp_header.clone().unwrap_or_default() } else { args.otlp_headers.clone() };
    let header_key = Key::named("otlp-header", "otlp-header");
    for h in &headers {
        // Checked now for shape; `${NAME}` is filled in once the secrets are loaded.
        split_header(h).map_err(|e| header_key.error(!args.otlp_headers.is_empty(), e))?;
    }
    let grpc_address = layered(Key::run("otlp-grpc-address"), args.otlp_grpc_address.as_ref(), file.otlp_grpc_address.as_ref(), parse_address)?
        .unwrap_or_else(|| DEFAULT_GRPC_ADDRESS.parse().expect("valid default"));
    let namespace = args.metrics_emf_namespace.clone().or_else(|| file.metrics_emf_namespace.clone()).filter(|n| !n.trim().is_empty());
    let emf = (args.metrics_emf || file.metrics_emf.unwrap_or(false)).then_some(namespace);
    let statsd_address = layered(Key::run("statsd-address"), args.statsd_address.as_ref(), file.statsd_address.as_ref(), parse_address)?
        .unwrap_or_else(|| crate::relay::statsd::DEFAULT_ADDRESS.parse().expect("valid default"));
    Ok(Some(Settings {
        emf,
        statsd_address,
        address,
        grpc_address,
        endpoint,
        headers,
        xray: args.otlp_xray || file.otlp_xray.unwrap_or(false),
        buffer: layered(Key::run("otlp-buffer"), args.otlp_buffer.as_ref(), file.otlp_buffer.as_ref(), parse_size)?.unwrap_or(4 << 20),
        flush_interval: layered(
            Key::run("otlp-flush-interval"),
            args.otlp_flush_interval.as_ref(),
            file.otlp_flush_interval.as_ref(),
            parse_positive_duration,
        )?
        .unwrap_or(Duration::from_secs(1)),
    }))
}

/// `NAME=VALUE` → (NAME, VALUE), the name checked.
fn split_header(h: &str) -> Result<(HeaderName, &str), String> {
    let (name, value) = h.split_once('=').ok_or_else(|| format!("{:?} is not NAME=VALUE", redact_header(h)))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| format!("{:?} is not a valid header name", name.trim()))?;
    Ok((name, value.trim()))
}

/// A header as it may be shown: the name only.
fn redact_header(h: &str) -> String {
    match h.split_once('=') {
        Some((name, _)) => format!("{}=…", name.trim()),
        None if h.len() > 12 => format!("{}…", &h[..h.char_indices().nth(12).map_or(h.len(), |(i, _)| i)]),
        None => h.to_string(),
    }
}

/// A base endpoint (OTEL_EXPORTER_OTLP_ENDPOINT's meaning) → a signal's URL (`/v1/traces`...).
fn base_url(base: &str, signal: Signal) -> Result<Uri, String> {
    let base = base.trim();
    let url = format!("{}{}", base.trim_end_matches('/'), signal.path());
    signal_url(&url).map_err(|e| e.replace(&url, base))
}

/// A full signal URL (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT's meaning), checked.
fn signal_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.trim().parse().map_err(|_| format!("{url:?} is not a URL like https://api.honeycomb.io"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => Ok(uri),
        _ => Err(format!("{url:?} is not an http:// or https:// URL with a host")),
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `k1=v1,k2=v2`, values percent-decoded (the spec's format).
/// Errors name the variable and the header, never the value.
fn parse_header_list(var: &str, list: &str) -> Result<Vec<(HeaderName, HeaderValue)>, UpstreamError> {
    let mut out = Vec::new();
    for item in list.split(',').filter(|s| !s.trim().is_empty()) {
        let (name, value) = split_header(item).map_err(|e| invalid(var, e))?;
        let value = percent_decode(value).ok_or_else(|| invalid(var, format!("the value of {name} has a bad %-escape")))?;
        let value = HeaderValue::from_str(&value).map_err(|_| invalid(var, format!("the value of {name} has characters a header cannot carry")))?;
        out.push((name, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `${NAME}` in `--otlp-header` values, from the app's environment (secrets included).
fn interpolate(value: &str, env: &HashMap<String, String>, header: &HeaderName) -> Result<String, UpstreamError> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or_else(|| invalid("--otlp-header", format!("{header}: an unclosed ${{ in its value")))?;
        let name = &rest[start + 2..start + end];
        let v = env.get(name).ok_or_else(|| {
            invalid(
                "--otlp-header",
                format!("{header}: ${{{name}}} is not set in the environment or the secrets; load it with --secret {name}=... or set it"),
            )
        })?;
        out.push_str(v);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A signal's exporter variable, else the generic one (the spec: the signal's wins, whole):
/// (the variable's name, its value).
fn pick<'a>(env: &'a HashMap<String, String>, signal: Signal, what: &str) -> Option<(String, &'a str)> {
    let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let specific = format!("OTEL_EXPORTER_OTLP_{}_{what}", signal.var());
    let generic = format!("OTEL_EXPORTER_OTLP_{what}");
    get(&specific).map(|v| (specific, v)).or_else(|| get(&generic).map(|v| (generic, v)))
}

/// A signal's `TIMEOUT` (milliseconds; 10 s by default) and `COMPRESSION` (the agent gzips
/// unless told not to: X-Ray and Honeycomb both take gzip).
fn timeout_and_gzip(env: &HashMap<String, String>, signal: Signal) -> Result<(Duration, bool), UpstreamError> {
    let timeout = match pick(env, signal, "TIMEOUT") {
        Some((var, v)) => Duration::from_millis(v.parse::<u64>().map_err(|_| invalid(&var, format!("{v:?} is not a number of milliseconds")))?),
        None => Duration::from_secs(10),
    };
    let gzip = match pick(env, signal, "COMPRESSION") {
        Some((_, "gzip")) | None => true,
        Some((_, "none")) => false,
        Some((var, v)) => return Err(invalid(&var, format!("{v:?} is not gzip or none"))),
    };
    Ok((timeout, gzip))
}

impl Settings {
    /// The upstreams, from the agent's settings and the OpenTelemetry variables in `env` (the
    /// environment the app would get): for each signal, the OTLP/HTTP endpoint its variables
    /// name (with its own headers, compression and timeout), and X-Ray's OTLP endpoint for
    /// traces with `--otlp-xray`. Empty: nothing to relay to.
    pub fn upstreams(&self, env: &HashMap<String, String>) -> Result<Vec<UpstreamConfig>, UpstreamError> {
        let mut out = Vec::new();
        let mut looped = None;
        for signal in Signal::ALL {
            let Some(url) = self.url(env, signal)? else { continue };
            // An endpoint that is the agent's own address would be a loop (a local collector
            // on the same port, say): the app keeps its settings and the agent does not relay.
            if self.is_self(&url) {
                looped = Some(url);
                continue;
            }
            let (timeout, gzip) = timeout_and_gzip(env, signal)?;
            let headers = self.headers(env, signal)?;
            out.push(UpstreamConfig { kind: Kind::Http, signal, url, headers, gzip, timeout });
        }
        if let Some(u) = looped {
            tracing::warn!(endpoint = %super::sink::display(&u), "the OTLP endpoint is the agent's own --otlp-address, so the agent does not relay OTLP there; set the real upstream (such as https://api.honeycomb.io) or use another --otlp-address");
        }
        if self.xray {
            // The real URL needs the region, known when the AWS configuration loads.
            let (timeout, gzip) = timeout_and_gzip(env, Signal::Traces)?;
            out.push(UpstreamConfig {
                kind: Kind::Xray,
                signal: Signal::Traces,
                url: Uri::from_static("https://xray.amazonaws.com/v1/traces"),
                headers: Vec::new(),
                gzip,
                timeout,
            });
        }
        Ok(out)
    }

    /// Where a signal goes: `--otlp-endpoint` (a base), else `OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT`
    /// (the full URL, used as it is), else `OTEL_EXPORTER_OTLP_ENDPOINT` (a base).
    fn url(&self, env: &HashMap<String, String>, signal: Signal) -> Result<Option<Uri>, UpstreamError> {
        let url = match (&self.endpoint, pick(env, signal, "ENDPOINT")) {
            (Some(flag), _) => base_url(flag, signal).map_err(|e| invalid("--otlp-endpoint", e))?,
            (None, Some((var, v))) if var != "OTEL_EXPORTER_OTLP_ENDPOINT" => signal_url(v).map_err(|e| invalid(&var, e))?,
            (None, Some((var, v))) => base_url(v, signal).map_err(|e| invalid(&var, e))?,
            (None, None) => return Ok(None),
        };
        Ok(Some(url))
    }

    /// A signal's headers: its `HEADERS` variable (else the generic one), then `--otlp-header`
    /// over them; every value marked sensitive, so no Debug print shows it.
    fn headers(&self, env: &HashMap<String, String>, signal: Signal) -> Result<Vec<(HeaderName, HeaderValue)>, UpstreamError> {
        let mut headers = match pick(env, signal, "HEADERS") {
            Some((var, v)) => parse_header_list(&var, v)?,
            None => Vec::new(),
        };
        for h in &self.headers {
            let (name, value) = split_header(h).map_err(|e| invalid("--otlp-header", e))?;
            let value = interpolate(value, env, &name)?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| invalid("--otlp-header", format!("the value of {name} has characters a header cannot carry")))?;
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value));
        }
        for (_, v) in &mut headers {
            v.set_sensitive(true);
        }
        Ok(headers)
    }

    /// Whether `url` points back at one of the agent's own receivers (a loop).
    fn is_self(&self, url: &Uri) -> bool {
        let port = url.port_u16().unwrap_or(if url.scheme_str() == Some("https") { 443 } else { 80 });
        let host = url.host().unwrap_or("").trim_matches(['[', ']']);
        let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
        [self.address, self.grpc_address]
            .iter()
            .any(|own| port == own.port() && (local || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip == own.ip())))
    }

    /// What the app's environment becomes while relaying: its exporters point at the agent (at
    /// `bound`, the address the receiver got, which serves OTLP/HTTP and OTLP/gRPC alike, so the
    /// app's protocol is left as it chose) for every signal, and the upstreams' endpoints and
    /// headers (the Honeycomb key), signal-specific ones included, are taken away.
    pub fn child_env(&self, bound: SocketAddr) -> (Vec<(String, String)>, Vec<String>) {
        let set = vec![("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), format!("http://{bound}"))];
        let mut remove = vec!["OTEL_EXPORTER_OTLP_HEADERS".to_string()];
        for signal in Signal::ALL {
            // A signal's protocol goes too: the generic one (the app's, or its SDK's default)
            // then applies to the generic endpoint, which takes both.
            for what in ["HEADERS", "ENDPOINT", "PROTOCOL"] {
                remove.push(format!("OTEL_EXPORTER_OTLP_{}_{what}", signal.var()));
            }
        }
        (set, remove)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            address: DEFAULT_ADDRESS.parse().unwrap(),
            grpc_address: DEFAULT_GRPC_ADDRESS.parse().unwrap(),
            statsd_address: crate::relay::statsd::DEFAULT_ADDRESS.parse().unwrap(),
            endpoint: None,
            headers: Vec::new(),
            xray: false,
            buffer: 1 << 20,
            flush_interval: Duration::from_secs(1),
            emf: None,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn endpoints_follow_the_spec() {
        let s = settings();
        let up = s.upstreams(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.honeycomb.io/")])).unwrap();
        assert_eq!(up[0].url, "https://api.honeycomb.io/v1/traces");
        let up = s
            .upstreams(&env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://a.example"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://b.example/custom"),
            ]))
            .unwrap();
        assert_eq!(up[0].url, "https://b.example/custom", "the signal-specific URL is used as it is");
        assert!(s.upstreams(&env(&[])).unwrap().is_empty(), "nothing configured: no upstream");
        let e = s.upstreams(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "api.honeycomb.io")])).unwrap_err().to_string();
        assert!(e.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT:") && e.contains("http"), "{e}");
    }

    #[test]
    fn headers_are_parsed_decoded_and_overridden_by_flags_without_showing_values() {
        let mut s = settings();
        s.headers = vec!["x-honeycomb-dataset=${DATASET}".into(), "x-honeycomb-team=${KEY}".into()];
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.honeycomb.io"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=old,x-other=a%20b"),
            ("KEY", "sekrit-key"),
            ("DATASET", "cruddur"),
        ]);
        let up = s.upstreams(&e).unwrap();
        let h: HashMap<_, _> = up[0].headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string())).collect();
        assert_eq!(h["x-honeycomb-team"], "sekrit-key");
        assert_eq!(h["x-other"], "a b");
        assert_eq!(h["x-honeycomb-dataset"], "cruddur");
        assert!(!format!("{:?}", up[0]).contains("sekrit"), "header values are marked sensitive");
        let bad = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://x"), ("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team sekrit")]);
        let msg = settings().upstreams(&bad).unwrap_err().to_string();
        assert!(msg.contains("OTEL_EXPORTER_OTLP_HEADERS") && !msg.contains("sekrit"), "{msg}");
        s.headers = vec!["x-honeycomb-team=${MISSING}".into()];
        let msg = s.upstreams(&e).unwrap_err().to_string();
        assert!(msg.contains("${MISSING}") && msg.contains("--secret"), "{msg}");
    }

    #[test]
    fn a_loop_back_to_the_agent_is_not_relayed() {
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")]);
        assert!(settings().upstreams(&e).unwrap().is_empty());
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")]);
        assert!(settings().upstreams(&e).unwrap().is_empty(), "the gRPC port is the agent's too");
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4319")]);
        assert_eq!(settings().upstreams(&e).unwrap().len(), 3, "traces, metrics and logs");
    }

    #[test]
    fn each_signal_takes_its_own_variables_over_the_generic_ones() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.honeycomb.io"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=key"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-honeycomb-team=key,x-honeycomb-dataset=metrics"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "https://logs.example/custom"),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "3000"),
        ]);
        let up = settings().upstreams(&e).unwrap();
        let by: HashMap<Signal, &UpstreamConfig> = up.iter().map(|u| (u.signal, u)).collect();
        assert_eq!(by[&Signal::Traces].url, "https://api.honeycomb.io/v1/traces");
        assert_eq!(by[&Signal::Metrics].url, "https://api.honeycomb.io/v1/metrics");
        assert_eq!(by[&Signal::Logs].url, "https://logs.example/custom", "a signal's URL is used as it is");
        let names = |u: &UpstreamConfig| u.headers.iter().map(|(k, _)| k.as_str().to_string()).collect::<Vec<_>>();
        assert_eq!(names(by[&Signal::Traces]), ["x-honeycomb-team"]);
        assert_eq!(names(by[&Signal::Metrics]), ["x-honeycomb-team", "x-honeycomb-dataset"], "the signal's headers replace the generic ones");
        assert!(by[&Signal::Traces].gzip && by[&Signal::Metrics].gzip && !by[&Signal::Logs].gzip);
        assert_eq!(by[&Signal::Metrics].timeout, Duration::from_secs(3));
        assert_eq!(by[&Signal::Traces].timeout, Duration::from_secs(10));

        // Only one signal configured: only that one is relayed.
        let up = settings().upstreams(&env(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4318/v1/metrics")])).unwrap();
        assert_eq!(up.iter().map(|u| u.signal).collect::<Vec<_>>(), [Signal::Metrics]);
        // A signal's bad variable names that variable.
        let bad = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "soon")]);
        assert!(settings().upstreams(&bad).unwrap_err().to_string().starts_with("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT:"));
        // X-Ray's OTLP endpoint takes traces only.
        let mut s = settings();
        s.xray = true;
        let up = s.upstreams(&env(&[])).unwrap();
        assert_eq!(up.iter().map(|u| (u.kind.clone(), u.signal)).collect::<Vec<_>>(), [(Kind::Xray, Signal::Traces)]);
    }

    #[test]
    fn the_app_loses_every_upstream_variable() {
        let (set, remove) = settings().child_env("127.0.0.1:4318".parse().unwrap());
        assert_eq!(set, [("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), "http://127.0.0.1:4318".to_string())], "the protocol is the app's choice");
        for v in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            assert!(remove.iter().any(|r| r == v), "{v} is taken out");
        }
    }

    #[test]
    fn compression_and_timeout_come_from_the_spec_variables() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
        ]);
        let up = settings().upstreams(&e).unwrap();
        assert!(!up[0].gzip);
        assert_eq!(up[0].timeout, Duration::from_millis(2500));
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]);
        assert!(settings().upstreams(&e).unwrap_err().to_string().contains("gzip or none"));
    }
}
