//! Proposals committed per second on a 3-node in-memory cluster, with batching: each iteration
//! proposes a batch on the leader and runs the cluster until every node has applied it.

#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use common::Cluster;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Payload of each proposal, in bytes.
const PAYLOAD_BYTES: usize = 128;

fn commit_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_3_nodes");
    for batch in [1usize, 64, 1024] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let mut cluster = Cluster::new(&[1, 2, 3]);
            cluster.campaign(1);
            let payload = Bytes::from(vec![7u8; PAYLOAD_BYTES]);
            b.iter(|| {
                for _ in 0..batch {
                    cluster.node_mut(1).propose(payload.clone()).unwrap();
                }
                cluster.stabilize();
                // Keep memory flat across iterations: the harness records applied entries.
                for applied in cluster.applied.values_mut() {
                    applied.clear();
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, commit_throughput);
criterion_main!(benches);
