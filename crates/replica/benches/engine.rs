//! Puts committed and applied per second through the replica engine on a 3-node in-memory
//! cluster: each iteration proposes a batch of puts on the leader (the server's command
//! envelope, 256-byte values over 10,000 keys) and runs the cluster until every one is answered.
//! The engine's whole node loop is measured — proposal, replication, apply into the MVCC store,
//! the reply — without the disk or the network.

#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use common::Cluster;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use raftkv_kv::Request;
use raftkv_replica::{Command, Settings};

/// Bytes per value.
const VALUE_BYTES: usize = 256;
/// Distinct keys the puts cycle over.
const KEYS: u64 = 10_000;

fn engine_puts(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_puts_3_nodes");
    for batch in [1u64, 64, 1024] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let settings = Settings {
                snapshot_entries: 100_000,
                history_compact_interval_ticks: 0,
                ..Settings::default()
            };
            let mut cluster = Cluster::new(3, settings);
            cluster.nodes[0].campaign();
            cluster.run();
            assert_eq!(cluster.leader(), Some(1));
            let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
            let mut next = 0u64;
            b.iter(|| {
                for _ in 0..batch {
                    next += 1;
                    let key = Bytes::from(format!("bench/{:08}", next % KEYS));
                    let request = Request::put(key, value.clone());
                    cluster.nodes[0].propose(next, Command::kv(request.encode_to_vec().into()));
                }
                cluster.run();
                let answered = cluster.replies[0].len() as u64;
                assert_eq!(answered, batch, "every put answered");
                cluster.replies[0].clear();
            });
        });
    }
    group.finish();
}

criterion_group!(benches, engine_puts);
criterion_main!(benches);
