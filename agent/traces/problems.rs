//! Export problems, each kind logged the first time it happens and counted after that, so an
//! upstream that is down for an hour costs one warning line, not thousands; the counts are
//! logged at shutdown.

use std::collections::HashMap;

use tracing::warn;

#[derive(Debug, Default)]
pub struct Problems {
    kinds: HashMap<String, u64>,
}

impl Problems {
    /// Counts a kind of problem, and logs `message` the first time it is seen.
    pub fn once(&mut self, kind: &str, message: impl FnOnce() -> String) {
        let n = self.kinds.entry(kind.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            warn!("{}", message());
        }
    }

    /// At shutdown: how often each kind of problem happened, for `what` (an upstream's name).
    pub fn log_counts(&self, what: &str) {
        let mut kinds: Vec<_> = self.kinds.iter().collect();
        kinds.sort();
        for (kind, n) in kinds {
            warn!(upstream = what, kind = %kind, count = n, "export problems");
        }
    }
}
