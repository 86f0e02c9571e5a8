//! One way to build the AWS SDK's configuration, for secrets and for X-Ray alike: the default
//! credentials chain (environment, profile, ECS container credentials, IMDS), `AWS_ENDPOINT_URL`,
//! and an HTTPS client on rustls with ring and the system's root certificates (see Cargo.toml
//! for why ring). Callers choose only the retry policy and how long one attempt may take.

pub mod ecs;
pub mod http;
pub mod roots;
pub mod sigv4;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls;

/// How the agent reaches AWS, besides the SDK's own chain: the proxy, and a role to assume with
/// the chain's credentials (`--role-arn` for the trace calls, `--secrets-role-arn` for secrets).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub proxy: crate::proxy::Proxy,
    pub role_arn: Option<String>,
}

pub async fn config(retry: RetryConfig, attempt_timeout: Duration, access: &Access) -> SdkConfig {
    // An image without root certificates: an empty trust store, said to be so (the SDK would
    // otherwise assert there are roots — a panic in debug builds — and then trust nothing).
    let mut trust = tls::TlsContext::builder();
    if system_roots() == 0 {
        say_builtin_roots();
        trust = trust.with_trust_store(tls::TrustStore::empty().with_pem_certificate(builtin_roots_pem()));
    }
    let trust = trust.build().expect("a TLS context without custom certificates");
    let tls_provider = tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring);
    let http = match access.proxy.sdk() {
        None => aws_smithy_http_client::Builder::new().tls_provider(tls_provider).tls_context(trust).build_https(),
        // The same client, with the proxy: the SDK's builder takes a proxy only on its connector.
        Some(proxy) => aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
            let mut b = aws_smithy_http_client::Connector::builder();
            b.set_connector_settings(settings.cloned());
            if let Some(c) = components {
                b.set_sleep_impl(c.sleep_impl());
            }
            b.proxy_config(proxy.clone()).tls_provider(tls_provider.clone()).tls_context(trust.clone()).build()
        }),
    };
    let base = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(retry)
        .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(2)).operation_attempt_timeout(attempt_timeout).build())
        .load()
        .await;
    match &access.role_arn {
        None => base,
        Some(arn) => {
            // sts:AssumeRole with the chain's credentials (the task role), on the same client;
            // the SDK's clients cache what it returns, and the relays' signer keeps it until five
            // minutes before it expires.
            let assumed = aws_config::sts::AssumeRoleProvider::builder(arn.clone()).session_name("agent").configure(&base).build().await;
            base.into_builder().credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(assumed)).build()
        }
    }
}

/// How many root certificates the system has (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else the
/// distribution's bundle), counted once.
pub fn system_roots() -> usize {
    static ROOTS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs.len())
}

/// The roots HTTPS trusts when the image has none: Mozilla's, compiled in (`roots.rs`).
pub fn builtin_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(roots::certificates)
}

/// `builtin_roots` as PEM, for the SDK's client (which takes PEM certificates).
fn builtin_roots_pem() -> Vec<u8> {
    use base64::Engine;
    let mut pem = Vec::with_capacity(builtin_roots().len() * 2048);
    for cert in builtin_roots() {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

/// Said once, the first time an HTTPS client is made without system roots.
pub fn say_builtin_roots() {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::info!(
            roots = builtin_roots().len(),
            "this image has no CA certificates (none in SSL_CERT_FILE, SSL_CERT_DIR or /etc/ssl/certs); HTTPS trusts the Mozilla roots built into the agent"
        )
    });
}

/// What to tell a person whose HTTPS call failed on the server's certificate.
pub fn certificate_hint() -> String {
    if system_roots() == 0 {
        "the server's certificate is not signed by a Mozilla root (the agent's built-in set, as this image has no CA \
         certificates): a TLS-inspecting proxy or a private CA? put its CA in a bundle and point SSL_CERT_FILE at it"
            .to_string()
    } else {
        "the server's certificate is not signed by a root this image trusts (a TLS-inspecting proxy? add its CA to the bundle)".to_string()
    }
}

/// The AWS configuration of the relays (PutTraceSegments, the sampling proxy, X-Ray's OTLP
/// endpoint): loaded once, on first use, so one credentials cache serves them all. Two
/// attempts of at most 5 s each per call; the relay's batcher retries on top.
///
/// Secrets load their own configuration on the main thread before the app starts (other retry
/// and deadline rules, and a runtime that ends once they are loaded: a connection pool or
/// credentials client made there would be dead in the relay's runtime).
#[derive(Clone, Default)]
pub struct Shared(std::sync::Arc<(tokio::sync::OnceCell<SdkConfig>, Access)>);

impl Shared {
    pub fn new(access: Access) -> Shared {
        Shared(std::sync::Arc::new((tokio::sync::OnceCell::new(), access)))
    }

    pub async fn get(&self) -> &SdkConfig {
        self.0 .0.get_or_init(|| config(RetryConfig::standard().with_max_attempts(2), Duration::from_secs(5), &self.0 .1)).await
    }

    /// The proxy the relays' own HTTP clients go through.
    pub fn proxy(&self) -> &crate::proxy::Proxy {
        &self.0 .1.proxy
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_builtin_roots_are_mozillas_and_their_pem_holds_each_one() {
        use base64::Engine;
        let roots = super::builtin_roots();
        assert!(roots.len() > 100, "{}", roots.len());
        assert_eq!(roots, webpki_root_certs::TLS_SERVER_ROOT_CERTS, "split back into the crate's certificates");
        let pem = String::from_utf8(super::builtin_roots_pem()).unwrap();
        let decoded: Vec<Vec<u8>> = pem
            .split("-----BEGIN CERTIFICATE-----\n")
            .skip(1)
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b.split("-----END").next().unwrap().replace('\n', "")).unwrap())
            .collect();
        assert_eq!(decoded.len(), roots.len());
        assert!(decoded.iter().zip(roots).all(|(d, r)| d.as_slice() == r.as_ref()));
    }
}
