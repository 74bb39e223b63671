//! The properties the simulator checks, one file per property, and the bookkeeping they share.
//!
//! Safety properties from the Raft paper's Figure 3 (Election Safety, Log Matching, Leader
//! Completeness, State Machine Safety, on the real store's state hash), the WAL's recovery
//! contract, Durability of acknowledged writes, linearizability of the client history,
//! exactly-once writes, lease safety (no early expiry), and liveness once faults stop (leases
//! expiring in time included). Each checker
//! sees only what a node exposes
//! read-only (`Raft`, its durable image as a `MemStorage`) and what the driver reports (state
//! machine events, acknowledged writes), so it works the same in the random simulator and in the
//! exhaustive explorer.
//!
//! Invariant: a checker never changes the run; it only returns a `Violation`.

pub mod durability;
pub mod election_safety;
pub mod exactly_once;
pub mod leader_completeness;
pub mod lease_safety;
pub mod linearizability;
pub mod liveness;
pub mod log_matching;
pub mod recovery;
pub mod state_machine_safety;

use std::fmt;

use raftkv_raft::{ConfState, Entry, Index, MemStorage, NodeId, Raft, Storage, Term};

use crate::kv::Applied;

pub use durability::Durability;
pub use election_safety::ElectionSafety;
pub use leader_completeness::LeaderCompleteness;
pub use log_matching::NamedLog;
pub use state_machine_safety::StateMachineSafety;

/// A property a run can break.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Property {
    /// At most one leader per term (§5.2).
    ElectionSafety,
    /// Same index and term means identical prefixes (§5.3).
    LogMatching,
    /// A committed entry is in the log of every later leader (§5.4).
    LeaderCompleteness,
    /// No two nodes apply different entries at one index; each applies in log order (§5.4.3).
    StateMachineSafety,
    /// An acknowledged write survives crashes: it stays on a majority's disks.
    Durability,
    /// The clients' history is linearizable.
    Linearizability,
    /// A client's write takes effect at most once; the store never refuses a live session's write.
    ExactlyOnce,
    /// A lease is never revoked on expiry before its TTL passed since its last renewal.
    LeaseSafety,
    /// A learner added held is promoted only when asked, never by the leader on its own.
    LearnerHold,
    /// Once faults stop, a leader is elected, every pending operation completes and every lease
    /// nobody keeps alive is revoked, in time.
    Liveness,
    /// After a crash, the WAL gave back less than was synced, or more than was written.
    Recovery,
    /// The Raft core panicked on one of its own invariants.
    CorePanic,
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A broken property and what broke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which property.
    pub property: Property,
    /// A human-readable account: which nodes, terms, indexes.
    pub detail: String,
}

impl Violation {
    /// A violation of `property`.
    pub fn new(property: Property, detail: impl Into<String>) -> Self {
        Violation {
            property,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.property, self.detail)
    }
}

/// The result of a check.
pub type CheckResult = Result<(), Violation>;

/// The safety checkers that follow a run step by step.
#[derive(Debug)]
pub struct SafetyCheckers {
    /// One leader per term.
    pub election: ElectionSafety,
    /// Committed entries reach every later leader.
    pub completeness: LeaderCompleteness,
    /// Applied entries and states agree across nodes.
    pub state_machine: StateMachineSafety,
    /// Acknowledged writes stay durable.
    pub durability: Durability,
}

impl SafetyCheckers {
    /// Checkers for a cluster bootstrapped with `bootstrap`, whose empty state machine has the
    /// digest `empty_digest`.
    pub fn new(bootstrap: ConfState, empty_digest: u64) -> Self {
        SafetyCheckers {
            election: ElectionSafety::default(),
            completeness: LeaderCompleteness::default(),
            state_machine: StateMachineSafety::new(empty_digest, bootstrap),
            durability: Durability::new(),
        }
    }

    /// After a node handled an input: who leads which term, what its leadership committed, and
    /// whether a new leader holds every committed entry.
    pub fn after_step<S: Storage>(&mut self, raft: &Raft<S>) -> CheckResult {
        self.election.observe(raft)?;
        let state_machine = &self.state_machine;
        self.completeness
            .observe(raft, |index| state_machine.term_at(index))
    }

    /// A node's state machine changed: applied an entry, restored or took a snapshot.
    pub fn on_state_machine(&mut self, node: NodeId, event: &StateMachineEvent) -> CheckResult {
        let sm = &mut self.state_machine;
        match event {
            StateMachineEvent::Applied { entry, digest, .. } => sm.on_apply(node, entry, *digest),
            StateMachineEvent::Restored {
                index,
                term,
                digest,
            } => sm.on_restore(node, *index, *term, *digest),
            StateMachineEvent::Snapshotted {
                index,
                term,
                digest,
            } => sm.on_snapshot(node, *index, *term, *digest),
        }
    }

    /// A client was told its write at `(index, term)` succeeded.
    pub fn on_acknowledged(&mut self, index: u64, term: Term, what: String) {
        self.durability.on_acknowledged(index, term, what);
    }

    /// The periodic whole-cluster checks: Log Matching over every log and disk, Durability over
    /// the disks, Leader Completeness of the current leaders.
    pub fn periodic<S: Storage>(
        &mut self,
        logs: &[NamedLog<'_>],
        disks: &[(NodeId, &MemStorage)],
        leaders: &[&Raft<S>],
    ) -> CheckResult {
        log_matching::check(logs)?;
        self.durability
            .check(disks, self.state_machine.committed_conf())?;
        for leader in leaders {
            self.completeness.check_leader(leader)?;
        }
        Ok(())
    }
}

/// A change of one node's state machine, as the checkers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateMachineEvent {
    /// It applied `entry`, reaching the state of digest `digest`.
    Applied {
        /// The entry.
        entry: Entry,
        /// The state digest after it.
        digest: u64,
        /// What the entry did to the store.
        effect: Applied,
    },
    /// It replaced its state with a snapshot (from the leader or, on restart, from its disk).
    Restored {
        /// The snapshot's index (0: an empty state machine).
        index: Index,
        /// Its term.
        term: Term,
        /// The digest of the restored state.
        digest: u64,
    },
    /// It took a snapshot of its state and compacted its log.
    Snapshotted {
        /// The snapshot's index.
        index: Index,
        /// Its term.
        term: Term,
        /// The digest of the state it holds.
        digest: u64,
    },
}
