//! Automatic compaction of key-value history (etcd's revision auto-compaction): the leader
//! proposes dropping history older than `Settings::history_retained_revisions`, so memory and
//! snapshots track the live data.

use raftkv_raft::Storage;

use crate::output::Own;
use crate::replica::Replica;
use crate::state::Command;

impl<S: Storage> Replica<S> {
    /// Leader: every `history_compact_interval_ticks`, proposes a compaction when a tenth of the
    /// retained window has built up beyond it.
    pub(crate) fn maybe_compact_history(&mut self) {
        let interval = self.settings.history_compact_interval_ticks;
        if interval == 0 || self.ticks % interval != 0 {
            return;
        }
        let retained = self.settings.history_retained_revisions;
        let (revision, compacted) = {
            let state = self.state();
            (state.kv.revision(), state.kv.compacted_revision())
        };
        let target = revision - retained;
        if target > compacted + retained / 10 {
            let request = raftkv_kv::Request::compact(target).encode_to_vec();
            self.propose_own(Own::HistoryCompaction(target), Command::kv(request.into()));
        }
    }
}
