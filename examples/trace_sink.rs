//! Bench tool: a fast stand-in for trace backends. `trace_sink PORT` answers X-Ray's
//! `POST /TraceSegments` with no unprocessed segments, counting the documents, and OTLP/HTTP
//! `POST /v1/traces`, `/v1/metrics`, `/v1/logs` (protobuf, gzip or not) with 200, counting the
//! spans, data points or log records; `GET /count` returns the count. Nagle is off on every connection (TCP_NODELAY).

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
    let path = req.uri().path().to_string();
    let otlp = path.starts_with("/v1/");
    let gzip = req.headers().get("content-encoding").is_some_and(|v| v == "gzip");
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if otlp {
        use prost::Message;
        use std::io::Read;
        let mut raw = Vec::new();
        let data: &[u8] = if gzip {
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut raw).expect("gzip");
            &raw
        } else {
            &body
        };
        use opentelemetry_proto::tonic::collector as c;
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let n: usize = match path.as_str() {
            "/v1/metrics" => c::metrics::v1::ExportMetricsServiceRequest::decode(data)
                .expect("OTLP protobuf")
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| match &m.data {
                    Some(Data::Sum(s)) => s.data_points.len(),
                    Some(Data::Gauge(g)) => g.data_points.len(),
                    _ => 0,
                })
                .sum(),
            "/v1/logs" => c::logs::v1::ExportLogsServiceRequest::decode(data)
                .expect("OTLP protobuf")
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum(),
            _ => c::trace::v1::ExportTraceServiceRequest::decode(data)
                .expect("OTLP protobuf")
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum(),
        };
        count.fetch_add(n as u64, Ordering::SeqCst);
        return Ok(Response::new(Full::new(Bytes::new())));
    }
    let docs = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("TraceSegmentDocuments").and_then(|d| d.as_array().map(Vec::len)))
        .unwrap_or(0);
    count.fetch_add(docs as u64, Ordering::SeqCst);
    Ok(Response::new(Full::new(Bytes::from_static(b"{\"UnprocessedTraceSegments\":[]}"))))
}

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("usage: trace_sink PORT");
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
