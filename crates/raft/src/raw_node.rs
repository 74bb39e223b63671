//! The application's handle on a node: feed it input (`tick`, `step`, `propose`), take its output
//! as a `Ready`, persist and send what it says, then acknowledge with `advance`.
//!
//! Invariant: each `Ready` hands out every piece of output exactly once: entries to persist, the
//! hard state when it changed, messages, and committed entries to apply.

use bytes::Bytes;

use crate::config::Config;
use crate::election::Campaign;
use crate::error::Result;
use crate::message::Message;
use crate::raft::Raft;
use crate::read_only::{ReadMode, ReadState};
use crate::storage::Storage;
use crate::types::{
    Entry, HardState, Index, MemberChange, NodeId, Role, Snapshot, SoftState, Term,
};

/// One batch of work for the application. See the crate documentation for the order in which its
/// parts must be handled.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Role, leader or term changed: the new values.
    pub soft_state: Option<SoftState>,
    /// The hard state changed: persist it (with `entries`, atomically or after them: its commit
    /// index may cover them).
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader that replaces the log and the state machine: persist it and
    /// restore the state machine from it before `entries` (which follow it).
    pub snapshot: Option<Snapshot>,
    /// Entries to append to stable storage, possibly replacing a conflicting suffix.
    pub entries: Vec<Entry>,
    /// Messages that may be sent at once, before anything in this `Ready` is durable
    /// (a leader's appends and heartbeats).
    pub messages: Vec<Message>,
    /// Messages that may be sent only after `hard_state` and `entries` are durable
    /// (votes, append acknowledgements, vote requests).
    pub persisted_messages: Vec<Message>,
    /// Committed entries, durable in this node's log, to apply to the state machine in order.
    pub committed_entries: Vec<Entry>,
    /// Reads released: serve each once the state machine has applied its index.
    pub read_states: Vec<ReadState>,
}

impl Ready {
    /// What to report to `RawNode::advance` once this `Ready` is persisted and applied.
    pub fn ack(&self) -> ReadyAck {
        ReadyAck {
            snapshot: self.snapshot.as_ref().map(|s| s.metadata.index),
            hard_state: self.hard_state,
            persisted: self.entries.last().map(|e| (e.index, e.term)),
            applied: self.committed_entries.last().map(|e| e.index),
        }
    }
}

/// The application's report on a handled `Ready`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadyAck {
    /// The snapshot at this index is durable and restored into the state machine.
    pub snapshot: Option<Index>,
    /// This hard state is durable.
    pub hard_state: Option<HardState>,
    /// Entries up to this (index, term) are durable.
    pub persisted: Option<(Index, Term)>,
    /// Entries up to this index are applied.
    pub applied: Option<Index>,
}

/// A node as the application drives it.
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    /// Soft state last handed out, to report changes only.
    prev_soft_state: SoftState,
    /// Hard state last handed out, to report changes only.
    prev_hard_state: HardState,
}

impl<S: Storage> RawNode<S> {
    /// A node over `storage`, restarting from what it holds.
    pub fn new(config: &Config, storage: S) -> Result<Self> {
        let raft = Raft::new(config, storage)?;
        let prev_hard_state = raft.hard_state();
        let prev_soft_state = raft.soft_state();
        Ok(RawNode {
            raft,
            prev_soft_state,
            prev_hard_state,
        })
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Handles a message from a peer. Malformed messages are refused and change nothing.
    pub fn step(&mut self, message: Message) -> Result<()> {
        self.raft.step(message)
    }

    /// Proposes a command; returns the index it will have if it commits. Only the leader accepts.
    pub fn propose(&mut self, data: Bytes) -> Result<Index> {
        self.raft.propose(data)
    }

    /// Proposes a membership change; see `Raft::propose_conf_change`.
    pub fn propose_conf_change(&mut self, changes: Vec<MemberChange>) -> Result<Index> {
        self.raft.propose_conf_change(changes)
    }

    /// Asks for a read index for the read `context`; released through `Ready::read_states`.
    pub fn read_index(&mut self, context: u64, mode: ReadMode) -> Result<()> {
        self.raft.read_index(context, mode)
    }

    /// Starts handing leadership to the voter `target`.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<()> {
        self.raft.transfer_leader(target)
    }

    /// Describes a snapshot of the applied state at `index`; the application stores it and
    /// compacts its log with it.
    pub fn create_snapshot(&mut self, index: Index, data: Bytes) -> Result<Snapshot> {
        self.raft.create_snapshot(index, data)
    }

    /// Starts an election now, as if the election timeout had passed (for bootstrap and tests).
    pub fn campaign(&mut self) {
        if self.raft.role != Role::Leader {
            self.raft.start_election();
        }
    }

    /// Starts a real election now, skipping PreVote.
    pub fn force_campaign(&mut self) {
        if self.raft.role != Role::Leader {
            self.raft.campaign(Campaign::Election);
        }
    }

    /// Whether `ready` would hand out anything.
    pub fn has_ready(&self) -> bool {
        let raft = &self.raft;
        raft.soft_state() != self.prev_soft_state
            || self.raft.hard_state() != self.prev_hard_state
            || !raft.raft_log.entries_to_persist().is_empty()
            || raft.raft_log.has_snapshot_to_persist()
            || !raft.read_states.is_empty()
            || (raft.role == Role::Leader && raft.read_only_needs_round())
            || !raft.msgs.is_empty()
            || !raft.msgs_after_persist.is_empty()
            || raft.raft_log.has_entries_to_apply()
            || raft.pending_bcast
    }

    /// Takes the pending output. The application handles it as the crate documentation says and
    /// then calls `advance(ready.ack())`. Further `Ready`s may be taken before that; they must be
    /// persisted in the order they were taken.
    pub fn ready(&mut self) -> Ready {
        self.raft.flush_proposals();
        self.raft.flush_reads();
        let soft = self.raft.soft_state();
        let soft_state = (soft != self.prev_soft_state).then_some(soft);
        self.prev_soft_state = soft;
        let hard = self.raft.hard_state();
        let hard_state = (hard != self.prev_hard_state).then_some(hard);
        self.prev_hard_state = hard;
        let raft = &mut self.raft;
        let snapshot = raft.raft_log.take_snapshot_to_persist();
        let entries = raft.raft_log.entries_to_persist().to_vec();
        raft.raft_log.accept_persisting();
        let committed_entries = raft
            .raft_log
            .take_entries_to_apply(raft.config.apply_bytes_max);
        Ready {
            soft_state,
            hard_state,
            snapshot,
            entries,
            messages: std::mem::take(&mut raft.msgs),
            persisted_messages: std::mem::take(&mut raft.msgs_after_persist),
            committed_entries,
            read_states: std::mem::take(&mut raft.read_states),
        }
    }

    /// The application persisted and applied what a `Ready` handed out.
    pub fn advance(&mut self, ack: ReadyAck) {
        if let Some(index) = ack.snapshot {
            self.advance_snapshot(index);
        }
        if let Some(hard_state) = ack.hard_state {
            self.advance_hard_state(hard_state);
        }
        if let Some((index, term)) = ack.persisted {
            self.advance_append(index, term);
        }
        if let Some(index) = ack.applied {
            self.advance_apply(index);
        }
    }

    /// `hard_state` is durable. A lone voter that voted for itself in that term now leads.
    pub fn advance_hard_state(&mut self, hard_state: HardState) {
        if hard_state.term == self.raft.term && !self.raft.term_durable {
            self.raft.on_term_durable();
        }
    }

    /// Entries up to `(index, term)` are durable. A leader now counts them for itself. An entry
    /// of the current term is durable only after the hard state of that term, so the term is too.
    pub fn advance_append(&mut self, index: Index, term: Term) {
        self.raft.raft_log.stable_to(index, term);
        if term == self.raft.term && !self.raft.term_durable {
            self.raft.on_term_durable();
        }
        if self.raft.role == Role::Leader {
            self.raft.on_own_persisted();
        }
    }

    /// The snapshot at `index` is durable and the state machine restored from it.
    pub fn advance_snapshot(&mut self, index: Index) {
        self.raft.raft_log.stable_snapshot_to(index);
    }

    /// Entries up to `index` are applied to the state machine.
    pub fn advance_apply(&mut self, index: Index) {
        self.raft.raft_log.applied_to(index);
    }

    /// The state machine, for inspection.
    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }

    /// The storage, for inspection.
    pub fn storage(&self) -> &S {
        self.raft.raft_log.storage()
    }

    /// The storage, to persist a `Ready` into.
    pub fn storage_mut(&mut self) -> &mut S {
        self.raft.raft_log.storage_mut()
    }
}
