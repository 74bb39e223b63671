//! # raftkv-raft: the Raft consensus algorithm as a pure state machine
//!
//! This crate is Raft (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm",
//! and the thesis's PreVote and CheckQuorum) with no I/O: no threads, clocks, sockets, files or
//! global randomness. Time is `tick()`, randomness comes from `Config::seed`, and everything the
//! node wants done comes out as a [`Ready`]. The same inputs always give the same outputs, which is
//! what lets the simulator replay any history from a seed.
//!
//! ## Driving a node
//!
//! ```
//! use raftkv_raft::{Config, MemStorage, RawNode};
//!
//! let mut node = RawNode::new(&Config::new(1, vec![1]), MemStorage::new()).unwrap();
//! node.campaign(); // a single voter elects itself
//! for _ in 0..3 {
//!     if !node.has_ready() {
//!         break;
//!     }
//!     let ready = node.ready();
//!     let ack = ready.ack();
//!     // 1. Persist: hard state and entries, durably.
//!     if let Some(hs) = ready.hard_state {
//!         node.storage_mut().set_hard_state(hs);
//!     }
//!     node.storage_mut().append(&ready.entries);
//!     // 2. Send `ready.messages` (may also be sent before step 1) and `ready.persisted_messages`.
//!     // 3. Apply `ready.committed_entries` in order.
//!     // 4. Acknowledge.
//!     node.advance(ack);
//! }
//! assert_eq!(node.raft().raft_log().committed(), 1); // the leader's empty entry of its term
//! ```
//!
//! ## The `Ready` contract
//!
//! Raft is safe only if what a node says in a message is true across a crash. So:
//!
//! 0. `Ready::snapshot`, when present, replaces the log and the state machine: install it first.
//! 1. `Ready::hard_state` and `Ready::entries` must be durable (written and synced; atomically or
//!    entries first: a hard state durable without its entries could name committed an index whose
//!    durable entry is a stale one they replace) **before** any of `Ready::persisted_messages` is
//!    sent. Those are the votes, the vote requests (a candidate's vote for itself) and the append
//!    acknowledgements: a vote or an ack never leaves before the term, vote and entries it vouches
//!    for are on disk. Report the hard state durable too (`advance` does, from `Ready::ack`): a
//!    lone voter leads only once its vote for itself is.
//! 2. `Ready::messages` may be sent at once, even before step 1 completes: they are a leader's
//!    AppendEntries and heartbeats, which promise nothing about the leader's own disk. The leader
//!    counts itself toward a quorum only for entries the application reported durable through
//!    `advance`, so an entry commits only once it is durable on a majority *including or excluding*
//!    the leader, never on the leader's memory alone.
//! 3. `Ready::entries` may replace a suffix of stored entries (a follower dropping a conflicting,
//!    uncommitted suffix): storage must drop everything from the first new index on.
//! 4. `Ready::committed_entries` are committed and durable in this node's own log; apply them in
//!    order. They never include an entry this node has not persisted (etcd #14370).
//! 5. Then call `advance(ready.ack())` (or `advance_append` / `advance_apply` separately when
//!    persistence and application run at different paces). Several `Ready`s may be outstanding;
//!    they must be persisted in the order they were taken.
//!
//! Conditions a caller can cause (a proposal to a follower, an overloaded leader, a malformed
//! message) are [`Error`]s and change nothing. Broken invariants (a commit index going backwards,
//! overwriting a committed entry, a storage that lost its own durable entries) panic: a node that
//! stops is better than one that spreads bad state.
//!
//! ## Map
//!
//! | file | concept |
//! |---|---|
//! | `raft.rs` | node state, terms, roles (`become_*`), ticks, `step` |
//! | `election.rs` | elections, RequestVote, PreVote |
//! | `leader.rs` | proposals, AppendEntries/heartbeats out, commitment |
//! | `follower.rs` | AppendEntries/heartbeats in |
//! | `raft_log.rs`, `log_unstable.rs` | the log: stable + unstable tail, commit/apply cursors |
//! | `tracker/` | per-follower progress, in-flight window |
//! | `quorum.rs` | majority arithmetic |
//! | `snapshot.rs` | snapshots, InstallSnapshot chunks, restore |
//! | `membership.rs` | joint consensus, learners, configuration history |
//! | `read_only.rs` | ReadIndex, leases, follower reads |
//! | `transfer.rs` | leadership transfer |
//! | `raw_node.rs` | `RawNode` and `Ready` |
//! | `storage.rs` | the `Storage` trait and `MemStorage` |

mod config;
mod election;
mod error;
mod follower;
mod leader;
mod log_unstable;
mod membership;
mod message;
mod quorum;
mod raft;
mod raft_log;
mod raw_node;
mod read_only;
mod rng;
mod snapshot;
mod storage;
mod tracker;
mod transfer;
mod types;

pub use config::Config;
#[cfg(feature = "mutations")]
pub use config::Mutation;
pub use error::{Error, Result, StorageError};
pub use membership::ConfPoint;
pub use message::{
    AppendEntries, AppendEntriesResponse, ConflictHint, Heartbeat, HeartbeatResponse,
    InstallSnapshot, InstallSnapshotResponse, Message, MessageBody, ReadIndex, ReadIndexResponse,
    RequestVote, RequestVoteResponse,
};
pub use quorum::{JointConfig, MajorityConfig, VoteResult};
pub use raft::Raft;
pub use raft_log::RaftLog;
pub use raw_node::{RawNode, Ready, ReadyAck};
pub use read_only::{ReadMode, ReadState};
pub use rng::{Rng, splitmix64};
pub use storage::{MemStorage, RaftState, Storage, limit_size};
pub use tracker::{Inflights, Progress, ProgressState, ProgressTracker, SnapshotTransfer};
pub use types::{
    ConfState, ENTRY_OVERHEAD_BYTES, Entry, EntryKind, HardState, Index, MemberChange, NodeId,
    Role, Snapshot, SnapshotMetadata, SoftState, Term,
};
