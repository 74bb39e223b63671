//! The snapshot worker: a thread that does a snapshot's heavy work away from the driver, so no
//! snapshot of any size holds up a tick, a heartbeat, a vote or an apply.
//! - Taking one: encode the engine's copy-on-write view, write and sync the file, report it (the
//!   driver then records only the mark in the WAL and compacts the log).
//! - Installing the leader's: write and sync its file, decode it into a state, report both (the
//!   driver then records the mark and hands the state to the engine).
//!
//! Invariant: the worker never touches the WAL's log or the engine; it holds at most one job of
//! each kind (the engine asks for one snapshot at a time, the driver installs one at a time).

use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

use raftkv_kv::Limits;
use raftkv_raft::{Index, Snapshot};
use raftkv_replica::{ReplicaError, SnapshotTask, State, state};
use raftkv_wal::{FsDisk, SnapshotWriter};

use crate::node::Input;

/// Jobs queued for the worker at most: one snapshot taken, one installed.
const JOBS_MAX: usize = 2;

/// Work for the snapshot worker.
pub enum Job {
    /// Produce the snapshot the engine asked for.
    Take(SnapshotTask),
    /// Write and decode a snapshot received from the leader (`Persist` number `seq`).
    Install {
        /// The `Persist` that carries it.
        seq: u64,
        /// The snapshot.
        snapshot: Snapshot,
        /// The limits the state runs with.
        limits: Limits,
    },
}

/// What the worker reports to the driver.
pub enum Done {
    /// A snapshot taken: written, or why not (with its index).
    Taken(Result<Snapshot, (Index, String)>),
    /// A leader's snapshot: see [`Installed`].
    Installed(Box<Installed>),
}

/// A leader's snapshot, handled by the worker.
pub struct Installed {
    /// The `Persist` that carries it.
    pub seq: u64,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Whether its file is durable (the I/O error is fatal).
    pub written: Result<(), String>,
    /// The state it decodes to.
    pub restored: Result<State, ReplicaError>,
}

/// Starts the worker; it reports on the driver's queue and stops when the driver goes away.
/// `delay` (a debugging aid) makes every job that much slower.
pub fn spawn(
    writer: SnapshotWriter<FsDisk>,
    report: SyncSender<Input>,
    delay: Option<Duration>,
) -> std::io::Result<SyncSender<Job>> {
    let (jobs, rx) = sync_channel::<Job>(JOBS_MAX);
    std::thread::Builder::new()
        .name("raftkv-snapshot".into())
        .spawn(move || {
            for job in rx {
                if let Some(delay) = delay {
                    std::thread::sleep(delay);
                }
                let done = match job {
                    Job::Take(task) => {
                        let index = task.metadata.index;
                        let snapshot = task.encode();
                        Done::Taken(match writer.write(&snapshot) {
                            Ok(()) => Ok(snapshot),
                            Err(e) => Err((index, e.to_string())),
                        })
                    }
                    Job::Install {
                        seq,
                        snapshot,
                        limits,
                    } => {
                        let written = writer.write(&snapshot).map_err(|e| e.to_string());
                        let index = snapshot.metadata.index;
                        let restored = state::decode(index, &snapshot.data, limits);
                        Done::Installed(Box::new(Installed {
                            seq,
                            snapshot,
                            written,
                            restored,
                        }))
                    }
                };
                if report.send(Input::SnapshotDone(done)).is_err() {
                    return;
                }
            }
        })?;
    Ok(jobs)
}
