//! Bench tool: a fast stand-in for X-Ray's PutTraceSegments. `xray_sink PORT` answers every
//! `POST /TraceSegments` with no unprocessed segments and counts the documents it received;
//! `GET /count` returns the count. Nagle is off on every connection (TCP_NODELAY).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

async fn handle(req: Request<Incoming>, count: Arc<AtomicU64>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/count" {
        return Ok(Response::new(Full::new(Bytes::from(count.load(Ordering::SeqCst).to_string()))));
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let docs = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("TraceSegmentDocuments").and_then(|d| d.as_array().map(Vec::len)))
        .unwrap_or(0);
    count.fetch_add(docs as u64, Ordering::SeqCst);
    Ok(Response::new(Full::new(Bytes::from_static(b"{\"UnprocessedTraceSegments\":[]}"))))
}

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("usage: xray_sink PORT");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("ready");
        let count = Arc::new(AtomicU64::new(0));
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            let _ = stream.set_nodelay(true);
            let count = count.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, count.clone()));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
            });
        }
    });
}
