//! The OTLP/HTTP receiver: `POST /v1/traces` with a protobuf or JSON body, gzip or not, as the
//! OpenTelemetry SDKs' HTTP exporters send it. Answers as the spec says: 200 with an empty
//! response (or a partial success naming the spans the agent dropped and why), 400 with a
//! `google.rpc.Status` saying what was wrong with the body, 413 for bodies over the limit (before
//! reading, when the length is declared), 415 for other content types, 404 for other paths, and
//! 503 with Retry-After when every upstream's buffer is full, so the SDK keeps the spans.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};

use super::message::{self, BadRequest, Format};
use super::{Accepted, Ingest, RETRY_AFTER};
use crate::relay::serve::{declared_length, Reply};

fn reply(status: StatusCode, format: Option<Format>, body: Vec<u8>) -> Result<Reply, Infallible> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let ct = format.unwrap_or(Format::Protobuf).content_type();
    r.headers_mut().insert(header::CONTENT_TYPE, ct.parse().expect("valid header"));
    Ok(r)
}

fn refuse(ingest: &Ingest, status: StatusCode, format: Option<Format>, why: &str) -> Result<Reply, Infallible> {
    ingest.refused(status.as_u16(), why);
    reply(status, format, message::status(format, message::INVALID_ARGUMENT, why))
}

pub async fn handle(req: Request<Incoming>, ingest: Arc<Ingest>) -> Result<Reply, Infallible> {
    let path = req.uri().path();
    if path != "/v1/traces" {
        if path == "/v1/metrics" || path == "/v1/logs" {
            ingest.once_warn(path, || {
                format!(
                    "the app sent OTLP to {path}, but the agent relays traces only; point the app's OTEL_EXPORTER_OTLP_{}_ENDPOINT at its backend",
                    if path.ends_with("metrics") { "METRICS" } else { "LOGS" }
                )
            });
        }
        return refuse(&ingest, StatusCode::NOT_FOUND, None, "the agent receives OTLP traces only: POST /v1/traces");
    }
    if req.method() != Method::POST {
        return refuse(&ingest, StatusCode::METHOD_NOT_ALLOWED, None, "use POST for /v1/traces");
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(format) = Format::from_content_type(content_type) else {
        let why = format!("Content-Type {content_type:?} is not supported: send application/x-protobuf or application/json");
        return refuse(&ingest, StatusCode::UNSUPPORTED_MEDIA_TYPE, None, &why);
    };
    // Refused before reading, so the client is not left writing into a closed connection.
    if declared_length(&req).is_some_and(|n| n > message::MAX_BODY as u64) {
        return refuse(&ingest, StatusCode::PAYLOAD_TOO_LARGE, Some(format), &BadRequest::TooLarge.to_string());
    }
    let encoding = req.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = match Limited::new(req.into_body(), message::MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return refuse(&ingest, StatusCode::PAYLOAD_TOO_LARGE, Some(format), &BadRequest::TooLarge.to_string()),
    };
    let decoded = message::decompress(encoding.as_deref(), body).and_then(|b| message::decode(format, &b).map(|r| (r, b)));
    let (request, raw) = match decoded {
        Ok(r) => r,
        Err(e) => {
            let status = if matches!(e, BadRequest::TooLarge) { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
            return refuse(&ingest, status, Some(format), &e.to_string());
        }
    };
    let original = (format == Format::Protobuf).then_some(raw);
    match ingest.accept(request, original, true) {
        Accepted::Queued { rejected, why } => reply(StatusCode::OK, Some(format), message::response(format, rejected, &why)),
        Accepted::Full => {
            let why = "every upstream's buffer is full (is the upstream down?); retry later";
            let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, Some(format), message::status(Some(format), message::UNAVAILABLE, why))?;
            r.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER.as_secs().into());
            Ok(r)
        }
    }
}
