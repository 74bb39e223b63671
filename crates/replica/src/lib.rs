//! # raftkv-replica: one replica engine, two drivers
//!
//! The Raft node (`raftkv-raft`), the replicated state (the `raftkv-kv` store and the member
//! registry) and everything the node loop decides, in one pure, deterministic state machine:
//! proposal and read admission, writes matched to their entries by (index, term), reads released
//! at their read index, lease promotion, expiry and keep-alives, snapshots taken off the loop and
//! installed, history compaction, joins and learner promotion, address publishing, shutdown.
//!
//! It has no threads, clocks, sockets or files: time comes in as milliseconds with every input
//! that needs it, storage is the core's `Storage` trait (the WAL over a real or simulated disk),
//! and every effect goes out as an [`Output`] for the driver to carry out. The server
//! (`raftkv-server`) drives it with threads and the WAL on disk; the simulator (`raftkv-sim`)
//! drives the same code under seeded faults.
//!
//! | file | concept |
//! |---|---|
//! | `replica.rs` | the engine's state, settings, inputs, taking `Ready`s |
//! | `apply.rs` | completing a `Persist`: install, apply, answer writes |
//! | `reads.rs` | reads released at their read index |
//! | `leases.rs` | lease promotion, expiry revokes, keep-alives |
//! | `snapshot.rs` | snapshots off the loop, log compaction |
//! | `history.rs` | automatic compaction of key-value history |
//! | `membership.rs` | joins, removals, learner promotion, publishing, transfer targets |
//! | `state.rs` | entry payloads, the replicated state, snapshot views and data |
//! | `alarms.rs` | the raised alarms (`NOSPACE`, `CORRUPT`) |
//! | `auth.rs` | users, roles and permissions |
//! | `members.rs` | node ids, the member registry |
//! | `output.rs` | what the driver carries out |
//! | `error.rs` | request errors and fatal errors |

pub mod alarms;
mod apply;
pub mod auth;
pub mod error;
mod history;
mod leases;
pub mod members;
mod membership;
pub mod output;
mod reads;
mod replica;
mod snapshot;
pub mod state;

pub use error::{ReplicaError, RequestError};
pub use members::{Member, Registry, cluster_id, node_id};
pub use output::{Answer, ApplyRecord, Event, Output, Own, Persist, RequestId, SnapshotTask};
#[cfg(feature = "mutations")]
pub use replica::Mutation;
pub use replica::{
    HISTORY_COMPACT_INTERVAL_TICKS, HISTORY_RETAINED_REVISIONS, LEASE_REVOKES_PER_TICK_MAX,
    PENDING_REQUESTS_MAX, PROMOTE_LAG_ENTRIES, READ_TIMEOUT_TICKS, Replica, SNAPSHOT_ENTRIES,
    Settings,
};
pub use state::{Applied, Command, State, StateView};
