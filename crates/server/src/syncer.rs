//! The WAL syncer: a thread that runs the `fdatasync`s, so the driver keeps taking input (peer
//! acknowledgements, new proposals, reads) while the disk works. The driver appends each
//! `Persist` to the WAL and hands the syncer a handle on the tail file with the number of the
//! last `Persist` written; the syncer syncs once for every job queued meanwhile (group commit)
//! and reports the highest number now durable.
//!
//! Invariants: a report names only `Persist`s written before the sync began; reports come in
//! increasing order; a failed sync is reported once and the syncer stops (the node stops and
//! acknowledges nothing more).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use raftkv_wal::{DiskFile, FsFile};

use crate::node::{Input, Shared};

/// Sync jobs queued at most (the driver waits beyond; one sync covers them all anyway).
const JOBS_MAX: usize = 1024;

/// A sync to run.
pub struct Job {
    /// A handle on the WAL's tail file, taken after the writes it must make durable.
    pub file: FsFile,
    /// The last `Persist` written before the handle was taken.
    pub through: u64,
}

/// Where the WAL is, and debugging aids that make syncs stall or fail (`None` in production).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The WAL's directory (named in errors).
    pub dir: PathBuf,
    /// While this file exists, syncs wait (a stalled disk).
    pub stall_file: Option<PathBuf>,
    /// While this file exists, syncs fail.
    pub fail_file: Option<PathBuf>,
}

/// Starts the syncer; it reports on the driver's queue (`Input::Synced`) and stops when the
/// driver goes away.
pub fn spawn(
    shared: Arc<Shared>,
    report: SyncSender<Input>,
    settings: Settings,
) -> std::io::Result<SyncSender<Job>> {
    let (jobs, rx) = sync_channel::<Job>(JOBS_MAX);
    std::thread::Builder::new()
        .name("raftkv-wal-sync".into())
        .spawn(move || run(&shared, &rx, &report, &settings))?;
    Ok(jobs)
}

fn run(shared: &Shared, jobs: &Receiver<Job>, report: &SyncSender<Input>, settings: &Settings) {
    while let Ok(first) = jobs.recv() {
        // Every job queued meanwhile shares this sync: the last handle is the newest tail, and
        // a segment rollover synced the segments before it.
        let last = jobs.try_iter().last().unwrap_or(first);
        let result = sync(shared, last.file, settings).map(|()| last.through);
        let failed = result.is_err();
        if report.send(Input::Synced(result)).is_err() || failed {
            return;
        }
    }
}

/// One `fdatasync`, timed for `/metrics` and the disk-stall check.
fn sync(shared: &Shared, mut file: FsFile, settings: &Settings) -> Result<(), String> {
    if let Some(fail) = &settings.fail_file
        && fail.exists()
    {
        return Err(format!(
            "write-ahead log sync failed (injected: {} exists)",
            fail.display()
        ));
    }
    let start = Instant::now();
    let started_ms = shared.epoch.elapsed().as_millis().max(1) as u64;
    shared.sync_started_ms.store(started_ms, Ordering::Relaxed);
    if let Some(stall) = &settings.stall_file {
        while stall.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let synced = file.sync();
    shared.sync_started_ms.store(0, Ordering::Relaxed);
    synced.map_err(|e| {
        format!(
            "write-ahead log sync in {} failed: {e}",
            settings.dir.display()
        )
    })?;
    shared.metrics.record_wal_sync(start.elapsed());
    Ok(())
}
