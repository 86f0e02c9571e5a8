//! One way to build the AWS SDK's configuration, for secrets and for X-Ray alike: the default
//! credentials chain (environment, profile, ECS container credentials, IMDS), `AWS_ENDPOINT_URL`,
//! and an HTTPS client on rustls with ring and the system's root certificates (see Cargo.toml
//! for why ring). Callers choose only the retry policy and how long one attempt may take.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls;

pub async fn config(retry: RetryConfig, attempt_timeout: Duration) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder().connect_timeout(Duration::from_secs(2)).operation_attempt_timeout(attempt_timeout).build(),
        )
        .load()
        .await
}
