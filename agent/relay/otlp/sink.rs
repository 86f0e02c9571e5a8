//! The OTLP upstream sink, one per upstream and signal: a batch is an OTLP/HTTP POST of
//! protobuf to the signal's URL, gzipped unless configured
//! otherwise, with the upstream's headers, or SigV4-signed for X-Ray's OTLP endpoint; and what
//! the answer means: sent (perhaps partly), worth retrying (408, 429, 5xx, no connection, with
//! the server's Retry-After), or failed for good (other 4xx), said with a hint.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::message::{self, Chunk, Format};
use super::settings::{Kind, UpstreamConfig};
use super::signal::Kind as Signal;
use crate::aws::http::{self as aws_http, HttpClient, SignError, Signer};
use crate::aws::Shared;
use crate::relay::batcher::{Sent, Sink};

pub struct Upstream {
    pub cfg: UpstreamConfig,
    /// For logs: the URL without credentials or query.
    pub name: String,
    client: HttpClient,
    aws: Shared,
    /// For X-Ray's OTLP endpoint: its URL and the task role's credentials.
    xray: Option<Signer>,
}

/// A display name for a URL: scheme, host, port and path; never a query or `user:password@`.
pub fn display(url: &Uri) -> String {
    let host = url.host().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}{}", url.scheme_str().unwrap_or("http"), url.path())
}

impl UpstreamConfig {
    /// How logs and `agent health` name this upstream.
    pub fn name(&self) -> String {
        if self.kind == Kind::Xray {
            "X-Ray OTLP".to_string()
        } else {
            display(&self.url)
        }
    }
}

impl Upstream {
    /// Fails only when HTTPS is needed and the system has no root certificates.
    pub fn new(cfg: UpstreamConfig, aws: Shared) -> Result<Upstream, String> {
        let client = aws_http::client(cfg.url.scheme_str() == Some("http") && cfg.kind == Kind::Http, aws.proxy())?;
        let name = cfg.name();
        let xray = (cfg.kind == Kind::Xray).then(|| Signer::new("xray"));
        Ok(Upstream { cfg, name, client, aws, xray })
    }

    /// POSTs one batch (the chunks' protobuf, concatenated) and says what came of it.
    async fn post(&mut self, batch: Vec<Chunk>) -> Sent<Chunk> {
        let body = if self.cfg.gzip { gzip(&batch) } else { concat(&batch) };
        let mut req = Request::builder().method(Method::POST).uri(self.cfg.url.clone());
        {
            let h = req.headers_mut().expect("a fresh builder");
            for (name, value) in &self.cfg.headers {
                h.insert(name.clone(), value.clone());
            }
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
            if self.cfg.gzip {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            h.insert(header::USER_AGENT, HeaderValue::from_static(concat!("agent/", env!("CARGO_PKG_VERSION"))));
        }
        let mut req = match req.body(Full::new(body.clone())) {
            Ok(r) => r,
            Err(e) => return Sent::Failed { reason: format!("{}: cannot build the request: {e}", self.name) },
        };
        if self.xray.is_some() {
            if let Err(e) = self.sign(&mut req, &body).await {
                return if e.retry { Sent::Retry { batch, reason: e.message, after: None } } else { Sent::Failed { reason: e.message } };
            }
        }
        let (parts, body) = match aws_http::exchange(&self.client, req, self.cfg.timeout, &self.name).await {
            Ok(a) => a,
            Err(reason) => return Sent::Retry { batch, reason, after: None },
        };
        let status = parts.status;
        if status.is_success() {
            let format = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(Format::from_content_type);
            let partial = match self.cfg.signal {
                Signal::Traces => message::partial_success::<ExportTraceServiceRequest>,
                Signal::Metrics => message::partial_success::<ExportMetricsServiceRequest>,
                Signal::Logs => message::partial_success::<ExportLogsServiceRequest>,
            };
            let (rejected, reason) = format.and_then(|f| partial(&body, f)).unwrap_or_default();
            return Sent::Done { rejected, retry: Vec::new(), reason: format!("{}: {reason}", self.name) };
        }
        let text = excerpt(&body);
        let reason = format!("{} answered {}{}{}", self.name, status, if text.is_empty() { "" } else { ": " }, text);
        if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let after = parts.headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
            return Sent::Retry { batch, reason, after };
        }
        let var = self.cfg.signal.var();
        let hint = match (status.as_u16(), &self.cfg.kind) {
            (401 | 403, Kind::Http) => format!(
                " (check the upstream's headers: OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_{var}_HEADERS or --otlp-header, such as the Honeycomb API key)"
            ),
            (401 | 403, Kind::Xray) => " (the task role needs xray:PutSpans, and CloudWatch Transaction Search must be enabled for OTLP)".into(),
            (404, Kind::Http) => format!(
                " (check the endpoint: OTEL_EXPORTER_OTLP_ENDPOINT is a base URL, {} is added; OTEL_EXPORTER_OTLP_{var}_ENDPOINT is used as it is)",
                self.cfg.signal.path()
            ),
            _ => String::new(),
        };
        Sent::Failed { reason: format!("{reason}{hint}") }
    }

    /// Points the request at X-Ray's endpoint for the region and signs it (SigV4, service xray).
    async fn sign(&mut self, req: &mut Request<Full<Bytes>>, body: &Bytes) -> Result<(), SignError> {
        let sdk = self.aws.get().await;
        let signer = self.xray.as_mut().expect("X-Ray upstreams have a signer");
        let first = signer.region().is_empty();
        self.cfg.url = signer.url(sdk, "/v1/traces")?;
        if first {
            self.name = format!("X-Ray OTLP {}", display(&self.cfg.url));
            tracing::info!(url = %display(&self.cfg.url), region = %signer.region(), "relaying OTLP spans to X-Ray");
        }
        *req.uri_mut() = self.cfg.url.clone();
        signer.sign(sdk, req, body).await
    }
}

impl Sink for Upstream {
    type Item = Chunk;

    fn send(&mut self, batch: Vec<Chunk>) -> impl std::future::Future<Output = Sent<Chunk>> + Send {
        self.post(batch)
    }
}

/// The chunks compressed one after the other, without first copying them into one buffer.
fn gzip(batch: &[Chunk]) -> Bytes {
    use std::io::Write;
    let len: usize = batch.iter().map(|c| c.body.len()).sum();
    // The fastest level: a few times smaller for span data, at little CPU.
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(len / 4), flate2::Compression::fast());
    for c in batch {
        enc.write_all(&c.body).expect("writing to a Vec");
    }
    enc.finish().expect("writing to a Vec").into()
}

fn concat(batch: &[Chunk]) -> Bytes {
    if let [one] = batch {
        return one.body.clone();
    }
    let mut v = Vec::with_capacity(batch.iter().map(|c| c.body.len()).sum());
    for c in batch {
        v.extend_from_slice(&c.body);
    }
    v.into()
}

/// Retry-After: delta-seconds or an HTTP date; at most 5 minutes.
fn retry_after(v: &str) -> Option<Duration> {
    let wait = match v.trim().parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => httpdate::parse_http_date(v.trim()).ok()?.duration_since(SystemTime::now()).unwrap_or_default(),
    };
    Some(wait.min(Duration::from_secs(300)))
}

/// The start of an error body, on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_never_show_credentials_or_queries() {
        let u: Uri = "https://user:sekrit@api.example.com:8443/v1/traces?key=sekrit".parse().unwrap();
        assert_eq!(display(&u), "https://api.example.com:8443/v1/traces");
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("100000"), Some(Duration::from_secs(300)), "capped");
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = retry_after(&later).unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30), "{d:?}");
        assert_eq!(retry_after("soon"), None);
    }
}
