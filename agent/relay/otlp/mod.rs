//! The OTLP half of the relay. The app's OpenTelemetry SDK exports traces, metrics and logs over
//! OTLP/HTTP to 127.0.0.1:4318 (`receiver.rs`, the source); each signal's `Ingest` checks them
//! and cuts them into chunks (`message.rs`, for any signal of `signal.rs`) for the queue of every
//! upstream that takes that signal; the batcher sends each queue to its upstream (`sink.rs`): any
//! OTLP/HTTP endpoint such as Honeycomb, and/or (traces only) X-Ray's OTLP endpoint, SigV4-signed
//! with the task role. `settings.rs` says where, per signal, from the flags and the spec's
//! `OTEL_EXPORTER_OTLP_*` variables.
//!
//! Why relay rather than let the app export directly: the upstream's headers (the Honeycomb API
//! key) stay with the agent and never reach the app's environment; spans survive the app's exit
//! and upstream outages within the budget; and the agent's shutdown flush gets them out before
//! the task stops. Each upstream has its own queue, so one that is down does not hold up another.
//! When every queue is full the receiver answers 503 with Retry-After, so the app's SDK keeps
//! the data and tries again rather than having it dropped here.

pub mod emf;
pub mod estimate;
pub mod grpc;
pub mod message;
pub mod receiver;
pub mod settings;
pub mod signal;
pub mod sink;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::KeyValue;

use self::message::{Chunk, MAX_BYTES, MAX_ITEMS};
use self::signal::{Kind, Signal};
use super::batcher::{Limits, Queue};
use super::counters::Counters;
pub use settings::{Settings, UpstreamConfig};

/// How an OTLP queue is cut into batches: 4,096 items make a batch worth sending early; a batch
/// holds at most X-Ray's 10,000 spans (or data points, or log records) and 1 MiB before compression (small enough that a batch
/// in flight costs little memory, big enough for few requests).
pub const LIMITS: Limits = Limits { ready: 4096, items: usize::MAX, count: MAX_ITEMS, bytes: 1 << 20 };

/// What the app is told to wait when every queue is full.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What became of a request handed to `Ingest::accept`.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Queued, except `rejected` items (invalid, or too big for any budget), for `why`.
    Queued { rejected: u64, why: String },
    /// Every queue is full: nothing was taken; the sender should retry after `RETRY_AFTER`.
    Full,
}

/// Where one signal enters the pipeline, from the HTTP receiver or a converter: the queue of
/// every upstream that takes it, and the counts of what it took (received, rejected, throttled).
pub struct Ingest {
    pub kind: Kind,
    pub queues: Vec<Arc<Queue<Chunk>>>,
    /// Resource attributes added to everything taken (the ECS task's identity; may be empty).
    identity: Arc<Vec<KeyValue>>,
    /// Leave out the agent's own health probe's spans (counted as filtered).
    filter_health: bool,
    pub counters: Counters,
    budget: usize,
    full_said: Mutex<Option<Instant>>,
}

impl Ingest {
    pub fn new(kind: Kind, queues: Vec<Arc<Queue<Chunk>>>, budget: usize, identity: Arc<Vec<KeyValue>>, filter_health: bool) -> Ingest {
        Ingest { kind, queues, identity, filter_health, counters: Counters::default(), budget, full_said: Mutex::new(None) }
    }

    /// Takes a decoded request of this ingest's signal: drops invalid items, queues the rest for
    /// every upstream. `push_back`: the sender can retry (HTTP), so when no queue has room the
    /// request is refused (`Full`) rather than older data dropped for it.
    pub fn accept<S: Signal>(&self, mut request: S, mut original: Option<Bytes>, push_back: bool) -> Accepted {
        debug_assert_eq!(S::KIND, self.kind);
        if self.filter_health {
            let filtered = request.drop_health_probe();
            if filtered > 0 {
                Counters::add(&self.counters.filtered, filtered);
                original = None;
            }
        }
        let mut checked = message::check(request);
        // Added attributes change the encoding: the request's own bytes no longer fit.
        let original = if message::enrich(&mut checked.request, &self.identity) { None } else { original };
        let (items, invalid) = (checked.items, checked.invalid);
        let mut why = Vec::new();
        if invalid > 0 {
            why.push(format!("{invalid} {} had {}", self.kind.unit(), invalid_reason(self.kind)));
        }
        let chunks = message::chunks(checked, original, MAX_ITEMS, MAX_BYTES);
        let bytes: usize = chunks.iter().map(|c| c.body.len()).sum();
        if bytes > self.budget {
            Counters::add(&self.counters.received, items + invalid);
            Counters::add(&self.counters.rejected, items + invalid);
            why.push(format!(
                "{items} {} ({bytes} bytes) would not fit in --otlp-buffer ({} bytes); send smaller batches or raise it",
                self.kind.unit(),
                self.budget
            ));
            return Accepted::Queued { rejected: items + invalid, why: why.join("; ") };
        }
        if push_back && items > 0 && !self.queues.iter().any(|q| q.has_room(bytes)) {
            Counters::add(&self.counters.throttled, items + invalid);
            self.say_full();
            return Accepted::Full;
        }
        Counters::add(&self.counters.received, items + invalid);
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
            tracing::warn!(upstreams = %names.join(", "), signal = self.kind.var(), "every OTLP upstream's buffer is full (is the upstream down?); answering 503 with Retry-After so the app's SDK keeps its data (said at most once a minute; see 'throttled' in the counts)");
        }
    }
}

/// Why a signal's items are dropped as invalid (`Signal::valid`).
fn invalid_reason(kind: Kind) -> &'static str {
    match kind {
        Kind::Traces => "an invalid trace or span ID (16 and 8 bytes, not all zero)",
        Kind::Metrics => "no metric name",
        Kind::Logs => "a trace or span ID of the wrong size (16 and 8 bytes, or none)",
    }
}
