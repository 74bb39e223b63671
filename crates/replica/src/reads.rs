//! Reads outside the log (thesis §6.4): a read is handed to the core for a read index (ReadIndex
//! round or leader lease, forwarded to the leader on a follower), then released once the state
//! has applied that index.
//!
//! Invariants: a read is answered `Answer::Read` only once the applied index reaches its read
//! index; reads still waiting for a read index fail when the leadership they were issued under
//! changes (the core drops them) and are given up after `Settings::read_timeout_ticks`.

use raftkv_raft::{ReadMode, Storage};

use crate::error::RequestError;
use crate::output::{Answer, RequestId};
use crate::replica::{PENDING_REQUESTS_MAX, Replica};

impl<S: Storage> Replica<S> {
    /// A read barrier: answered once this node has applied everything committed before it.
    pub fn read(&mut self, id: RequestId, mode: ReadMode) {
        if self.reads_waiting.len() + self.reads_ready.len() >= PENDING_REQUESTS_MAX {
            self.reply(id, Err(RequestError::Unavailable("too many reads".into())));
            return;
        }
        let context = self.next_read;
        self.next_read += 1;
        match self.node.read_index(context, mode) {
            Ok(()) => {
                self.reads_waiting.insert(context, (self.ticks, id));
            }
            Err(e) => self.reply(id, Err(e.into())),
        }
    }

    /// Answers every read whose read index the state has applied.
    pub(crate) fn release_reads(&mut self) {
        if self.reads_ready.is_empty() {
            return;
        }
        let applied = self.state().applied();
        let (done, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_ready = still;
        for (_, id) in done {
            self.reply(id, Ok(Answer::Read { applied }));
        }
    }

    /// Gives up reads whose read index never came (the request or answer was dropped).
    pub(crate) fn expire_lost_reads(&mut self) {
        let horizon = self.ticks.saturating_sub(self.settings.read_timeout_ticks);
        let lost: Vec<u64> = self
            .reads_waiting
            .iter()
            .filter(|(_, (issued, _))| *issued < horizon)
            .map(|(&context, _)| context)
            .collect();
        for context in lost {
            if let Some((_, id)) = self.reads_waiting.remove(&context) {
                self.reply(id, Err(RequestError::Unavailable("read timed out".into())));
            }
        }
    }
}
