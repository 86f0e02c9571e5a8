//! The X-Ray daemon's other job: a TCP endpoint on the same address, where the SDKs ask for
//! centralized sampling rules (`POST /GetSamplingRules`) and report their statistics
//! (`POST /SamplingTargets`). The agent passes each request to X-Ray as it came, SigV4-signed
//! with the task role's credentials, and the answer back as it came — as the daemon does, so
//! fields newer than the agent (adaptive sampling's boost documents, say) pass through. Unlike
//! the daemon, it never forwards a request unsigned: without credentials it answers 503 and says
//! why. Anything else is 404.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{Mutex, OnceCell};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::aws::http::{self as aws_http, HttpClient, Signer};
use crate::aws::Shared;
use crate::relay::bodies::{self, Bodies, BodyError};
use crate::relay::serve::{self, Body, Reply};

/// The largest request body taken: sampling requests are a few KB (a statistics document per
/// rule); anything larger is refused with 413 before it is read.
pub const MAX_BODY: usize = 256 << 10;

/// How long one call to X-Ray may take, connection included (the SDKs poll again later).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What every request shares: the AWS configuration, one signer (its credentials and day key),
/// and one HTTPS client, made on the first request (root certificates cost memory).
struct Upstream {
    aws: Shared,
    signer: Mutex<Signer>,
    client: OnceCell<Result<HttpClient, String>>,
    bodies: Bodies,
}

/// What the sampling requests' bodies may hold at once (they are a few KB each).
const BODIES_IN_FLIGHT: usize = 1 << 20;
/// Sampling requests being read at once (an SDK asks every few seconds).
const REQUESTS_IN_FLIGHT: usize = 64;

/// Serves until `cancel`. The listener is bound by the caller, so a taken port is its error.
pub async fn serve(listener: tokio::net::TcpListener, cancel: CancellationToken, aws: Shared) {
    let upstream = Arc::new(Upstream {
        aws,
        signer: Mutex::new(Signer::new("xray")),
        client: OnceCell::new(),
        bodies: Bodies::new(BODIES_IN_FLIGHT, REQUESTS_IN_FLIGHT),
    });
    serve::serve("X-Ray sampling", listener, cancel, move |req| handle(req, upstream.clone())).await
}

pub fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    serve::bind(address)
}

fn reply(status: StatusCode, body: Bytes) -> Result<Reply, Infallible> {
    let mut r = Response::new(Body::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    Ok(r)
}

fn say(status: StatusCode, message: String) -> Result<Reply, Infallible> {
    reply(status, Bytes::from(json!({ "message": message }).to_string()))
}

async fn handle(req: Request<Incoming>, upstream: Arc<Upstream>) -> Result<Reply, Infallible> {
    crate::fault::point("sampling");
    let path = match (req.method(), req.uri().path()) {
        (&Method::POST, p @ ("/GetSamplingRules" | "/SamplingTargets")) => p,
        (m, p) => {
            debug!(method = %m, path = p, "sampling proxy: not found");
            return say(StatusCode::NOT_FOUND, "the agent proxies only POST /GetSamplingRules and POST /SamplingTargets".into());
        }
    };
    let path = path.to_string();
    let declared = serve::declared_length(&req);
    let (body, _held) = match upstream.bodies.read(req.into_body(), declared, MAX_BODY).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return say(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {} KiB; sampling requests are a few KB", MAX_BODY >> 10))
        }
        Err(BodyError::Busy) => {
            let mut r = say(StatusCode::SERVICE_UNAVAILABLE, upstream.bodies.busy())?;
            r.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(r);
        }
        Err(BodyError::Slow) => {
            return say(StatusCode::REQUEST_TIMEOUT, format!("the body did not arrive within {} s", bodies::BODY_TIMEOUT.as_secs()))
        }
        Err(BodyError::Broken(e)) => return say(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}")),
    };
    // X-Ray would refuse it too, with less to go on.
    let body = if body.is_empty() { Bytes::from_static(b"{}") } else { body };
    if let Err(e) = serde_json::from_slice::<Value>(&body) {
        return say(StatusCode::BAD_REQUEST, format!("the body of {path} is not JSON: {e}"));
    }
    let client = upstream.client.get_or_init(|| async { aws_http::client(aws_http::plain_endpoint("XRAY"), upstream.aws.proxy()) }).await;
    let client = match client {
        Ok(c) => c.clone(),
        Err(e) => return say(StatusCode::SERVICE_UNAVAILABLE, format!("sampling proxy: {e}")),
    };
    let sdk = upstream.aws.get().await;
    let req = {
        let mut signer = upstream.signer.lock().await;
        let url = match signer.url(sdk, &path) {
            Ok(u) => u,
            Err(e) => return say(StatusCode::SERVICE_UNAVAILABLE, e.message),
        };
        // Never forward unsigned: no credentials, no call.
        match signer.json_post(sdk, url, body).await {
            Ok(req) => req,
            Err(e) => {
                warn!("sampling proxy: no AWS credentials, answering 503: {}", e.message);
                return say(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the agent has no AWS credentials, so it cannot sign sampling requests to X-Ray (it never forwards them unsigned): {}",
                        e.message
                    ),
                );
            }
        }
    };
    match aws_http::exchange(&client, req, CALL_TIMEOUT, &format!("X-Ray {path}")).await {
        Ok((parts, answer)) => {
            if !parts.status.is_success() {
                debug!(status = %parts.status, path, "sampling proxy: X-Ray refused the call");
            }
            reply(parts.status, answer)
        }
        Err(e) => say(StatusCode::BAD_GATEWAY, e),
    }
}
