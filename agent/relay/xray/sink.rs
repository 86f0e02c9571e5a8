//! Sending batches to X-Ray with PutTraceSegments: `POST /TraceSegments` with a JSON body
//! `{"TraceSegmentDocuments": [...]}`, SigV4-signed with the SDK's signer and credentials
//! (`aws_http.rs`), its answer's `UnprocessedTraceSegments` read back.
//!
//! Why not the SDK's PutTraceSegments call: at 20,000 segments a second its per-call machinery
//! and its byte-at-a-time JSON string escaping cost ~10 µs of CPU per segment, more than the
//! daemon's whole job should (BENCHMARKS.md); this request is one JSON envelope, each document
//! escaped by the `jsonstr` crate (built for speed: serde_json's generic escaper, compiled
//! here at opt-level "z", was a quarter of the relay's CPU). The sampling proxy, a few calls a
//! minute, still uses the SDK.
//!
//! Unlike the daemon, which drops a batch on any API error, a batch that failed for a reason
//! that may pass (throttling, 5xx, timeouts, no connection) goes back to the front of the
//! queue and the batcher tries it again after a pause; segments the API refuses for good are
//! counted as rejected and each kind of error is logged once, with its count at shutdown.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::segments::Segments;
use crate::aws::http::{self as aws_http, HttpClient, SignError, Signer};
use crate::aws::Shared;
use crate::relay::batcher::{Sent, Sink};
use crate::relay::buffer::Item;

/// The PutTraceSegments sink.
pub struct PutTraceSegments {
    /// Made on the first send: loading the system's root certificates costs about a megabyte,
    /// which an app that never sends a segment should not pay (idle RSS, BENCHMARKS.md).
    client: Option<Result<HttpClient, String>>,
    signer: Signer,
    aws: Shared,
}

#[derive(Deserialize)]
struct IdOnly {
    id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Answer {
    unprocessed_trace_segments: Vec<Unprocessed>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Unprocessed {
    id: Option<String>,
    error_code: Option<String>,
    message: Option<String>,
}

/// An AWS JSON error answer: `{"__type": "...", "message": "..."}` (some services say `Message`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiError {
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

/// How long one PutTraceSegments call may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure that may pass: the whole batch is kept (all such failures are one kind of problem,
/// logged once).
fn retry(batch: Vec<Segments>, reason: impl std::fmt::Display) -> Sent<Segments> {
    Sent::Retry { batch, reason: format!("X-Ray is not taking segments: {reason}"), after: None }
}

fn retry_or_fail(e: SignError, batch: Vec<Segments>) -> Sent<Segments> {
    if e.retry {
        retry(batch, e.message)
    } else {
        Sent::Failed { reason: e.message }
    }
}

impl PutTraceSegments {
    pub fn new(aws: Shared) -> Self {
        PutTraceSegments { client: None, signer: Signer::new("xray"), aws }
    }

    async fn put(&mut self, batch: Vec<Segments>) -> Sent<Segments> {
        let proxy = self.aws.proxy();
        let client = self.client.get_or_insert_with(|| aws_http::client(aws_http::plain_endpoint("XRAY"), proxy));
        let client = match client {
            Ok(c) => c.clone(),
            Err(e) => return Sent::Failed { reason: format!("PutTraceSegments: {e}") },
        };
        let sdk = self.aws.get().await;
        let url = match self.signer.url(sdk, "/TraceSegments") {
            Ok(u) => u,
            Err(e) => return retry_or_fail(e, batch),
        };
        // Room for the usual escaping (a `"` in ten bytes) and jsonstr's reservation for a piece,
        // so the body is not grown (and copied) while it is written.
        let mut body = Vec::with_capacity(batch.iter().map(|s| s.bytes() * 11 / 10 + s.len() * 8).sum::<usize>() + 8 * 1024);
        body.extend_from_slice(b"{\"TraceSegmentDocuments\":[");
        for (i, doc) in batch.iter().flat_map(Segments::iter).enumerate() {
            if i > 0 {
                body.push(b',');
            }
            jsonstr::push(&mut body, doc);
        }
        body.extend_from_slice(b"]}");
        let body = Bytes::from(body);
        let req = match self.signer.json_post(sdk, url, body).await {
            Ok(r) => r,
            Err(e) => return retry_or_fail(e, batch),
        };
        let (parts, body) = match aws_http::exchange(&client, req, CALL_TIMEOUT, "PutTraceSegments").await {
            Err(reason) => return retry(batch, reason),
            Ok(a) => a,
        };
        if !parts.status.is_success() {
            let err: ApiError = serde_json::from_slice(&body).unwrap_or_default();
            // The error type: the x-amzn-ErrorType header, else the body's __type ("prefix#Name").
            let kind = parts
                .headers
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or(err.kind)
                .map(|k| k.split([':', '#']).rfind(|p| !p.is_empty()).unwrap_or("").to_string())
                .unwrap_or_default();
            let text = format!("PutTraceSegments: {} {kind}: {}", parts.status, err.message.unwrap_or_default());
            let transient = kind.contains("Throttl") || parts.status.as_u16() == 429 || parts.status.is_server_error();
            return if transient {
                retry(batch, text)
            } else {
                Sent::Failed { reason: format!("{text} (the task role needs xray:PutTraceSegments)") }
            };
        }
        let answer: Answer = serde_json::from_slice(&body).unwrap_or_default();
        let mut retry = Segments::default();
        let mut refused = 0;
        let mut reason = String::new();
        for u in answer.unprocessed_trace_segments {
            let code = u.error_code.unwrap_or_else(|| "unknown".into());
            let transient = code.contains("Throttl") || code.starts_with('5');
            let doc = u.id.as_deref().and_then(|id| {
                batch.iter().flat_map(Segments::iter).find(|d| serde_json::from_str::<IdOnly>(d).ok().and_then(|x| x.id).as_deref() == Some(id))
            });
            match (transient, doc) {
                (true, Some(d)) => retry.push(d),
                _ => {
                    refused += 1;
                    reason = format!("{code}: {}", u.message.unwrap_or_default());
                }
            }
        }
        let retry = if retry.is_empty() { Vec::new() } else { vec![retry] };
        Sent::Done { rejected: refused, retry, reason }
    }
}

impl Sink for PutTraceSegments {
    type Item = Segments;

    fn send(&mut self, batch: Vec<Segments>) -> impl std::future::Future<Output = Sent<Segments>> + Send {
        self.put(batch)
    }
}
