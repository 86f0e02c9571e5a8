//! The OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics` and `/v1/logs` with a protobuf or
//! JSON body, gzip or not, as the OpenTelemetry SDKs' HTTP exporters send them. Answers as the
//! spec says: 200 with an empty response (or a partial success naming what the agent dropped and
//! why), 400 with a `google.rpc.Status` saying what was wrong with the body, 413 for bodies over
//! the limit (before reading, when the length is declared), 415 for other content types, 404 for
//! other paths and for a signal no upstream takes, and 503 with Retry-After when every
//! upstream's buffer for the signal is full, so the SDK keeps the data.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::message::{self, BadRequest, Format};
use super::signal::{Kind, Signal};
use super::{Accepted, Ingest, RETRY_AFTER};
use crate::relay::bodies::{self, Bodies, BodyError};
use crate::relay::problems::Problems;
use crate::relay::serve::{declared_length, Body, Reply};

/// What the receiver serves: each signal's ingest (`None`: no upstream takes that signal), and
/// the requests refused at the door, each kind said once.
pub struct Door {
    ingests: [Option<Arc<Ingest>>; 3],
    problems: Mutex<Problems>,
    /// The request bodies all OTLP listeners hold at once (`bodies.rs`).
    pub bodies: Bodies,
}

/// What the OTLP listeners' request bodies may hold at once, all together.
pub const BODIES_IN_FLIGHT: usize = 12 << 20;
/// Requests being read at once, on all OTLP listeners (HTTP/1 has at most one a connection).
pub const REQUESTS_IN_FLIGHT: usize = crate::relay::serve::MAX_CONNECTIONS * crate::relay::serve::MAX_STREAMS as usize;

impl Door {
    pub fn new(ingests: impl IntoIterator<Item = Arc<Ingest>>) -> Door {
        let mut by_kind: [Option<Arc<Ingest>>; 3] = Default::default();
        for i in ingests {
            let slot = Kind::ALL.iter().position(|k| *k == i.kind).expect("a known signal");
            by_kind[slot] = Some(i);
        }
        Door { ingests: by_kind, problems: Mutex::new(Problems::default()), bodies: Bodies::new(BODIES_IN_FLIGHT, REQUESTS_IN_FLIGHT) }
    }

    pub fn get(&self, kind: Kind) -> Option<&Arc<Ingest>> {
        self.ingests[Kind::ALL.iter().position(|k| *k == kind).expect("a known signal")].as_ref()
    }

    /// The signal's ingest, or why there is none: what the app is told, and the agent says once.
    pub fn ingest(&self, kind: Kind) -> Result<Arc<Ingest>, String> {
        self.get(kind).cloned().ok_or_else(|| {
            format!(
                "no upstream takes OTLP {}: set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_{}_ENDPOINT) in the agent's environment{}",
                kind.var().to_lowercase(),
                kind.var(),
                if kind == Kind::Metrics { ", or use --metrics-emf" } else { "" }
            )
        })
    }

    /// Every signal's ingest, in the order traces, metrics, logs.
    pub fn ingests(&self) -> impl Iterator<Item = &Arc<Ingest>> {
        self.ingests.iter().flatten()
    }

    /// A request refused with `status` (an HTTP status, or gRPC's name of one): logged once per
    /// kind, so a misconfigured app shows.
    pub fn said(&self, status: &str, why: &str) {
        let kind = format!("refused:{status}:{}", why.split(':').next().unwrap_or(""));
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        problems.once(&kind, || format!("refused an OTLP request with {status}: {why} (further ones like it are only counted)"));
    }

    fn refuse(&self, status: StatusCode, format: Option<Format>, why: &str) -> Result<Reply, Infallible> {
        self.said(status.as_str(), why);
        reply(status, format, message::status(format, message::INVALID_ARGUMENT, why))
    }
}

fn reply(status: StatusCode, format: Option<Format>, body: Vec<u8>) -> Result<Reply, Infallible> {
    let mut r = Response::new(Body::new(body));
    *r.status_mut() = status;
    let ct = format.unwrap_or(Format::Protobuf).content_type();
    r.headers_mut().insert(header::CONTENT_TYPE, ct.parse().expect("valid header"));
    Ok(r)
}

pub async fn handle(req: Request<Incoming>, door: Arc<Door>) -> Result<Reply, Infallible> {
    crate::fault::point("otlp-receiver");
    if super::grpc::is_grpc(&req) {
        return Ok(super::grpc::handle(req, door).await);
    }
    let path = req.uri().path();
    let Some(kind) = Kind::from_path(path) else {
        return door.refuse(StatusCode::NOT_FOUND, None, "the agent receives OTLP at POST /v1/traces, /v1/metrics and /v1/logs");
    };
    let ingest = match door.ingest(kind) {
        Ok(i) => i,
        Err(why) => return door.refuse(StatusCode::NOT_FOUND, None, &why),
    };
    if req.method() != Method::POST {
        return door.refuse(StatusCode::METHOD_NOT_ALLOWED, None, &format!("use POST for {path}"));
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(format) = Format::from_content_type(content_type) else {
        let why = format!("Content-Type {content_type:?} is not supported: send application/x-protobuf or application/json");
        return door.refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, None, &why);
    };
    let encoding = req.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_string);
    // An over-limit declared length is refused before reading, so the client is not left
    // writing into a closed connection; the room the body holds is given back when it is done.
    let declared = declared_length(&req);
    let (body, _held) = match door.bodies.read(req.into_body(), declared, message::MAX_BODY).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return door.refuse(StatusCode::PAYLOAD_TOO_LARGE, Some(format), &BadRequest::TooLarge.to_string()),
        Err(BodyError::Busy) => {
            let why = door.bodies.busy();
            let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, Some(format), message::status(Some(format), message::UNAVAILABLE, &why))?;
            r.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER.as_secs().into());
            return Ok(r);
        }
        Err(BodyError::Slow) => {
            let why = format!("the body did not arrive within {} s", bodies::BODY_TIMEOUT.as_secs());
            return door.refuse(StatusCode::REQUEST_TIMEOUT, Some(format), &why);
        }
        Err(BodyError::Broken(e)) => return door.refuse(StatusCode::BAD_REQUEST, Some(format), &format!("cannot read the request body: {e}")),
    };
    let body = match message::decompress(encoding.as_deref(), body) {
        Ok(b) => b,
        Err(e) => return refuse_body(&door, format, e),
    };
    let accepted = match kind {
        Kind::Traces => accept::<ExportTraceServiceRequest>(&ingest, format, body),
        Kind::Metrics => accept::<ExportMetricsServiceRequest>(&ingest, format, body),
        Kind::Logs => accept::<ExportLogsServiceRequest>(&ingest, format, body),
    };
    match accepted {
        Ok((Accepted::Queued { rejected, why }, answer)) => reply(StatusCode::OK, Some(format), answer(format, rejected, &why)),
        Ok((Accepted::Full, _)) => {
            let why = "every upstream's buffer is full (is the upstream down?); retry later";
            let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, Some(format), message::status(Some(format), message::UNAVAILABLE, why))?;
            r.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER.as_secs().into());
            Ok(r)
        }
        Err(e) => refuse_body(&door, format, e),
    }
}

/// A signal's success answer: (format, rejected, why) → body.
pub type Answer = fn(Format, u64, &str) -> Vec<u8>;

/// Decodes a body as signal `S` and hands it to its ingest.
pub fn accept<S: Signal>(ingest: &Ingest, format: Format, body: Bytes) -> Result<(Accepted, Answer), BadRequest> {
    let request: S = message::decode(format, &body)?;
    let original = (format == Format::Protobuf).then_some(body);
    Ok((ingest.accept(request, original, true), message::response::<S>))
}

fn refuse_body(door: &Door, format: Format, e: BadRequest) -> Result<Reply, Infallible> {
    let status = if matches!(e, BadRequest::TooLarge | BadRequest::TooMany(_)) { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
    door.refuse(status, Some(format), &e.to_string())
}
