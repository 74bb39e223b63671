//! # raftkv-sim: a deterministic simulator for the raftkv Raft core
//!
//! Runs a cluster of 1, 3, 5 or 7 real `raftkv_raft::RawNode`s (plus spare nodes membership
//! changes may add) driving the real state machine (`raftkv_kv::KvStore`), each node on the real
//! write-ahead log (`raftkv_wal::Wal`) over a `MemDisk` that models power loss (or on
//! `MemStorage`), under a
//! seeded network (latency, loss, duplication, reordering, partitions of every shape), seeded node
//! faults (crashes that lose or tear what was not synced, failed syncs that stop a node, slow
//! disks, pauses) and seeded operator actions (snapshots and log compaction, membership changes,
//! leadership transfers), with concurrent clients that put, delete, compare-and-swap and read
//! (through the log, by ReadIndex, by lease and from followers) in exactly-once sessions, grant
//! leases and keep some alive, time out and retry. Single-threaded, no real time, no real I/O: a
//! seed replays bit for bit. Checkers verify Raft's safety properties (paper Figure 3) over
//! compacted logs and changing configurations, State Machine Safety on the store's state hash at
//! every applied index and snapshot, the WAL's recovery contract, durability of acknowledged
//! writes, linearizability of the client history (reads included), exactly-once writes, lease
//! safety (no lease revoked before its TTL passed since its last renewal), and liveness once
//! faults stop (leases nobody keeps alive expire). Beside the random runs, `explore` checks every
//! interleaving of a tiny scenario up to a depth.
//!
//! ## Map
//!
//! | module | owns |
//! |---|---|
//! | `sim` | the event loop of one run: events, phases, fault injection, checks |
//! | `swarm` | the configuration each seed draws (cluster size, Raft knobs, fault mix, workload) |
//! | `node` | one server: `RawNode`, state machine, reads, leases, snapshots, crash/pause/slow disk |
//! | `disk` | a node's stable storage: the real WAL over a `MemDisk`, or `MemStorage` |
//! | `network` | latency, loss, duplication, partitions |
//! | `faults` | fault kinds and the fault mix |
//! | `client`, `history` | clients with timeouts and retries, and the history they record |
//! | `kv` | the adapter between the register workload and the real store (`raftkv_kv`) |
//! | `checkers` | one file per property |
//! | `explore` | the bounded exhaustive search |
//! | `trace`, `rng` | the trace with its hash, and the seeded generator |

pub mod checkers;
pub mod client;
pub mod disk;
pub mod explore;
pub mod faults;
pub mod history;
pub mod kv;
pub mod network;
pub mod node;
pub mod rng;
pub mod sim;
pub mod swarm;
pub mod trace;

pub use checkers::{Property, Violation};
pub use sim::{ConfigHook, RunReport, SimConfigHook, SimOptions, Stats, run};
pub use swarm::SimConfig;
