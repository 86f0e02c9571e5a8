//! Secrets settings for `agent run` and `agent env`, layered like every other setting, with
//! every source parsed and checked here — before any request is made.

use std::time::Duration;

use super::sources::{self, SourceError, Sources};
use crate::cli::SecretsArgs;
use crate::config::{layered, parse_duration, parse_positive_duration, parse_role_arn, ConfigError, FileConfig, Key};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct SecretsConfig {
    pub sources: Sources,
    pub timeout: Duration,
    /// How long an endpoint that takes no connection is tried: 10 s (`reach.rs`), or all of
    /// `--secrets-timeout` when that is set.
    pub unreachable_after: Duration,
    pub start_jitter: Duration,
    /// The proxy, and `--secrets-role-arn`.
    pub aws: crate::aws::Access,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

pub fn config(a: &SecretsArgs, f: &FileConfig) -> Result<SecretsConfig, SettingsError> {
    let mut sources = Sources::default();
    let secrets: &[String] = if a.secrets.is_empty() { f.secrets.as_deref().unwrap_or_default() } else { &a.secrets };
    for s in secrets {
        sources.explicit.extend(sources::parse_secret_flag(s)?);
    }
    let container = a.container.as_ref().or(f.container.as_ref());
    match a.secrets_file.as_ref().or(f.secrets_file.as_ref()) {
        Some(file) => {
            let loaded = sources::load_secrets_file(file, container.map(String::as_str))?;
            sources.explicit.extend(loaded.secrets);
            sources.environment = loaded.environment;
        }
        None if container.is_some() => return Err(SourceError::ContainerWithoutFile.into()),
        None => {}
    }
    sources::check_duplicates(&sources.explicit)?;
    let paths: &[String] = if a.ssm_path.is_empty() { f.ssm_path.as_deref().unwrap_or_default() } else { &a.ssm_path };
    for p in paths.iter().filter(|p| !p.trim().is_empty()) {
        sources.paths.push(sources::parse_path(p)?);
    }
    if let Some(file) = a.env_file.as_ref().or(f.env_file.as_ref()) {
        sources.env_files.push(file.clone());
    }
    let timeout = layered(Key::run("secrets-timeout"), a.secrets_timeout.as_ref(), f.secrets_timeout.as_ref(), parse_positive_duration)?;
    let role_arn = layered(Key::run("secrets-role-arn"), a.secrets_role_arn.as_ref(), f.secrets_role_arn.as_ref(), parse_role_arn)?;
    Ok(SecretsConfig {
        aws: crate::aws::Access { proxy: proxy(a, f)?, role_arn },
        sources,
        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
        unreachable_after: timeout.unwrap_or(super::reach::UNREACHABLE_AFTER),
        start_jitter: layered(Key::run("start-jitter"), a.start_jitter.as_ref(), f.start_jitter.as_ref(), parse_duration)?.unwrap_or(Duration::ZERO),
    })
}

impl SecretsConfig {
    /// Waits the start jitter, then resolves every source on a short-lived single-thread runtime.
    pub fn resolve_blocking(&self) -> Result<super::Resolved, super::SecretsError> {
        if !self.start_jitter.is_zero() {
            let wait = self.start_jitter.mul_f64(fastrand::f64());
            tracing::info!(wait = %humantime::format_duration(Duration::from_millis(wait.as_millis() as u64)), "start jitter");
            std::thread::sleep(wait);
        }
        self.resolve_now()
    }

    /// Resolves every source now, on a short-lived single-thread runtime.
    pub fn resolve_now(&self) -> Result<super::Resolved, super::SecretsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("BUG: cannot build the single-thread runtime for fetching secrets");
        rt.block_on(super::resolve(&self.sources, self.timeout, self.unreachable_after, &self.aws))
    }
}

/// The proxy every outbound call goes through: `--proxy-url` (flag > `AGENT_PROXY_URL` > file),
/// else the agent's own `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY`.
pub fn proxy(a: &SecretsArgs, f: &FileConfig) -> Result<crate::proxy::Proxy, ConfigError> {
    let flag = match (&a.proxy_url, &f.proxy_url) {
        (Some(u), _) => Some((u.as_str(), "--proxy-url (or AGENT_PROXY_URL)")),
        (None, Some(u)) => Some((u.as_str(), "config file key \"proxy-url\"")),
        (None, None) => None,
    };
    crate::proxy::Proxy::new(flag, |k| std::env::var(k).ok()).map_err(|e| ConfigError::Value { origin: e.origin, message: e.message })
}
