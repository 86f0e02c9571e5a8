//! HTTP to AWS for the trace relays: one HTTPS client (hyper on rustls with ring and the system's
//! root certificates, as the SDK's), and SigV4 signing (`sigv4.rs`) with the SDK
//! configuration's credential chain (task role, environment, profile).
//!
//! Used where the relays' volume makes the SDK's per-call machinery the main cost, or where there
//! is no SDK operation: PutTraceSegments (X-Ray segments; the SDK's request serialization cost
//! more CPU per segment than everything else together, BENCHMARKS.md) and X-Ray's OTLP endpoint.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::sigv4;
use crate::proxy::Proxy;

pub type Https = hyper_rustls::HttpsConnector<crate::proxy::Connector>;

/// An HTTP(S) client with keep-alive, and the proxy its requests go through (if any).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Https, Full<Bytes>>,
    proxy: Proxy,
}

/// An HTTP(S) client with keep-alive and TCP_NODELAY, through `proxy` where it says so.
/// `plain_ok`: only plain HTTP will be used, so a system without root certificates is not an
/// error.
pub fn client(plain_ok: bool, proxy: &Proxy) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let connector = crate::proxy::Connector { http, proxy: proxy.clone() };
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_provider_and_native_roots(rustls::crypto::ring::default_provider()) {
        Ok(b) => b,
        // No system roots (FROM scratch, a minimal base): Mozilla's, compiled in. Only plain HTTP
        // will be used: none are needed, and none are said.
        Err(_) => {
            let mut roots = rustls::RootCertStore::empty();
            if !plain_ok {
                super::say_builtin_roots();
                roots.add_parsable_certificates(super::builtin_roots().iter().cloned());
            }
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
    };
    let connector = builder.https_or_http().enable_http1().wrap_connector(connector);
    let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
    Ok(HttpClient { client, proxy: proxy.clone() })
}

/// Whether the service's endpoint is plain HTTP (a local stand-in named by
/// `AWS_ENDPOINT_URL_<SERVICE>` or `AWS_ENDPOINT_URL`): then no root certificates are needed.
pub fn plain_endpoint(service: &str) -> bool {
    std::env::var(format!("AWS_ENDPOINT_URL_{service}")).or_else(|_| std::env::var("AWS_ENDPOINT_URL")).is_ok_and(|u| u.starts_with("http://"))
}

/// Why a request could not be signed; `retry`: it may work later (credentials not yet there).
#[derive(Debug)]
pub struct SignError {
    pub retry: bool,
    pub message: String,
}

fn fail(message: String) -> SignError {
    SignError { retry: false, message }
}

/// Signs requests for one AWS service; finds its endpoint and region on first use, and keeps
/// the credentials until five minutes before they expire.
pub struct Signer {
    service: &'static str,
    region: String,
    base: String,
    credentials: Option<Credentials>,
    keys: sigv4::KeyCache,
}

impl Signer {
    pub fn new(service: &'static str) -> Signer {
        Signer { service, region: String::new(), base: String::new(), credentials: None, keys: sigv4::KeyCache::default() }
    }

    /// `path` on the service's endpoint: `AWS_ENDPOINT_URL_<SERVICE>`, else `AWS_ENDPOINT_URL`,
    /// else `https://SERVICE.REGION.amazonaws.com`.
    pub fn url(&mut self, sdk: &aws_config::SdkConfig, path: &str) -> Result<Uri, SignError> {
        if self.base.is_empty() {
            let Some(region) = sdk.region() else {
                return Err(fail(format!("{}: no AWS region; set AWS_REGION", self.service)));
            };
            self.region = region.to_string();
            self.base = std::env::var(format!("AWS_ENDPOINT_URL_{}", self.service.to_ascii_uppercase()))
                .ok()
                .or_else(|| sdk.endpoint_url().map(str::to_string))
                .unwrap_or_else(|| format!("https://{}.{}.amazonaws.com", self.service, self.region))
                .trim_end_matches('/')
                .to_string();
        }
        format!("{}{path}", self.base).parse().map_err(|_| fail(format!("{}: {:?} is not a URL (AWS_ENDPOINT_URL)", self.service, self.base)))
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// A signed JSON POST of `body` to `url` (from `url`): X-Ray's PutTraceSegments and sampling
    /// calls.
    pub async fn json_post(&mut self, sdk: &aws_config::SdkConfig, url: Uri, body: Bytes) -> Result<Request<Full<Bytes>>, SignError> {
        let mut req = Request::builder()
            .method(http::Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(header::USER_AGENT, HeaderValue::from_static(concat!("agent/", env!("CARGO_PKG_VERSION"))))
            .body(Full::new(body.clone()))
            .expect("a valid request");
        self.sign(sdk, &mut req, &body).await?;
        Ok(req)
    }

    /// Adds the SigV4 headers for `body` (which must be the request's body) to `req`, whose URI
    /// came from `url`.
    pub async fn sign(&mut self, sdk: &aws_config::SdkConfig, req: &mut Request<Full<Bytes>>, body: &[u8]) -> Result<(), SignError> {
        let fresh = self.credentials.as_ref().is_some_and(|c| c.expiry().map_or(true, |t| t > SystemTime::now() + Duration::from_secs(300)));
        if !fresh {
            let Some(provider) = sdk.credentials_provider() else {
                return Err(fail(format!("{}: no AWS credentials provider", self.service)));
            };
            match provider.provide_credentials().await {
                Ok(c) => {
                    self.credentials = Some(c);
                    self.keys.clear();
                }
                Err(e) => {
                    return Err(SignError {
                        retry: true,
                        message: format!(
                            "{}: no AWS credentials ({}); give the task a task role",
                            self.service,
                            aws_smithy_types::error::display::DisplayErrorContext(&e)
                        ),
                    })
                }
            }
        }
        let c = self.credentials.as_ref().expect("set above");
        let keys = sigv4::Keys { access_key_id: c.access_key_id(), secret_access_key: c.secret_access_key(), session_token: c.session_token() };
        let cannot = |e: &dyn std::fmt::Display| fail(format!("{}: cannot sign: {e}", self.service));
        let signed = sigv4::sign(&mut self.keys, &keys, &self.region, self.service, req.uri(), body, SystemTime::now()).map_err(|e| cannot(&e))?;
        let host = req.uri().authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let h = req.headers_mut();
        h.insert(header::HOST, HeaderValue::from_str(&host).map_err(|e| cannot(&e))?);
        h.insert("x-amz-date", HeaderValue::from_str(&signed.amz_date).map_err(|e| cannot(&e))?);
        if let Some(token) = signed.security_token {
            let mut v = HeaderValue::from_str(&token).map_err(|_| cannot(&"the session token is not a valid header value"))?;
            v.set_sensitive(true);
            h.insert("x-amz-security-token", v);
        }
        let mut v = HeaderValue::from_str(&signed.authorization).map_err(|e| cannot(&e))?;
        v.set_sensitive(true);
        h.insert(header::AUTHORIZATION, v);
        Ok(())
    }
}

/// An error and its sources on one line, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Sends `req` and reads the answer (its first MiB), all within `timeout`; on failure, one line
/// naming `who`: "who: no answer within 5s", "who: connection refused…".
pub async fn exchange(
    client: &HttpClient,
    mut req: Request<Full<Bytes>>,
    timeout: Duration,
    who: &str,
) -> Result<(http::response::Parts, Bytes), String> {
    use http_body_util::{BodyExt, Limited};
    client.proxy.authorize(&mut req);
    let answer = tokio::time::timeout(timeout, async {
        let resp = client.client.request(req).await.map_err(|e| format!("{who}: {}", error_chain(&e)))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, 1 << 20).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        Ok::<_, String>((parts, body))
    })
    .await;
    answer.unwrap_or_else(|_| Err(format!("{who}: no answer within {}", humantime::format_duration(timeout))))
}
