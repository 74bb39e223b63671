//! Where a watch stands: how far its polls have covered and whether it has read through the
//! store's current revision, so a server can tell when a progress notice is true.

use super::{WatchId, Watches};
use crate::Revision;

/// Where a watch stands ([`crate::KvStore::watch_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchProgress {
    /// The last revision its polls have covered: every matching event through it has been
    /// returned by a poll (those that remain are after it).
    pub delivered_through: Revision,
    /// Whether it has read through the store's current revision with nothing left to return:
    /// once the polls up to `delivered_through` are handed on, the watch has seen everything.
    pub caught_up: bool,
}

impl Watches {
    /// Where live watch `id` stands, the store being at `current`.
    pub(crate) fn progress(&self, id: WatchId, current: Revision) -> Option<WatchProgress> {
        let w = self.watchers.get(&id)?;
        let scanned_through = if w.synced {
            self.synced_through
        } else {
            w.scan_revision - 1
        };
        Some(WatchProgress {
            delivered_through: w.next_revision - 1,
            caught_up: w.pending.is_empty() && scanned_through >= current,
        })
    }
}
