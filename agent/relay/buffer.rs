//! Items waiting to be sent, within a byte budget: when a new item would go over the budget, the
//! oldest are dropped (and counted), so memory stays bounded however long the upstream is away,
//! and what is kept is the most recent. Sources that can push back (OTLP over HTTP) ask
//! `has_room` first and answer 503 instead. Used for X-Ray segments (one segment an item) and
//! OTLP spans (one chunk of a request an item).

use std::collections::VecDeque;

/// What the buffer needs to know of an item: its size in bytes, and how many things (segments,
/// spans) it holds, for the counters.
pub trait Item {
    fn bytes(&self) -> usize;
    fn count(&self) -> u64 {
        1
    }
}

impl Item for String {
    fn bytes(&self) -> usize {
        self.len()
    }
}

#[derive(Debug)]
pub struct Buffer<T> {
    queue: VecDeque<T>,
    bytes: usize,
    count: u64,
    budget: usize,
}

impl<T: Item> Buffer<T> {
    pub fn new(budget: usize) -> Self {
        Buffer { queue: VecDeque::new(), bytes: 0, count: 0, budget }
    }

    /// Adds an item at the back; returns how many things were dropped to make room.
    pub fn push(&mut self, item: T) -> u64 {
        self.bytes += item.bytes();
        self.count += item.count();
        self.queue.push_back(item);
        self.trim()
    }

    /// Puts a batch that could not be sent back at the front, oldest first; returns drops.
    pub fn put_back(&mut self, batch: Vec<T>) -> u64 {
        for item in batch.into_iter().rev() {
            self.bytes += item.bytes();
            self.count += item.count();
            self.queue.push_front(item);
        }
        self.trim()
    }

    fn trim(&mut self) -> u64 {
        let mut dropped = 0;
        while self.bytes > self.budget {
            match self.queue.pop_front() {
                Some(old) => {
                    self.bytes -= old.bytes();
                    self.count -= old.count();
                    dropped += old.count();
                }
                None => break,
            }
        }
        dropped
    }

    /// Takes the oldest items: at most `max_items`, and no more than `max_count` things and
    /// `max_bytes` bytes in all, except that a first item is always taken.
    pub fn take_within(&mut self, max_items: usize, max_count: u64, max_bytes: usize) -> Vec<T> {
        let (mut n, mut count, mut bytes) = (0, 0, 0);
        for item in self.queue.iter().take(max_items) {
            if n > 0 && (count + item.count() > max_count || bytes + item.bytes() > max_bytes) {
                break;
            }
            n += 1;
            count += item.count();
            bytes += item.bytes();
        }
        self.bytes -= bytes;
        self.count -= count;
        self.queue.drain(..n).collect()
    }

    /// Takes up to `n` of the oldest items.
    pub fn take(&mut self, n: usize) -> Vec<T> {
        self.take_within(n, u64::MAX, usize::MAX)
    }

    /// Whether `bytes` more would fit without dropping anything.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.bytes + bytes <= self.budget
    }

    /// How many items are waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// How many things (segments, spans) the waiting items hold.
    pub fn count(&self) -> u64 {
        self.count
    }

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
        assert_eq!(b.push("aaaa".to_string()), 0);
        assert_eq!(b.push("bbbb".to_string()), 0);
        assert_eq!(b.push("cccc".to_string()), 1, "aaaa goes");
        assert_eq!(b.bytes(), 8);
        assert_eq!(b.take(1), ["bbbb"]);
        assert_eq!(b.put_back(vec!["xxxx".into(), "yyyy".into()]), 1, "over budget again: the oldest goes");
        assert_eq!(b.take(10), ["yyyy", "cccc"]);
        assert!(b.is_empty() && b.bytes() == 0);
    }

    #[derive(Debug, PartialEq)]
    struct Chunk(usize, u64);
    impl Item for Chunk {
        fn bytes(&self) -> usize {
            self.0
        }
        fn count(&self) -> u64 {
            self.1
        }
    }

    #[test]
    fn takes_within_count_and_byte_limits_and_counts_drops_in_things() {
        let mut b = Buffer::new(100);
        b.push(Chunk(30, 5));
        b.push(Chunk(30, 5));
        b.push(Chunk(30, 5));
        assert_eq!(b.count(), 15);
        assert_eq!(b.take_within(10, 9, 1000), [Chunk(30, 5)], "a second chunk would pass 9 things");
        assert_eq!(b.take_within(10, 100, 59), [Chunk(30, 5)], "a second chunk would pass 59 bytes");
        assert_eq!(b.take_within(10, 1, 1), [Chunk(30, 5)], "the first item always goes, whatever its size");
        assert!(b.is_empty());
        b.push(Chunk(60, 7));
        assert_eq!(b.push(Chunk(60, 3)), 7, "the 7-span chunk is dropped for the new one");
        assert_eq!((b.count(), b.len()), (3, 1));
    }
}
