//! What happened to every segment: received, sent, rejected (bad datagram or refused by the
//! API), dropped (over the budget, or unsent at shutdown) and retried.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub rejected: AtomicU64,
    pub dropped: AtomicU64,
    pub retried: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub received: u64,
    pub sent: u64,
    pub rejected: u64,
    pub dropped: u64,
    pub retried: u64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            received: self.received.load(Relaxed),
            sent: self.sent.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            retried: self.retried.load(Relaxed),
        }
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} sent={} rejected={} dropped={} retried={}",
            self.received, self.sent, self.rejected, self.dropped, self.retried
        )
    }
}
