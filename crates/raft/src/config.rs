//! Settings of one Raft node. Every limit is named here, with its unit last.

use crate::error::{Error, Result};
use crate::types::{Index, NodeId};

/// The mutation type the core checks against: the real enum with the feature, a stand-in without.
#[cfg(feature = "mutations")]
pub(crate) type MutationKind = Mutation;
#[cfg(not(feature = "mutations"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MutationKind {
    CommitPastTerm,
    DoubleVote,
    NoElectionRestriction,
    NoJointConsensus,
    ReadWithoutRound,
    LeaseDuringTransfer,
    SnapshotKeepsOldConf,
}

/// Largest allowed `snapshot_chunk_bytes_max`: a chunk is one message.
pub const SNAPSHOT_CHUNK_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

/// Settings of one Raft node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id; never 0.
    pub id: NodeId,
    /// The voting members (including this node) of a new cluster: used only when storage holds no
    /// membership of its own (no snapshot and no bootstrap configuration).
    pub voters: Vec<NodeId>,
    /// Base election timeout T: a follower that hears nothing from a leader for a random number of
    /// ticks in [T, 2T) starts an election (§5.2). A leader under CheckQuorum steps down after T ticks
    /// without a quorum.
    pub election_timeout_ticks: u32,
    /// A leader sends heartbeats every this many ticks; must be well below the election timeout.
    pub heartbeat_interval_ticks: u32,
    /// Ask for pre-votes before bumping the term, so a node that cannot win does not disrupt (§9.6).
    pub pre_vote: bool,
    /// A leader steps down if it has not heard from a quorum for an election timeout, and followers
    /// that heard from a leader within one ignore vote requests (the leader's lease).
    pub check_quorum: bool,
    /// Most entries in one AppendEntries message.
    pub msg_entries_max: usize,
    /// Most entry bytes in one AppendEntries message (a single larger entry is still sent alone).
    pub msg_bytes_max: u64,
    /// Most AppendEntries messages in flight to one follower in the replicate state.
    pub inflight_msgs_max: usize,
    /// Most entry bytes in flight to one follower in the replicate state.
    pub inflight_bytes_max: u64,
    /// Most bytes (`Entry::size_bytes`) of uncommitted entries a leader holds: the entries after its
    /// commit index, its own and those of earlier leaders. A proposal that would pass it gets
    /// `Overloaded`, except onto an empty uncommitted tail, where one is admitted however large.
    pub uncommitted_bytes_max: u64,
    /// Most entry bytes handed to the application in one `Ready` for applying.
    pub apply_bytes_max: u64,
    /// Most snapshot bytes in one InstallSnapshot message.
    pub snapshot_chunk_bytes_max: u64,
    /// Most reads waiting for a read index on a leader (its own and its followers').
    pub pending_reads_max: usize,
    /// A leader's read lease ends this many ticks before the election timeout (counted from the
    /// send of the last heartbeat round a quorum answered), to absorb clock drift between nodes'
    /// tick rates: followers ignore vote requests for a full election timeout after hearing from
    /// the leader, so no other leader can exist before then.
    pub lease_drift_margin_ticks: u32,
    /// The index the application's state machine has already applied (0 for an empty one).
    pub applied: Index,
    /// Seed of this node's random election timeouts; combined with `id`.
    pub seed: u64,
    /// A rule to break on purpose (test builds only), so tests can prove the simulator notices.
    #[cfg(feature = "mutations")]
    pub mutation: Option<Mutation>,
}

/// A deliberately broken Raft rule, for proving that the simulator catches broken rules.
#[cfg(feature = "mutations")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// The leader commits an entry of a past term by counting replicas (Figure 8's trap, §5.4.2).
    CommitPastTerm,
    /// A node grants its vote to a second candidate in the same term (breaks one vote per term).
    DoubleVote,
    /// The election restriction is skipped: votes go to candidates with stale logs (§5.4.1).
    NoElectionRestriction,
    /// Membership changes skip the joint configuration: C(new) takes over at once, so disjoint
    /// majorities of C(old) and C(new) can elect two leaders (thesis §4.3).
    NoJointConsensus,
    /// Reads are released at once, without a heartbeat round confirming leadership (§6.4).
    ReadWithoutRound,
    /// Lease reads are served while a leadership transfer runs, whose election ignores leases.
    LeaseDuringTransfer,
    /// Restoring a snapshot keeps the node's old membership instead of the snapshot's.
    SnapshotKeepsOldConf,
}

impl Config {
    /// Defaults that suit a LAN with a 100 ms tick: election after 10–20 ticks, heartbeat every 1.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Self {
        Config {
            id,
            voters,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            msg_entries_max: 1024,
            msg_bytes_max: 1024 * 1024,
            inflight_msgs_max: 256,
            inflight_bytes_max: 32 * 1024 * 1024,
            uncommitted_bytes_max: 64 * 1024 * 1024,
            apply_bytes_max: 8 * 1024 * 1024,
            snapshot_chunk_bytes_max: 1024 * 1024,
            pending_reads_max: 4096,
            lease_drift_margin_ticks: 2,
            applied: 0,
            seed: 0,
            #[cfg(feature = "mutations")]
            mutation: None,
        }
    }

    /// Whether this node runs with `_mutation` broken on purpose; always false without the feature.
    #[allow(unused_variables)]
    pub(crate) fn mutated(&self, mutation: MutationKind) -> bool {
        #[cfg(feature = "mutations")]
        {
            self.mutation == Some(mutation)
        }
        #[cfg(not(feature = "mutations"))]
        {
            false
        }
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason| Err(Error::InvalidConfig(reason));
        if self.id == 0 {
            return invalid("id must not be 0");
        }
        if self.voters.contains(&0) {
            return invalid("voter ids must not be 0");
        }
        if self.heartbeat_interval_ticks == 0 {
            return invalid("heartbeat_interval_ticks must be at least 1");
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return invalid("election_timeout_ticks must be greater than heartbeat_interval_ticks");
        }
        if self.msg_entries_max == 0 || self.msg_bytes_max == 0 {
            return invalid("msg_entries_max and msg_bytes_max must be at least 1");
        }
        if self.inflight_msgs_max == 0 || self.inflight_bytes_max == 0 {
            return invalid("inflight_msgs_max and inflight_bytes_max must be at least 1");
        }
        if self.uncommitted_bytes_max == 0 || self.apply_bytes_max == 0 {
            return invalid("uncommitted_bytes_max and apply_bytes_max must be at least 1");
        }
        if self.snapshot_chunk_bytes_max == 0 || self.pending_reads_max == 0 {
            return invalid("snapshot_chunk_bytes_max and pending_reads_max must be at least 1");
        }
        if self.snapshot_chunk_bytes_max > SNAPSHOT_CHUNK_BYTES_LIMIT {
            return invalid("snapshot_chunk_bytes_max must be at most 64 MiB");
        }
        if self.lease_drift_margin_ticks >= self.election_timeout_ticks {
            return invalid("lease_drift_margin_ticks must be below election_timeout_ticks");
        }
        Ok(())
    }
}
