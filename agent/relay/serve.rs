//! The one way the relays serve HTTP (the OTLP receiver, OTLP/gRPC, the X-Ray sampling proxy):
//! HTTP/1.1, or HTTP/2 without TLS (h2c, which is how OTLP/gRPC arrives) when a connection opens
//! with the HTTP/2 preface — on the same port — on a listener the caller bound at start (so a taken port is reported before the app runs), one
//! task per connection, until the source token is cancelled; then in-flight requests finish
//! (the caller bounds the wait by the shutdown deadline) so what was answered 2xx is in a queue
//! before the sinks flush.
//!
//! Bounded: at most `MAX_CONNECTIONS` at once (more are closed at once), request headers must
//! arrive within `HEADER_TIMEOUT` and fit in `MAX_HEADERS`, an HTTP/2 client may have at most
//! `H2_CONNECTION_WINDOW` unread, and bodies are read within each listener's budget
//! (`bodies.rs`) and limit. An accept
//! that fails for lack of file descriptors (EMFILE, ENFILE) pauses the loop instead of spinning.
//! An HTTP/2 connection carries at most `MAX_STREAMS` requests at once, and is closed once the
//! client has made the agent reset `MAX_RESETS` of its streams (tests/hostile.rs: 200
//! connections opening 32 calls each, and 100 each, had grown PID 1 by 22 and 26 MB).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderMap;
use http_body::{Frame, SizeHint};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

pub type Reply = Response<Body>;

/// A response body: its bytes, then (gRPC's status) trailers.
#[derive(Debug, Default)]
pub struct Body {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body {
    pub fn new(data: impl Into<Bytes>) -> Body {
        Body { data: Some(data.into()), trailers: None }
    }

    pub fn with_trailers(data: impl Into<Bytes>, trailers: HeaderMap) -> Body {
        Body { data: Some(data.into()), trailers: Some(trailers) }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take().filter(|d| !d.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.as_ref().map_or(true, |d| d.is_empty()) && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.trailers {
            None => SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64)),
            Some(_) => SizeHint::default(),
        }
    }
}

pub const MAX_CONNECTIONS: usize = 256;
/// Requests at once on one HTTP/2 connection (an SDK's exporter sends one at a time; a
/// stalled call costs about 3 KB in hyper and h2 until it ends).
pub const MAX_STREAMS: u32 = 8;
/// Streams of one HTTP/2 connection the agent may reset for the client's errors (opening more
/// than `MAX_STREAMS` at once, mostly) before it closes the connection (GOAWAY,
/// ENHANCE_YOUR_CALM). Each reset stream holds memory in h2 until the connection ends: with
/// hyper's default, 1,024, 200 connections opening 100 calls each grew PID 1 by 26 MB.
const MAX_RESETS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers, at most (hyper's HTTP/1 read buffer; HTTP/2's header list).
const MAX_HEADERS: usize = 64 << 10;
/// What an HTTP/2 client may send before the agent reads it, per request and per connection:
/// the protocol's initial 64 KiB (hyper's defaults, 1 MiB and more, would let 256 connections
/// park hundreds of MB; with these they park at most 16 MB).
const H2_STREAM_WINDOW: u32 = 65_535;
const H2_CONNECTION_WINDOW: u32 = 65_535;
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
    let component: std::sync::Arc<str> = format!("{name} listener").into();
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
        let (handle, cancel) = (handle.clone(), cancel.clone());
        // A panic serving one connection ends that connection only (tokio catches it).
        connections.spawn(crate::panics::named(component.clone(), async move {
            let svc = hyper::service::service_fn(handle);
            let io = hyper_util::rt::TokioIo::new(stream);
            match opening(io.inner()).await {
                Opening::Nothing => {}
                Opening::Http2 => {
                    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .timer(hyper_util::rt::TokioTimer::new())
                        .max_concurrent_streams(MAX_STREAMS)
                        .max_local_error_reset_streams(MAX_RESETS)
                        .max_header_list_size(MAX_HEADERS as u32)
                        .initial_stream_window_size(H2_STREAM_WINDOW)
                        .initial_connection_window_size(H2_CONNECTION_WINDOW)
                        .serve_connection(io, svc);
                    drive(conn, &cancel, |c| c.graceful_shutdown()).await
                }
                Opening::Http1 => {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .max_buf_size(MAX_HEADERS)
                        .serve_connection(io, svc);
                    drive(conn, &cancel, |c| c.graceful_shutdown()).await
                }
            }
        }));
    }
    connections.close();
    connections.wait().await;
}

/// Serves a connection until it ends or `cancel`; then the requests under way are finished
/// (`shutdown` starts a graceful close) before it closes.
async fn drive<C: Future>(conn: C, cancel: &CancellationToken, shutdown: fn(Pin<&mut C>)) {
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = cancel.cancelled() => {
            shutdown(conn.as_mut());
            let _ = conn.await;
        }
    }
}

enum Opening {
    Http1,
    Http2,
    /// Closed, or silent for `HEADER_TIMEOUT`.
    Nothing,
}

/// How a connection opens: with the HTTP/2 preface or not (peeked, so the server that takes
/// it sees every byte).
async fn opening(stream: &tokio::net::TcpStream) -> Opening {
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
    match peek.await {
        Ok(n) if n >= buf.len() && buf == H2_PREFACE => Opening::Http2,
        Ok(n) if n > 0 => Opening::Http1,
        _ => Opening::Nothing,
    }
}

/// A listener for `serve`, bound now, non-blocking for tokio.
pub fn bind(address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(address)?;
    l.set_nonblocking(true)?;
    Ok(l)
}
