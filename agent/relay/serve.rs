//! The one way the relays serve HTTP (the OTLP receiver, the X-Ray sampling proxy): HTTP/1 on a
//! listener the caller bound at start (so a taken port is reported before the app runs), one
//! task per connection, until the source token is cancelled; then in-flight requests finish
//! (the caller bounds the wait by the shutdown deadline) so what was answered 2xx is in a queue
//! before the sinks flush.
//!
//! Bounded: at most `MAX_CONNECTIONS` at once (more are closed at once), request headers must
//! arrive within `HEADER_TIMEOUT`, bodies are limited by each handler before reading. An accept
//! that fails for lack of file descriptors (EMFILE, ENFILE) pauses the loop instead of spinning.
//! A connection that opens with the HTTP/2 preface (h2c, gRPC) is closed, and said once.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

pub type Reply = Response<Full<Bytes>>;

pub const MAX_CONNECTIONS: usize = 256;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// The Content-Length a request declares, to refuse an over-limit body before reading it.
pub fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get(hyper::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Serves `handle` on `listener` until `cancel`, then waits for the connections under way.
pub async fn serve<F, Fut>(name: &'static str, listener: tokio::net::TcpListener, cancel: CancellationToken, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Reply, Infallible>> + Send + 'static,
{
    let connections = TaskTracker::new();
    let h2_said = Arc::new(AtomicBool::new(false));
    let mut pause = Duration::from_millis(10);
    let mut fd_said = false;
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => { pause = Duration::from_millis(10); s }
                Err(e) => {
                    // Out of file descriptors (or another passing error): wait rather than spin.
                    if !fd_said && matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                        fd_said = true;
                        warn!(listener = name, error = %e, "cannot accept connections: out of file descriptors; pausing accepts (raise the task's nofile ulimit)");
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        if connections.len() >= MAX_CONNECTIONS {
            continue; // dropped: closed at once
        }
        let _ = stream.set_nodelay(true);
        let (handle, cancel, h2_said) = (handle.clone(), cancel.clone(), h2_said.clone());
        connections.spawn(async move {
            if is_http2(&stream).await {
                if !h2_said.swap(true, Ordering::Relaxed) {
                    let addr = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    warn!(listener = name, address = %addr, "an HTTP/2 connection (h2c or OTLP/gRPC) arrived, but this port serves HTTP/1.1: set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf in the app (further ones are closed silently)");
                }
                return;
            }
            let svc = hyper::service::service_fn(handle);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {
                    // Finish the request under way (if any), then close.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// Whether a connection opens with the HTTP/2 preface (peeked, so HTTP/1 sees every byte).
async fn is_http2(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 14];
    let peek = tokio::time::timeout(HEADER_TIMEOUT, async {
        loop {
            match stream.peek(&mut buf).await {
                Ok(n) if n == 0 || n >= buf.len() || !H2_PREFACE.starts_with(&buf[..n]) => return n,
                Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(_) => return 0,
            }
        }
    });
    matches!(peek.await, Ok(n) if n >= buf.len() && buf == H2_PREFACE)
}

/// A listener for `serve`, bound now, non-blocking for tokio.
pub fn bind(address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(address)?;
    l.set_nonblocking(true)?;
    Ok(l)
}
