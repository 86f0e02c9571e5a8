//! The OTLP half of the relay. The app's OpenTelemetry SDK exports spans over OTLP/HTTP to
//! 127.0.0.1:4318 (`receiver.rs`, the source); `Ingest` checks them and cuts them into chunks
//! (`message.rs`) for every upstream's queue; the batcher sends each queue to its upstream
//! (`sink.rs`): any OTLP/HTTP endpoint such as Honeycomb, and/or X-Ray's OTLP endpoint,
//! SigV4-signed with the task role. `settings.rs` says where, from the flags and the spec's
//! `OTEL_EXPORTER_OTLP_*` variables.
//!
//! Why relay rather than let the app export directly: the upstream's headers (the Honeycomb API
//! key) stay with the agent and never reach the app's environment; spans survive the app's exit
//! and upstream outages within the budget; and the agent's shutdown flush gets them out before
//! the task stops. Each upstream has its own queue, so one that is down does not hold up another.
//! When every queue is full the receiver answers 503 with Retry-After, so the app's SDK keeps
//! the spans and tries again rather than having them dropped here.

pub mod message;
pub mod receiver;
pub mod settings;
pub mod sink;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use self::message::{Chunk, MAX_BYTES, MAX_SPANS};
use super::batcher::{Limits, Queue};
use super::counters::Counters;
use super::problems::Problems;
pub use settings::{Settings, UpstreamConfig};

/// How an OTLP queue is cut into batches: 4,096 spans make a batch worth sending early; a batch
/// holds at most X-Ray's 10,000 spans and 1 MiB before compression (small enough that a batch
/// in flight costs little memory, big enough for few requests).
pub const LIMITS: Limits = Limits { ready: 4096, items: usize::MAX, count: MAX_SPANS, bytes: 1 << 20 };

/// What the app is told to wait when every queue is full.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What became of a request handed to `Ingest::accept`.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Queued, except `rejected` spans (invalid, or too big for any budget), for `why`.
    Queued { rejected: u64, why: String },
    /// Every queue is full: nothing was taken; the sender should retry after `RETRY_AFTER`.
    Full,
}

/// Where OTLP spans enter the pipeline, from the HTTP receiver or a converter: every
/// upstream's queue, and the receiver's own counts (spans received, and refused at the door).
pub struct Ingest {
    pub queues: Vec<Arc<Queue<Chunk>>>,
    pub counters: Counters,
    budget: usize,
    problems: Mutex<Problems>,
    full_said: Mutex<Option<Instant>>,
}

impl Ingest {
    pub fn new(queues: Vec<Arc<Queue<Chunk>>>, budget: usize) -> Ingest {
        Ingest { queues, counters: Counters::default(), budget, problems: Mutex::new(Problems::default()), full_said: Mutex::new(None) }
    }

    /// Takes a decoded request: drops invalid spans, queues the rest for every upstream.
    /// `push_back`: the sender can retry (HTTP), so when no queue has room the request is
    /// refused (`Full`) rather than older spans dropped for it.
    pub fn accept(&self, request: ExportTraceServiceRequest, original: Option<Bytes>, push_back: bool) -> Accepted {
        let checked = message::check(request);
        let (spans, invalid) = (checked.spans, checked.invalid);
        let mut why = Vec::new();
        if invalid > 0 {
            why.push(format!("{invalid} spans had an invalid trace or span ID (16 and 8 bytes, not all zero)"));
        }
        let chunks = message::chunks(checked, original, MAX_SPANS, MAX_BYTES);
        let bytes: usize = chunks.iter().map(|c| c.body.len()).sum();
        if bytes > self.budget {
            Counters::add(&self.counters.received, spans + invalid);
            Counters::add(&self.counters.rejected, spans + invalid);
            why.push(format!(
                "{spans} spans ({bytes} bytes) would not fit in --otlp-buffer ({} bytes); send smaller batches or raise it",
                self.budget
            ));
            return Accepted::Queued { rejected: spans + invalid, why: why.join("; ") };
        }
        if push_back && spans > 0 && !self.queues.iter().any(|q| q.has_room(bytes)) {
            Counters::add(&self.counters.throttled, spans + invalid);
            self.say_full();
            return Accepted::Full;
        }
        Counters::add(&self.counters.received, spans + invalid);
        Counters::add(&self.counters.rejected, invalid);
        for q in &self.queues {
            q.push(chunks.iter().cloned());
        }
        Accepted::Queued { rejected: invalid, why: why.join("; ") }
    }

    /// Every queue full: said at most once a minute.
    fn say_full(&self) {
        let mut last = self.full_said.lock().unwrap_or_else(|e| e.into_inner());
        if last.map_or(true, |t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            let names: Vec<&str> = self.queues.iter().map(|q| q.name.as_str()).collect();
            tracing::warn!(upstreams = %names.join(", "), "every OTLP upstream's buffer is full (is the upstream down?); answering 503 with Retry-After so the app's SDK keeps its spans (said at most once a minute; see 'throttled' in the counts)");
        }
    }

    /// A request refused at the door: logged once per kind, so a misconfigured app shows.
    pub fn refused(&self, status: u16, why: &str) {
        let kind = format!("refused:{status}:{}", why.split(':').next().unwrap_or(""));
        self.once_warn(&kind, || format!("refused an OTLP request with {status}: {why} (further ones like it are only counted)"));
    }

    pub fn once_warn(&self, kind: &str, message: impl FnOnce() -> String) {
        self.problems.lock().unwrap_or_else(|e| e.into_inner()).once(kind, message);
    }
}
