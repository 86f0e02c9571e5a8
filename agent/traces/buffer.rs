//! Segments waiting to be sent, within a byte budget: when a new segment would go over the
//! budget, the oldest are dropped (and counted), so memory stays bounded however long the
//! upstream is away, and what is kept is the most recent.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct Buffer {
    queue: VecDeque<String>,
    bytes: usize,
    budget: usize,
}

impl Buffer {
    pub fn new(budget: usize) -> Self {
        Buffer { queue: VecDeque::new(), bytes: 0, budget }
    }

    /// Adds a segment at the back; returns how many old ones were dropped to make room.
    pub fn push(&mut self, segment: String) -> u64 {
        self.bytes += segment.len();
        self.queue.push_back(segment);
        self.trim()
    }

    /// Puts a batch that could not be sent back at the front, oldest first; returns drops.
    pub fn put_back(&mut self, batch: Vec<String>) -> u64 {
        for s in batch.into_iter().rev() {
            self.bytes += s.len();
            self.queue.push_front(s);
        }
        self.trim()
    }

    fn trim(&mut self) -> u64 {
        let mut dropped = 0;
        while self.bytes > self.budget {
            match self.queue.pop_front() {
                Some(old) => {
                    self.bytes -= old.len();
                    dropped += 1;
                }
                None => break,
            }
        }
        dropped
    }

    /// Takes up to `n` of the oldest segments.
    pub fn take(&mut self, n: usize) -> Vec<String> {
        let n = n.min(self.queue.len());
        let batch: Vec<String> = self.queue.drain(..n).collect();
        self.bytes -= batch.iter().map(String::len).sum::<usize>();
        batch
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_oldest_over_budget_and_keeps_order() {
        let mut b = Buffer::new(10);
        assert_eq!(b.push("aaaa".into()), 0);
        assert_eq!(b.push("bbbb".into()), 0);
        assert_eq!(b.push("cccc".into()), 1, "aaaa goes");
        assert_eq!(b.bytes(), 8);
        assert_eq!(b.take(1), ["bbbb"]);
        assert_eq!(b.put_back(vec!["xxxx".into(), "yyyy".into()]), 1, "over budget again: the oldest goes");
        assert_eq!(b.take(10), ["yyyy", "cccc"]);
        assert!(b.is_empty() && b.bytes() == 0);
    }
}
