//! Segment documents kept together: the item the X-Ray queue holds. The receiver puts the
//! documents of one `recvmmsg` call (up to 16) into one `Segments`, so a burst costs two
//! allocations rather than one per segment (at 20,000 segments a second, malloc and free were a
//! tenth of the relay's CPU; BENCHMARKS.md). The buffer's budget and counters still count
//! segments one by one (`Item::count`); when the budget pushes items out, a group goes whole.

use crate::relay::buffer::Item;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Segments {
    /// The documents, one after another.
    text: String,
    /// Where each document ends in `text`.
    ends: Vec<u32>,
}

impl Segments {
    pub fn with_capacity(documents: usize, bytes: usize) -> Self {
        Segments { text: String::with_capacity(bytes), ends: Vec::with_capacity(documents) }
    }

    /// Adds a document (at most 64 KB: `datagram::MAX_BODY`, so the offsets fit).
    pub fn push(&mut self, doc: &str) {
        self.text.push_str(doc);
        self.ends.push(self.text.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The documents, in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let doc = &self.text[start..end as usize];
            start = end as usize;
            doc
        })
    }
}

impl<'a> FromIterator<&'a str> for Segments {
    fn from_iter<I: IntoIterator<Item = &'a str>>(docs: I) -> Self {
        let mut s = Segments::default();
        for d in docs {
            s.push(d);
        }
        s
    }
}

impl Item for Segments {
    fn bytes(&self) -> usize {
        self.text.len()
    }
    fn count(&self) -> u64 {
        self.ends.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_documents_apart_and_in_order() {
        let s: Segments = ["{\"id\":\"a\"}", "", "{\"id\":\"ü\"}"].into_iter().collect();
        assert_eq!(s.iter().collect::<Vec<_>>(), ["{\"id\":\"a\"}", "", "{\"id\":\"ü\"}"]);
        assert_eq!((s.len(), s.count(), s.bytes()), (3, 3, 21));
        assert!(Segments::default().is_empty() && Segments::default().iter().next().is_none());
    }
}
