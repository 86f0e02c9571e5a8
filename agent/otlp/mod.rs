//! Traces, part II: an OTLP relay. The app's OpenTelemetry SDK exports spans over OTLP/HTTP to
//! the agent on 127.0.0.1:4318 (`receiver.rs`); the agent checks them and cuts them into chunks
//! (`message.rs`), keeps them per upstream within a byte budget, and sends batches to each
//! upstream (`upstream.rs`): any OTLP/HTTP endpoint such as Honeycomb, and/or X-Ray's OTLP
//! endpoint, SigV4-signed with the task role.
//!
//! Why relay rather than let the app export directly: the upstream's headers (the Honeycomb API
//! key) stay with the agent and never reach the app's environment; spans survive the app's exit
//! and upstream outages within the budget; and the agent's shutdown flush gets them out before
//! the task stops, as for X-Ray segments.
//!
//! One thread with a single-threaded runtime runs the receiver and one export loop per upstream.
//! Each upstream has its own buffer, so one that is down does not hold up the other.

pub mod from_xray;
mod message;
mod receiver;
pub mod settings;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::message::{Chunk, MAX_BYTES, MAX_SPANS};
use self::upstream::{Outcome, Upstream};
use crate::traces::buffer::Buffer;
use crate::traces::problems::Problems;
use crate::traces::{Counters, ExportHealth, Snapshot};
pub use settings::{Settings, UpstreamConfig};
pub use upstream::error_chain;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Spans waiting that make a batch worth sending before the flush interval is up.
const BATCH_SPANS: u64 = 4096;
/// A batch's size before compression, at most (but one chunk always goes, up to `MAX_BYTES`):
/// small enough that a batch in flight costs little memory, big enough for few requests.
const BATCH_BYTES: usize = 1 << 20;

/// One upstream's waiting spans and what happened to them.
pub struct Queue {
    pub name: String,
    buffer: Mutex<Buffer<Chunk>>,
    budget: usize,
    ready: Notify,
    pub counters: Counters,
    pub health: Arc<ExportHealth>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer<Chunk>> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the receiver hands spans to: every upstream's queue, and the receiver's own counts.
pub struct Ingest {
    queues: Vec<Arc<Queue>>,
    /// Spans received, and spans and requests refused at the door (`rejected`).
    pub counters: Counters,
    problems: Mutex<Problems>,
}

impl Ingest {
    /// Takes a decoded request: drops invalid spans, queues the rest for every upstream. Returns
    /// how many spans of it were not kept, and why (for the partial-success answer).
    pub fn accept(&self, request: ExportTraceServiceRequest, original: Option<Bytes>) -> (u64, String) {
        let checked = message::check(request);
        let (spans, invalid) = (checked.spans, checked.invalid);
        Counters::add(&self.counters.received, spans + invalid);
        let mut why = Vec::new();
        if invalid > 0 {
            Counters::add(&self.counters.rejected, invalid);
            why.push(format!("{invalid} spans had an invalid trace or span ID (16 and 8 bytes, not all zero)"));
        }
        let chunks = message::chunks(checked, original, MAX_SPANS, MAX_BYTES);
        let bytes: usize = chunks.iter().map(|c| c.body.len()).sum();
        let budget = self.queues.iter().map(|q| q.budget).min().unwrap_or(usize::MAX);
        if bytes > budget {
            Counters::add(&self.counters.rejected, spans);
            why.push(format!("{spans} spans ({bytes} bytes) would not fit in --otlp-buffer ({budget} bytes); send smaller batches or raise it"));
            return (spans + invalid, why.join("; "));
        }
        for q in &self.queues {
            let mut b = q.lock();
            let before = b.count();
            let mut dropped = 0;
            for c in &chunks {
                dropped += b.push(c.clone());
            }
            let now = b.count();
            drop(b);
            Counters::add(&q.counters.received, spans);
            Counters::add(&q.counters.dropped, dropped);
            if before < BATCH_SPANS && now >= BATCH_SPANS {
                q.ready.notify_one();
            }
        }
        (invalid, why.join("; "))
    }

    /// A request refused at the door: logged once per kind, so a misconfigured app shows.
    fn refused(&self, status: u16, why: &str) {
        let kind = format!("refused:{status}:{}", why.split(':').next().unwrap_or(""));
        self.once_warn(&kind, || format!("refused an OTLP request with {status}: {why} (further ones like it are only counted)"));
    }

    fn once_warn(&self, kind: &str, message: impl FnOnce() -> String) {
        self.problems.lock().unwrap_or_else(|e| e.into_inner()).once(kind, message);
    }
}

/// The running relay.
pub struct Relay {
    pub address: SocketAddr,
    pub ingest: Arc<Ingest>,
    stop: CancellationToken,
    flush_timeout: Arc<Mutex<Duration>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Binds the receiver and starts relaying to `upstreams`. A taken address is not fatal: the app
/// runs with its own OTLP settings untouched, and the agent says why it is not relaying.
pub fn start(settings: &Settings, upstreams: Vec<UpstreamConfig>) -> Option<Relay> {
    let listener = match crate::serve::bind(settings.address) {
        Ok(l) => l,
        Err(e) => {
            warn!(address = %settings.address, error = %e, "cannot receive OTLP spans, so the app keeps its own OTLP settings (is a collector sidecar on this port? remove it, or use --otlp-address or --no-otlp)");
            return None;
        }
    };
    let aws = crate::traces::export::SharedConfig::default();
    let mut exporters = Vec::new();
    for cfg in upstreams {
        let name = cfg.name();
        match Upstream::new(cfg, aws.clone()) {
            Ok(u) => exporters.push(u),
            Err(e) => warn!(upstream = %name, "cannot relay OTLP spans there: {e}"),
        }
    }
    if exporters.is_empty() {
        return None;
    }
    let queues: Vec<Arc<Queue>> = exporters
        .iter()
        .map(|u| {
            Arc::new(Queue {
                name: u.name.clone(),
                buffer: Mutex::new(Buffer::new(settings.buffer)),
                budget: settings.buffer,
                ready: Notify::new(),
                counters: Counters::default(),
                health: Arc::new(ExportHealth::default()),
            })
        })
        .collect();
    let ingest = Arc::new(Ingest { queues: queues.clone(), counters: Counters::default(), problems: Mutex::new(Problems::default()) });
    let stop = CancellationToken::new();
    let flush_timeout = Arc::new(Mutex::new(Duration::from_secs(4)));
    let names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
    info!(address = %settings.address, upstreams = %names.join(", "), "relaying OTLP spans");
    let thread = {
        let (ingest, stop, flush, interval) = (ingest.clone(), stop.clone(), flush_timeout.clone(), settings.flush_interval);
        std::thread::Builder::new()
            .name("otlp".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("BUG: OTLP runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("BUG: a bound listener");
                    let i = ingest.clone();
                    let server = tokio::spawn(crate::serve::serve(listener, stop.clone(), move |req| receiver::handle(req, i.clone())));
                    let mut loops = Vec::new();
                    for (up, q) in exporters.into_iter().zip(queues) {
                        loops.push(tokio::spawn(export_loop(up, q, interval, stop.clone(), flush.clone())));
                    }
                    let _ = server.await;
                    for l in loops {
                        let _ = l.await;
                    }
                });
            })
            .expect("BUG: cannot start the OTLP thread")
    };
    Some(Relay { address: settings.address, ingest, stop, flush_timeout, thread: Some(thread) })
}

impl Relay {
    /// The upstreams' export health, for `--health-exports-failing`.
    pub fn health(&self) -> Vec<(String, Arc<ExportHealth>)> {
        self.ingest.queues.iter().map(|q| (q.name.clone(), q.health.clone())).collect()
    }

    /// Stops receiving and starts the final flush, which may take `flush_timeout`; `finish`
    /// waits for it. Two steps so the X-Ray flush can run meanwhile.
    pub fn begin_shutdown(&self, flush_timeout: Duration) {
        *self.flush_timeout.lock().unwrap_or_else(|e| e.into_inner()) = flush_timeout;
        self.stop.cancel();
    }

    /// Waits for the final flush; logs and returns each upstream's final counts.
    pub fn finish(mut self) -> Vec<(String, Snapshot)> {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let r = self.ingest.counters.snapshot();
        info!(received = r.received, rejected = r.rejected, "OTLP spans received, final counts");
        self.ingest
            .queues
            .iter()
            .map(|q| {
                let s = q.counters.snapshot();
                info!(upstream = %q.name, received = s.received, sent = s.sent, rejected = s.rejected, dropped = s.dropped, retried = s.retried, "OTLP spans, final counts");
                (q.name.clone(), s)
            })
            .collect()
    }
}

/// One upstream's sender: full batches as soon as they fill, the rest every `interval`; after a
/// failure that may pass, the batch goes back to the front and the loop pauses (the server's
/// Retry-After, or a jittered, growing backoff). When stopped: a final flush within the timeout.
async fn export_loop(mut up: Upstream, q: Arc<Queue>, interval: Duration, stop: CancellationToken, flush_timeout: Arc<Mutex<Duration>>) {
    let mut sender = Sender { backoff: Backoff::default(), problems: Problems::default() };
    let mut minute = tokio::time::interval(Duration::from_secs(60));
    minute.tick().await;
    let mut last_logged = Snapshot::default();
    loop {
        let partial = tokio::select! {
            _ = stop.cancelled() => break,
            _ = q.ready.notified() => false,
            _ = tokio::time::sleep(interval) => true,
            _ = minute.tick() => {
                let now = q.counters.snapshot();
                if now != last_logged {
                    info!(upstream = %q.name, received = now.received, sent = now.sent, rejected = now.rejected, dropped = now.dropped, retried = now.retried, "OTLP spans");
                    last_logged = now;
                }
                continue;
            }
        };
        while let Some(pause) = sender.send_one(&mut up, &q, partial).await {
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
            break;
        }
    }
    let timeout = *flush_timeout.lock().unwrap_or_else(|e| e.into_inner());
    let deadline = tokio::time::Instant::now() + timeout;
    let flush = async {
        while let Some(pause) = sender.send_one(&mut up, &q, true).await {
            tokio::time::sleep(pause).await;
        }
    };
    let done = tokio::time::timeout_at(deadline, flush).await;
    let left = {
        let mut b = q.lock();
        let n = b.count();
        b.take(usize::MAX);
        n
    };
    if left > 0 || done.is_err() {
        Counters::add(&q.counters.dropped, left);
        warn!(upstream = %q.name, unsent = left, "the flush timeout ran out before every span was sent");
    }
    sender.problems.log_counts(&q.name);
}

struct Sender {
    backoff: Backoff,
    problems: Problems,
}

impl Sender {
    /// Sends one batch if there is one (a full one unless `partial`). `None`: nothing (more) to
    /// send now; `Some(ZERO)`: sent, go on; `Some(pause)`: failed, try again after `pause`.
    async fn send_one(&mut self, up: &mut Upstream, q: &Queue, partial: bool) -> Option<Duration> {
        let batch = {
            let mut b = q.lock();
            if b.is_empty() || (!partial && b.count() < BATCH_SPANS) {
                return None;
            }
            b.take_within(usize::MAX, MAX_SPANS, BATCH_BYTES)
        };
        let spans: u64 = batch.iter().map(|c| c.spans).sum();
        match up.send(&batch).await {
            Outcome::Sent { rejected, reason } => {
                q.health.succeeded();
                self.backoff = Backoff::default();
                let rejected = rejected.min(spans);
                Counters::add(&q.counters.sent, spans - rejected);
                if rejected > 0 {
                    Counters::add(&q.counters.rejected, rejected);
                    self.problems.once("partial", || format!("{} refused some spans: {reason} (further refusals are counted as rejected)", up.name));
                }
                Some(Duration::ZERO)
            }
            Outcome::Retry { reason, after } => {
                q.health.failed(&reason);
                self.problems.once(&format!("retry:{}", reason.split(':').next().unwrap_or("")), || {
                    format!("{reason}; keeping the spans and retrying")
                });
                Counters::add(&q.counters.retried, spans);
                let dropped = q.lock().put_back(batch);
                Counters::add(&q.counters.dropped, dropped);
                Some(after.unwrap_or_else(|| self.backoff.next()).max(Duration::from_millis(50)))
            }
            Outcome::Failed(reason) => {
                q.health.failed(&reason);
                self.problems.once(&format!("failed:{}", reason.split(':').next().unwrap_or("")), || format!("{reason}; the batch is dropped"));
                Counters::add(&q.counters.dropped, spans);
                Some(Duration::ZERO)
            }
        }
    }
}

/// A jittered, doubling pause: 200 ms, 400 ms, … up to `MAX_BACKOFF`.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(200))
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let pause = self.0.mul_f64(0.5 + fastrand::f64());
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        pause
    }
}

/// The environment the app would get: the agent's own, without `removed`, with `secrets` on top.
pub fn app_env(secrets: &[(std::ffi::OsString, std::ffi::OsString)], removed: &[String]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    for (k, v) in secrets {
        if let (Some(k), Some(v)) = (k.to_str(), v.to_str()) {
            env.insert(k.to_string(), v.to_string());
        }
    }
    for k in removed {
        env.remove(k);
    }
    env
}
