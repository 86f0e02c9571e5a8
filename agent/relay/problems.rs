//! Problems, each kind logged the first time it happens and counted after that, so an upstream
//! that is down for an hour costs one warning line, not thousands; the counts are logged at
//! shutdown. Kinds may come from client text (a Content-Type, a backend's error code), so the
//! map has a cap: past `MAX_KINDS` kinds, new ones are counted together as "other".

use std::collections::HashMap;

use tracing::warn;

/// Distinct kinds remembered, at most.
pub const MAX_KINDS: usize = 64;
const OTHER: &str = "other (more kinds than the agent keeps apart)";

#[derive(Debug, Default)]
pub struct Problems {
    kinds: HashMap<String, u64>,
}

impl Problems {
    /// Counts a kind of problem, and logs `message` the first time it is seen.
    pub fn once(&mut self, kind: &str, message: impl FnOnce() -> String) {
        let key = if self.kinds.contains_key(kind) || self.kinds.len() < MAX_KINDS - 1 { kind } else { OTHER };
        let n = self.kinds.entry(key.to_string()).or_insert(0);
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

    pub fn kinds(&self) -> usize {
        self.kinds.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_client_text_are_capped() {
        let mut p = Problems::default();
        for i in 0..10_000 {
            p.once(&format!("content-type:{i}"), || "x".into());
        }
        assert_eq!(p.kinds(), MAX_KINDS);
        assert_eq!(p.kinds[OTHER], 10_000 - (MAX_KINDS as u64 - 1));
    }
}
