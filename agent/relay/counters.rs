//! What happened to every item a relay took in, per upstream: received, sent, rejected (a bad
//! datagram or span, or refused by the backend), dropped (over the budget, or unsent at the
//! deadline), retried (sent again after a failure that may pass), and throttled (refused at the
//! door with 503 because every buffer was full, so the app's SDK kept it and tries again), and
//! filtered (the agent's own health probe's spans, left out on purpose; like throttled, never
//! received). At the end, received = sent + rejected + dropped for each; the final log line says
//! whether it holds.
//!
//! Also `ExportHealth`: whether exports are failing and since when, for `agent health`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub rejected: AtomicU64,
    pub dropped: AtomicU64,
    pub retried: AtomicU64,
    pub throttled: AtomicU64,
    pub filtered: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub received: u64,
    pub sent: u64,
    pub rejected: u64,
    pub dropped: u64,
    pub retried: u64,
    pub throttled: u64,
    pub filtered: u64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Relaxed);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            received: self.received.load(Relaxed),
            sent: self.sent.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            retried: self.retried.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            filtered: self.filtered.load(Relaxed),
        }
    }
}

impl Snapshot {
    /// Whether every item received is accounted for (true at the end of a shutdown).
    pub fn balanced(&self) -> bool {
        self.received == self.sent + self.rejected + self.dropped
    }

    /// Logs the counts of `what` ("X-Ray segments") for `upstream`; `last`: the final line,
    /// which also says whether they add up.
    pub fn log(&self, what: &str, upstream: &str, last: bool) {
        let s = self;
        if !last {
            tracing::info!(upstream, received = s.received, sent = s.sent, rejected = s.rejected, dropped = s.dropped, retried = s.retried, "{what}");
        } else if s.balanced() {
            tracing::info!(
                upstream,
                received = s.received,
                sent = s.sent,
                rejected = s.rejected,
                dropped = s.dropped,
                retried = s.retried,
                filtered = s.filtered,
                "{what}, final counts (received = sent + rejected + dropped)"
            );
        } else {
            tracing::warn!(
                upstream,
                received = s.received,
                sent = s.sent,
                rejected = s.rejected,
                dropped = s.dropped,
                retried = s.retried,
                "{what}, final counts do not add up (a bug: please report it)"
            );
        }
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} sent={} rejected={} dropped={} retried={} throttled={} filtered={}",
            self.received, self.sent, self.rejected, self.dropped, self.retried, self.throttled, self.filtered
        )
    }
}

/// Whether exports are failing, and since when: for `agent health` (`--health-exports-failing`).
#[derive(Debug, Default)]
pub struct ExportHealth {
    state: Mutex<Option<(SystemTime, String)>>,
}

impl ExportHealth {
    pub(crate) fn failed(&self, reason: &str) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_mut() {
            Some((_, r)) => *r = reason.to_string(),
            None => *g = Some((SystemTime::now(), reason.to_string())),
        }
    }

    pub(crate) fn succeeded(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Since when exports have failed, and the last reason; `None` while they work.
    pub fn failing(&self) -> Option<(SystemTime, String)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
