//! OTLP/gRPC: the collector services' unary `Export` for traces, metrics and logs, on the same
//! ingests as OTLP/HTTP. It arrives as HTTP/2 without TLS (`serve.rs` tells it from HTTP/1 by
//! its preface), on 127.0.0.1:4317 and on the HTTP port too, so whichever protocol the app's
//! SDK picks, the endpoint the agent gave it works.
//!
//! gRPC over HTTP/2 is small enough to speak directly: the request body is one message behind
//! a 5-byte prefix (compressed flag, big-endian length); the answer is the response message,
//! framed the same way, and the status in the trailers (`grpc-status`, `grpc-message`). A full
//! buffer answers UNAVAILABLE with a `google.rpc.RetryInfo` of 5 s in `grpc-status-details-bin`,
//! which the SDKs' exporters honour: they keep the data and retry then.

use std::sync::Arc;

use base64::Engine;
use http::{header, HeaderMap, HeaderValue, Request, Response};
use hyper::body::{Bytes, Incoming};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::message::{self, Any, BadRequest, Format, Status};
use super::receiver::{self, Door};
use super::signal::Kind;
use super::{Accepted, RETRY_AFTER};
use crate::relay::bodies::{self, BodyError};
use crate::relay::serve::{self, Body, Reply};

/// gRPC status codes used here.
pub const OK: i32 = 0;
pub const INVALID_ARGUMENT: i32 = 3;
pub const DEADLINE_EXCEEDED: i32 = 4;
pub const RESOURCE_EXHAUSTED: i32 = 8;
pub const UNIMPLEMENTED: i32 = 12;
pub const INTERNAL: i32 = 13;
pub const UNAVAILABLE: i32 = 14;

/// `google.rpc.RetryInfo`: how long the client should wait.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The signal a gRPC method path names.
fn method(path: &str) -> Option<Kind> {
    match path {
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => Some(Kind::Traces),
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => Some(Kind::Metrics),
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export" => Some(Kind::Logs),
        _ => None,
    }
}

pub async fn handle(req: Request<Incoming>, door: Arc<Door>) -> Reply {
    let Some(kind) = method(req.uri().path()) else {
        let why = format!("{} is not an OTLP service method (Export of TraceService, MetricsService or LogsService)", req.uri().path());
        return refuse(&door, UNIMPLEMENTED, &why);
    };
    let ingest = match door.ingest(kind) {
        Ok(i) => i,
        Err(why) => return refuse(&door, UNIMPLEMENTED, &why),
    };
    let encoding = req.headers().get("grpc-encoding").and_then(|v| v.to_str().ok()).map(str::to_string);
    let declared = serve::declared_length(&req);
    let (body, _held) = match door.bodies.read(req.into_body(), declared, message::MAX_BODY + 5).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return refuse(&door, RESOURCE_EXHAUSTED, &BadRequest::TooLarge.to_string()),
        Err(BodyError::Busy) => return unavailable(&door.bodies.busy()),
        Err(BodyError::Slow) => {
            return refuse(&door, DEADLINE_EXCEEDED, &format!("the request did not arrive within {} s", bodies::BODY_TIMEOUT.as_secs()))
        }
        Err(BodyError::Broken(e)) => return refuse(&door, INVALID_ARGUMENT, &format!("cannot read the request: {e}")),
    };
    let msg = match unframe(body, encoding.as_deref()) {
        Ok(m) => m,
        Err((code, why)) => return refuse(&door, code, &why),
    };
    let accepted = match kind {
        Kind::Traces => receiver::accept::<ExportTraceServiceRequest>(&ingest, Format::Protobuf, msg),
        Kind::Metrics => receiver::accept::<ExportMetricsServiceRequest>(&ingest, Format::Protobuf, msg),
        Kind::Logs => receiver::accept::<ExportLogsServiceRequest>(&ingest, Format::Protobuf, msg),
    };
    match accepted {
        Ok((Accepted::Queued { rejected, why }, answer)) => {
            let response = answer(Format::Protobuf, rejected, &why);
            let mut framed = Vec::with_capacity(5 + response.len());
            framed.push(0);
            framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
            framed.extend_from_slice(&response);
            reply(framed, OK, "", None)
        }
        Ok((Accepted::Full, _)) => unavailable("every upstream's buffer is full (is the upstream down?); retry later"),
        Err(e @ (BadRequest::TooLarge | BadRequest::TooMany(_))) => refuse(&door, RESOURCE_EXHAUSTED, &e.to_string()),
        Err(e) => refuse(&door, INVALID_ARGUMENT, &e.to_string()),
    }
}

/// UNAVAILABLE with a RetryInfo: the SDK keeps the data and sends it again after `RETRY_AFTER`.
fn unavailable(why: &str) -> Reply {
    let retry = RetryInfo { retry_delay: Some(ProtoDuration { seconds: RETRY_AFTER.as_secs() as i64, nanos: 0 }) };
    let details = Status {
        code: UNAVAILABLE,
        message: why.to_string(),
        details: vec![Any { type_url: "type.googleapis.com/google.rpc.RetryInfo".into(), value: retry.encode_to_vec() }],
    };
    reply(Vec::new(), UNAVAILABLE, why, Some(details.encode_to_vec()))
}

/// The one message of a unary call, decompressed if its flag says so.
fn unframe(body: Bytes, encoding: Option<&str>) -> Result<Bytes, (i32, String)> {
    if body.len() < 5 {
        return Err((INVALID_ARGUMENT, "the request is not a gRPC message (shorter than its 5-byte prefix)".into()));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() - 5 != len {
        return Err((
            INVALID_ARGUMENT,
            format!("the gRPC message prefix says {len} bytes but {} followed (Export takes one message)", body.len() - 5),
        ));
    }
    let msg = body.slice(5..);
    match (body[0], encoding) {
        (0, _) => Ok(msg),
        (1, Some(e)) if e != "identity" => message::decompress(Some(e), msg).map_err(|e| match e {
            BadRequest::TooLarge | BadRequest::TooMany(_) => (RESOURCE_EXHAUSTED, e.to_string()),
            BadRequest::Encoding(_) => (UNIMPLEMENTED, e.to_string()),
            e => (INTERNAL, e.to_string()),
        }),
        (1, _) => Err((INTERNAL, "the message is flagged compressed but grpc-encoding names no compression".into())),
        (flag, _) => Err((INVALID_ARGUMENT, format!("the gRPC message's compressed flag is {flag} (0 or 1)"))),
    }
}

fn refuse(door: &Door, code: i32, why: &str) -> Reply {
    door.said(&format!("gRPC status {code}"), why);
    reply(Vec::new(), code, why, None)
}

/// A gRPC answer: HTTP 200, the framed message (if any), the status in the trailers.
fn reply(framed: Vec<u8>, code: i32, message: &str, details: Option<Vec<u8>>) -> Reply {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(code));
    if !message.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
            trailers.insert("grpc-message", v);
        }
    }
    if let Some(d) = details {
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(d);
        if let Ok(v) = HeaderValue::from_str(&b64) {
            trailers.insert("grpc-status-details-bin", v);
        }
    }
    let mut r = Response::new(Body::with_trailers(framed, trailers));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    r
}

/// grpc-message's encoding: printable ASCII as it is, everything else (and `%`) as %XX.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_unframed_and_decompressed() {
        let framed = |flag: u8, m: &[u8]| {
            let mut v = vec![flag];
            v.extend_from_slice(&(m.len() as u32).to_be_bytes());
            v.extend_from_slice(m);
            Bytes::from(v)
        };
        assert_eq!(&unframe(framed(0, b"abc"), None).unwrap()[..], b"abc");
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello").unwrap();
        assert_eq!(&unframe(framed(1, &gz.finish().unwrap()), Some("gzip")).unwrap()[..], b"hello");
        assert_eq!(unframe(framed(1, b"x"), None).unwrap_err().0, INTERNAL);
        assert_eq!(unframe(framed(1, b"x"), Some("snappy")).unwrap_err().0, UNIMPLEMENTED);
        assert_eq!(unframe(Bytes::from_static(b"\0\0\0\0\x09abc"), None).unwrap_err().0, INVALID_ARGUMENT, "length mismatch");
        assert_eq!(unframe(Bytes::from_static(b"\0\0"), None).unwrap_err().0, INVALID_ARGUMENT);
    }

    #[test]
    fn a_full_buffer_says_when_to_retry() {
        let retry = RetryInfo { retry_delay: Some(ProtoDuration { seconds: 5, nanos: 0 }) };
        let status = Status {
            code: UNAVAILABLE,
            message: "full".into(),
            details: vec![Any { type_url: "type.googleapis.com/google.rpc.RetryInfo".into(), value: retry.encode_to_vec() }],
        };
        let r = reply(Vec::new(), UNAVAILABLE, "full", Some(status.encode_to_vec()));
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/grpc");
        let b64 = {
            let mut body = r.into_body();
            let trailers = futures_trailers(&mut body);
            assert_eq!(trailers["grpc-status"], "14");
            trailers["grpc-status-details-bin"].to_str().unwrap().to_string()
        };
        let back = Status::decode(&base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64).unwrap()[..]).unwrap();
        let info = RetryInfo::decode(&back.details[0].value[..]).unwrap();
        assert_eq!(info.retry_delay.unwrap().seconds, 5);
        assert_eq!(percent_encode("50% off\nnow"), "50%25 off%0Anow");
    }

    /// The trailers of a body whose data is empty.
    fn futures_trailers(body: &mut Body) -> HeaderMap {
        use http_body::Body as _;
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        loop {
            match std::pin::Pin::new(&mut *body).poll_frame(&mut cx) {
                std::task::Poll::Ready(Some(Ok(f))) if f.is_trailers() => return f.into_trailers().unwrap(),
                std::task::Poll::Ready(Some(_)) => continue,
                other => panic!("no trailers: {:?}", other.is_ready()),
            }
        }
    }
}
