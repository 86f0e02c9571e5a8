//! AWS clients for the secrets step: aws-config's default chain (environment, profile, ECS
//! container credentials, IMDS), `AWS_ENDPOINT_URL`, a client per region, and the retry policy.
//! The configuration itself comes from `crate::aws`.
//!
//! Retries are the SDK's standard ones — jittered exponential backoff on throttling, 5xx,
//! timeouts and dropped connections — with more attempts than its default and a per-attempt
//! timeout, so a slow answer is retried too; the whole step is bounded by `--secrets-timeout`
//! (every request runs under that one deadline). Failures become a `Reason`: a kind for the
//! hint and AWS's own words, which name resources but never carry values.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{Region, SdkConfig};
use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

pub async fn load(total: Duration, access: &crate::aws::Access) -> SdkConfig {
    // A quarter of the whole budget per attempt (1–10 s) leaves room for retries after a hang.
    let attempt = (total / 4).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let retry =
        RetryConfig::standard().with_max_attempts(20).with_initial_backoff(Duration::from_millis(200)).with_max_backoff(Duration::from_secs(5));
    crate::aws::config(retry, attempt, access).await
}

pub fn ssm(base: &SdkConfig, region: &str) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::from_conf(aws_sdk_ssm::config::Builder::from(base).region(Region::new(region.to_string())).build())
}

pub fn secrets_manager(base: &SdkConfig, region: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::from_conf(aws_sdk_secretsmanager::config::Builder::from(base).region(Region::new(region.to_string())).build())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Denied,
    Kms,
    Timeout,
    /// The credential chain found nothing.
    NoCredentials,
    /// No connection to the endpoint (refused, no such host, no route).
    Unreachable,
    /// The TLS handshake failed on the server's certificate.
    Untrusted,
    Other,
}

/// Why one fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub kind: Kind,
    pub message: String,
}

impl Reason {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Reason { kind, message: message.into() }
    }

    pub fn timeout(total: Duration) -> Self {
        Reason::new(
            Kind::Timeout,
            format!(
                "no answer within --secrets-timeout {} (throttled, failing or unreachable; --log-level debug shows each attempt)",
                humantime::format_duration(total)
            ),
        )
    }

    pub fn from_sdk<E, R>(err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match err.as_service_error() {
            Some(se) => {
                let code = se.code().unwrap_or("UnknownError");
                let text = match se.message() {
                    Some(m) if !m.is_empty() => format!("{code}: {m}"),
                    _ => code.to_string(),
                };
                let lower = text.to_ascii_lowercase();
                let kind = if code.contains("KMS") || code == "DecryptionFailure" || lower.contains("kms") {
                    Kind::Kms
                } else if code.contains("AccessDenied") || code.contains("Unauthorized") || code == "InvalidSignatureException" {
                    Kind::Denied
                } else if code.contains("NotFound") || code == "ParameterVersionNotFound" {
                    Kind::NotFound
                } else {
                    Kind::Other
                };
                Reason::new(kind, text)
            }
            None => {
                // The SDK's own words, each cause once, never its Debug dump (that is at debug).
                tracing::debug!(error = %DisplayErrorContext(err), "an AWS call failed");
                let chain = crate::aws::http::error_chain(err);
                let chain = chain.strip_prefix("dispatch failure: ").unwrap_or(&chain);
                if chain.contains("no credentials found") || chain.contains("credential provider was not enabled") {
                    Reason::new(
                        Kind::NoCredentials,
                        "no AWS credentials (tried the environment, the profile, web identity, ECS task credentials and instance metadata)",
                    )
                } else if chain.contains("invalid peer certificate") || chain.contains("UnknownIssuer") {
                    Reason::new(Kind::Untrusted, format!("TLS: {}", chain.lines().next().unwrap_or_default()))
                } else if ["Connection refused", "dns error", "failed to lookup", "tcp connect", "No route to host", "Network is unreachable"]
                    .iter()
                    .any(|k| chain.contains(k))
                {
                    Reason::new(Kind::Unreachable, format!("cannot connect: {}", chain.lines().next().unwrap_or_default()))
                } else {
                    Reason::new(Kind::Other, chain.lines().next().unwrap_or_default().to_string())
                }
            }
        }
    }
}

/// Runs `fut` under the step's one deadline.
pub async fn within<T>(
    deadline: tokio::time::Instant,
    total: Duration,
    fut: impl std::future::Future<Output = Result<T, Reason>>,
) -> Result<T, Reason> {
    tokio::time::timeout_at(deadline, fut).await.unwrap_or_else(|_| Err(Reason::timeout(total)))
}
