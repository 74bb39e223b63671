//! Group commit on the real file system: durable appends/s (and MB/s) of 256-byte entries with 1,
//! 16 and 256 concurrent appenders, beside the disk's raw `fdatasync` rate (write 256 bytes, sync).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use raftkv_wal::{FsDisk, GroupCommit, QUEUE_LEN_DEFAULT, Wal, WalOptions};

/// Payload bytes of each appended entry.
const ENTRY_BYTES: usize = 256;
/// Concurrent appender counts measured.
const APPENDERS: [usize; 3] = [1, 16, 256];
/// Bytes the raw-sync file is preallocated to (like a segment).
const RAW_FILE_BYTES: u64 = 64 << 20;

fn raw_fdatasync(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.path().join("raw"))
        .unwrap();
    fs4::fs_std::FileExt::allocate(&file, RAW_FILE_BYTES).unwrap();
    file.sync_all().unwrap();
    let record = [0xA5u8; ENTRY_BYTES];
    let mut offset = 0u64;
    let mut group = c.benchmark_group("raw");
    group.throughput(Throughput::Elements(1));
    group.bench_function("write_256B_fdatasync", |b| {
        b.iter(|| {
            file.write_all_at(&record, offset).unwrap();
            file.sync_data().unwrap();
            offset = (offset + ENTRY_BYTES as u64) % RAW_FILE_BYTES;
        })
    });
    group.finish();
}

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_commit");
    group.throughput(Throughput::Elements(1));
    for appenders in APPENDERS {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(FsDisk, dir.path(), WalOptions::default()).unwrap();
        let commit = Arc::new(GroupCommit::new(wal, QUEUE_LEN_DEFAULT));
        let data = Bytes::from(vec![0x5Au8; ENTRY_BYTES]);
        let name = format!("append_256B_x{appenders}");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| run_appenders(&commit, appenders, iters, &data))
        });
    }
    group.finish();
}

/// `iters` durable appends spread over `appenders` threads; returns the wall time.
fn run_appenders(
    commit: &Arc<GroupCommit<FsDisk>>,
    appenders: usize,
    iters: u64,
    data: &Bytes,
) -> Duration {
    let per_thread = iters.div_ceil(appenders as u64);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..appenders {
            scope.spawn(|| {
                for _ in 0..per_thread {
                    commit.append(1, data.clone()).wait().unwrap();
                }
            });
        }
    });
    // Time per append, scaled back to the `iters` asked for.
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_thread * appenders as u64) as f64)
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = raw_fdatasync, group_commit
}
criterion_main!(benches);
