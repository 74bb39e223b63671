//! The AppendEntries messages a leader has in flight to one follower in the replicate state.
//!
//! Invariants: entries are in increasing order of last index; `count() <= msgs_max`; a new message
//! is admitted only while `bytes <= bytes_max` (so one message may take the total past it, never two).

use std::collections::VecDeque;

use crate::types::Index;

/// Bounded window of in-flight messages, each remembered by its last index and its byte size.
#[derive(Clone, Debug)]
pub struct Inflights {
    /// (last index carried, entry bytes carried), oldest first.
    window: VecDeque<(Index, u64)>,
    /// Sum of the byte sizes in `window`.
    bytes: u64,
    /// Most messages in flight.
    msgs_max: usize,
    /// Most bytes in flight.
    bytes_max: u64,
}

impl Inflights {
    /// An empty window with the given bounds.
    pub fn new(msgs_max: usize, bytes_max: u64) -> Self {
        Inflights {
            window: VecDeque::new(),
            bytes: 0,
            msgs_max,
            bytes_max,
        }
    }

    /// Whether no further message may be sent.
    pub fn full(&self) -> bool {
        self.window.len() >= self.msgs_max || self.bytes >= self.bytes_max
    }

    /// Messages in flight.
    pub fn count(&self) -> usize {
        self.window.len()
    }

    /// Bytes in flight.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records a sent message whose last entry is `last_index`.
    pub fn add(&mut self, last_index: Index, bytes: u64) {
        assert!(!self.full(), "sent into a full in-flight window");
        if let Some(&(prev, _)) = self.window.back() {
            assert!(
                last_index > prev,
                "in-flight indexes must increase: {last_index} after {prev}"
            );
        }
        self.window.push_back((last_index, bytes));
        self.bytes += bytes;
    }

    /// Acknowledges every message whose last index is at or below `index`.
    pub fn free_to(&mut self, index: Index) {
        while let Some(&(last, bytes)) = self.window.front() {
            if last > index {
                break;
            }
            self.window.pop_front();
            self.bytes -= bytes;
        }
    }

    /// Frees the oldest message: a heartbeat answer shows the follower is alive, so a lost append
    /// must not block the window forever.
    pub fn free_first_one(&mut self) {
        if let Some((_, bytes)) = self.window.pop_front() {
            self.bytes -= bytes;
        }
    }

    /// Forgets everything in flight.
    pub fn reset(&mut self) {
        self.window.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_at_message_bound() {
        let mut inflights = Inflights::new(2, 1_000);
        inflights.add(1, 10);
        assert!(!inflights.full());
        inflights.add(2, 10);
        assert!(inflights.full());
        inflights.free_to(1);
        assert_eq!((inflights.count(), inflights.bytes()), (1, 10));
    }

    #[test]
    fn full_at_byte_bound() {
        let mut inflights = Inflights::new(10, 100);
        inflights.add(1, 60);
        assert!(!inflights.full());
        inflights.add(2, 60);
        assert!(inflights.full());
        inflights.free_first_one();
        assert!(!inflights.full());
    }
}
