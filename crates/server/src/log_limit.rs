//! Log lines about things a remote party can cause many times a second (refused connections,
//! failed handshakes) are summarized: one line per interval, with the count and the last case.
//!
//! Invariant: at most one line per `interval` per `LogLimit`, whatever the rate of events.

use std::time::Duration;

use tokio::time::Instant;

/// One summarized kind of event.
#[derive(Debug)]
pub struct LogLimit {
    /// What the summary line says happened.
    what: &'static str,
    /// Shortest time between two lines.
    interval: Duration,
    /// Events since the last line.
    count: u64,
    /// When the last line was written.
    since: Option<Instant>,
}

impl LogLimit {
    /// A summary of `what`, at most one line per `interval`.
    pub fn new(what: &'static str, interval: Duration) -> Self {
        LogLimit {
            what,
            interval,
            count: 0,
            since: None,
        }
    }

    /// One more event; `detail` is the latest case, logged with the count when a line is due.
    pub fn note(&mut self, detail: &str) {
        self.count += 1;
        let now = Instant::now();
        if self
            .since
            .is_none_or(|since| now.duration_since(since) >= self.interval)
        {
            tracing::warn!(count = self.count, last = detail, "{}", self.what);
            self.count = 0;
            self.since = Some(now);
        }
    }
}
