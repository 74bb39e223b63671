//! The run's trace: one line per event, a running hash of every line, and a bounded ring buffer
//! of the most recent lines (or, when asked, all of them).
//!
//! Invariant: the hash covers every line in order, whether or not lines are kept, so two runs of
//! one seed have equal hashes exactly when their traces are equal line for line.

use std::collections::VecDeque;

/// Lines kept for a violation report when the full trace is not kept.
pub const RING_LINES: usize = 400;

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    /// The most recent lines (all of them in full mode).
    lines: VecDeque<String>,
    /// Keep every line instead of the last `RING_LINES`.
    full: bool,
    /// FNV-1a over every line so far, each followed by a newline.
    hash: u64,
    /// Lines recorded so far.
    count: u64,
}

impl Trace {
    /// A trace keeping the last `RING_LINES` lines, or all lines when `full`.
    pub fn new(full: bool) -> Self {
        Trace {
            lines: VecDeque::new(),
            full,
            hash: 0xCBF2_9CE4_8422_2325,
            count: 0,
        }
    }

    /// Records one line.
    pub fn record(&mut self, line: String) {
        for byte in line.bytes().chain(std::iter::once(b'\n')) {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01B3);
        }
        self.count += 1;
        if !self.full && self.lines.len() == RING_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The hash of every line recorded so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many lines were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }
}
