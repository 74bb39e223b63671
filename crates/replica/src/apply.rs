//! Completing a `Persist`: the leader's snapshot installed, the persisted messages released, the
//! committed entries applied and their waiting writes answered, the core advanced.
//!
//! Invariants: entries are applied in index order, each once; a waiting write is answered with
//! the result of the entry at its index only if that entry has the term it was proposed in (else
//! it was overwritten: `NotCommitted`); writes a leader's snapshot covers get `Unknown`.

use raftkv_kv::Request;
use raftkv_raft::{Entry, EntryKind, Storage};

use crate::error::{ReplicaError, RequestError};
use crate::output::{Answer, ApplyRecord, Event};
use crate::replica::Replica;
use crate::state::{self, Applied, Command, State};

impl<S: Storage> Replica<S> {
    /// The `Persist` numbered `seq` (the oldest under way) is durable. `restored` is the state
    /// its snapshot decodes to, when the driver decoded it off the loop (else it is decoded
    /// here). A snapshot that cannot be restored stops the replica: the error names it.
    pub fn persisted(
        &mut self,
        now_ms: u64,
        seq: u64,
        restored: Option<Result<State, ReplicaError>>,
    ) -> Result<(), ReplicaError> {
        let flight = self
            .in_flight
            .pop_front()
            .expect("a Persist reported while none is under way");
        assert_eq!(flight.seq, seq, "Persists must complete in the order taken");
        if let Some(snapshot) = &flight.snapshot {
            let index = snapshot.metadata.index;
            let restored = match restored {
                Some(restored) => restored?,
                None => state::decode(index, &snapshot.data, self.state().limits().clone())?,
            };
            self.install(
                restored,
                index,
                snapshot.metadata.term,
                snapshot.data.len() as u64,
            );
        }
        self.out.messages.extend(flight.persisted_messages);
        if !flight.committed_entries.is_empty() {
            self.apply(flight.committed_entries, now_ms);
        }
        self.node.advance(flight.ack);
        self.release_reads();
        self.maybe_snapshot();
        Ok(())
    }

    fn install(&mut self, restored: State, index: u64, term: u64, restored_bytes: u64) {
        let digest = {
            let mut state = self.state();
            state.install(restored);
            state.digest()
        };
        self.snapshot_index = self.snapshot_index.max(index);
        self.snapshot_bytes = restored_bytes;
        self.log_bytes_since_snapshot = 0;
        self.out.events.push(Event::SnapshotInstalled {
            index,
            term,
            digest,
        });
        self.out.events.push(Event::RegistryChanged);
        // Writes at or below the snapshot were decided without this node seeing them.
        let later = self.writes.split_off(&(index + 1));
        for (_, write) in std::mem::replace(&mut self.writes, later) {
            self.reply(
                write.id,
                Err(RequestError::Unknown("replaced by a snapshot".into())),
            );
        }
    }

    pub(crate) fn apply(&mut self, entries: Vec<Entry>, now_ms: u64) {
        self.log_bytes_since_snapshot += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
        let record = self.settings.record_applies;
        let mut results = Vec::with_capacity(entries.len());
        {
            let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let state = &mut *guard;
            state.kv.set_clock(now_ms);
            for entry in entries {
                if entry.index <= state.applied() {
                    continue;
                }
                let before = record.then(|| before_apply(state, &entry, now_ms));
                let applied = state.apply(&entry);
                match &applied {
                    Applied::Conf => {
                        if let EntryKind::ConfChange(conf) = &entry.kind {
                            self.out.events.push(Event::MembershipApplied {
                                index: entry.index,
                                conf: (**conf).clone(),
                            });
                        }
                        self.out.events.push(Event::RegistryChanged);
                    }
                    Applied::Published => self.out.events.push(Event::RegistryChanged),
                    Applied::Undecodable => {
                        self.out
                            .events
                            .push(Event::Undecodable { index: entry.index });
                    }
                    Applied::HashCheck => self.out.events.push(Event::HashCheckpoint {
                        index: entry.index,
                        view: Box::new(state.view()),
                    }),
                    Applied::Kv(_)
                    | Applied::Noop
                    | Applied::Alarm
                    | Applied::NoSpace
                    | Applied::Corrupt
                    | Applied::Auth(_) => {}
                }
                let (index, term) = (entry.index, entry.term);
                if let Some((retry, lease_keys, revision_before)) = before {
                    self.out.events.push(Event::Applied(Box::new(ApplyRecord {
                        entry,
                        applied: applied.clone(),
                        retry,
                        lease_keys,
                        revision_before,
                        digest: state.digest(),
                    })));
                }
                results.push((index, term, applied));
            }
        }
        if let Some(&(index, _, _)) = results.last() {
            self.out.events.push(Event::AppliedTo { index });
        }
        for (index, term, applied) in results {
            self.answer_write(index, term, applied);
        }
    }

    fn answer_write(&mut self, index: u64, term: u64, applied: Applied) {
        // Writes below this index that were never seen were overwritten before applying.
        while let Some(entry) = self.writes.first_entry() {
            if *entry.key() >= index {
                break;
            }
            let write = entry.remove();
            self.reply(write.id, Err(RequestError::NotCommitted));
        }
        let Some(write) = self.writes.remove(&index) else {
            return;
        };
        let answer = if write.term != term {
            Err(RequestError::NotCommitted)
        } else if write.membership {
            Ok(Answer::Membership { index })
        } else {
            Ok(Answer::Applied {
                index,
                term,
                applied,
            })
        };
        self.reply(write.id, answer);
    }
}

/// Leases with their keys.
type LeaseKeys = Vec<(i64, Vec<bytes::Bytes>)>;

/// What a checker needs to know from before an entry applies: whether it retries its session's
/// last write, the keys of the lease it revokes, and the store's revision.
fn before_apply(state: &State, entry: &Entry, now_ms: u64) -> (bool, LeaseKeys, i64) {
    let request = Command::kv_request(&entry.data)
        .filter(|_| matches!(entry.kind, EntryKind::Normal))
        .and_then(|bytes| Request::decode(&bytes).ok());
    let retry = request
        .as_ref()
        .is_some_and(|r| r.client_id != 0 && state.kv.session_last_seq(r.client_id) == Some(r.seq));
    let leases = match request.as_ref().and_then(|r| r.op.as_ref()) {
        Some(raftkv_kv::Op::LeaseRevoke(revoke)) => vec![revoke.id],
        Some(raftkv_kv::Op::LeaseExpire(expire)) => expire.ids.clone(),
        _ => Vec::new(),
    };
    let mut lease_keys: LeaseKeys = Vec::new();
    for id in leases {
        if let Ok(status) = state.kv.lease_time_to_live(id, now_ms)
            && lease_keys.iter().all(|(seen, _)| *seen != id)
        {
            lease_keys.push((id, status.keys));
        }
    }
    (retry, lease_keys, state.kv.revision())
}
