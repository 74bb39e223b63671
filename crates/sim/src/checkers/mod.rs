//! The properties the simulator checks, one file per property, and the bookkeeping they share.
//!
//! Safety properties from the Raft paper's Figure 3 (Election Safety, Log Matching, Leader
//! Completeness, State Machine Safety), plus Durability of acknowledged writes, linearizability of
//! the client history, and liveness once faults stop. Each checker sees only what a node exposes
//! read-only (`Raft`, its `MemStorage`) and what the driver reports (applied entries, acknowledged
//! writes), so it works the same in the random simulator and in the exhaustive explorer.
//!
//! Invariant: a checker never changes the run; it only returns a `Violation`.

pub mod durability;
pub mod election_safety;
pub mod leader_completeness;
pub mod linearizability;
pub mod liveness;
pub mod log_matching;
pub mod state_machine_safety;

use std::fmt;

use raftkv_raft::{Entry, MemStorage, NodeId, Raft, Term};

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
    /// Once faults stop, a leader is elected and every pending operation completes in time.
    Liveness,
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
    /// Applied entries agree across nodes.
    pub state_machine: StateMachineSafety,
    /// Acknowledged writes stay durable.
    pub durability: Durability,
}

impl SafetyCheckers {
    /// Checkers for a cluster of `voters` nodes.
    pub fn new(voters: usize) -> Self {
        SafetyCheckers {
            election: ElectionSafety::default(),
            completeness: LeaderCompleteness::default(),
            state_machine: StateMachineSafety::default(),
            durability: Durability::new(voters),
        }
    }

    /// After a node handled an input: who leads which term, what its leadership committed, and
    /// whether a new leader holds every committed entry.
    pub fn after_step(&mut self, raft: &Raft<MemStorage>) -> CheckResult {
        self.election.observe(raft)?;
        self.completeness.observe(raft)
    }

    /// A node applied `entry` to its state machine.
    pub fn on_apply(&mut self, node: NodeId, entry: &Entry) -> CheckResult {
        self.state_machine.on_apply(node, entry)
    }

    /// A node restarted with an empty state machine that re-applies from index 1.
    pub fn on_restart(&mut self, node: NodeId) {
        self.state_machine.on_restart(node);
    }

    /// A client was told its write at `(index, term)` succeeded.
    pub fn on_acknowledged(&mut self, index: u64, term: Term, what: String) {
        self.durability.on_acknowledged(index, term, what);
    }

    /// The periodic whole-cluster checks: Log Matching over every log and disk, Durability over
    /// the disks, Leader Completeness of the current leaders.
    pub fn periodic(
        &mut self,
        logs: &[NamedLog<'_>],
        disks: &[(NodeId, &MemStorage)],
        leaders: &[&Raft<MemStorage>],
    ) -> CheckResult {
        log_matching::check(logs)?;
        self.durability.check(disks)?;
        for leader in leaders {
            self.completeness.check_leader(leader)?;
        }
        Ok(())
    }
}
