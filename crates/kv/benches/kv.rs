//! Throughput of the state machine on a large store: applies per second of puts and of
//! compare-and-swap transactions, and range reads of 100 keys, on a store of one million keys
//! (10,000 under `cargo bench -- --test`, so the smoke run stays fast). Also prints the memory
//! per key, measured from the resident set size (`/proc/self/statm`) before and after building
//! the store.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-kv cargo bench -p raftkv-kv`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use raftkv_kv::{
    Compare, CompareOp, CompareTarget, KvStore, Limits, PutRequest, RangeRequest, Request,
    TxnRequest,
};

const VALUE_BYTES: usize = 100;
const KEYS_FULL: u64 = 1_000_000;
const KEYS_TEST: u64 = 10_000;
const PUTS_PER_TXN: u64 = 100;

fn key(i: u64) -> String {
    format!("key/{i:08}")
}

/// A deterministic, cheap pseudo-random sequence (SplitMix64).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

struct Fixture {
    store: KvStore,
    index: u64,
    keys: u64,
}

impl Fixture {
    fn build(keys: u64) -> Fixture {
        let before = resident_bytes();
        let started = Instant::now();
        let mut store = KvStore::new(Limits::default());
        let mut index = 0;
        let value = vec![b'v'; VALUE_BYTES];
        for first in (0..keys).step_by(PUTS_PER_TXN as usize) {
            let success = (first..(first + PUTS_PER_TXN).min(keys))
                .map(|i| PutRequest::new(key(i), value.clone()).into())
                .collect();
            let txn = Request::txn(TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            });
            index += 1;
            assert!(store.apply(index, &txn.encode_to_vec()).result.is_ok());
            // Compact as a server would, so the build's changelog does not count as per-key memory
            // (the resident set never shrinks, so freed memory must be reused to be seen).
            if index % 64 == 0 {
                index += 1;
                let compact = Request::compact(store.revision());
                assert!(store.apply(index, &compact.encode_to_vec()).result.is_ok());
            }
        }
        let after = resident_bytes();
        let per_key = match (before, after) {
            (Some(b), Some(a)) => format!("{:.0}", a.saturating_sub(b) as f64 / keys as f64),
            _ => "n/a".into(),
        };
        println!(
            "store of {keys} keys ({}-byte keys, {VALUE_BYTES}-byte values) built in {:.2?}; \
             resident memory per key: {per_key} bytes",
            key(0).len(),
            started.elapsed(),
        );
        Fixture { store, index, keys }
    }
}

fn benches(c: &mut Criterion) {
    let test_mode = std::env::args().any(|a| a == "--test");
    let mut f = Fixture::build(if test_mode { KEYS_TEST } else { KEYS_FULL });
    let payloads = 4096u64;
    let value = vec![b'w'; VALUE_BYTES];

    let mut group = c.benchmark_group("kv");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));

    let puts: Vec<Vec<u8>> = (0..payloads)
        .map(|i| Request::put(key(mix(i) % f.keys), value.clone()).encode_to_vec())
        .collect();
    group.bench_function("apply put (overwrite)", |b| {
        let mut n = 0;
        b.iter(|| {
            f.index += 1;
            n += 1;
            black_box(f.store.apply(f.index, &puts[(n % payloads) as usize]))
        })
    });

    let txns: Vec<Vec<u8>> = (0..payloads)
        .map(|i| {
            let k = key(mix(i + payloads) % f.keys);
            Request::txn(TxnRequest {
                compare: vec![Compare::new(
                    k.clone(),
                    CompareOp::Greater,
                    CompareTarget::Version(0),
                )],
                success: vec![PutRequest::new(k.clone(), value.clone()).into()],
                failure: vec![RangeRequest::key(k).into()],
            })
            .encode_to_vec()
        })
        .collect();
    group.bench_function("apply txn (compare + put)", |b| {
        let mut n = 0;
        b.iter(|| {
            f.index += 1;
            n += 1;
            black_box(f.store.apply(f.index, &txns[(n % payloads) as usize]))
        })
    });

    let ranges: Vec<RangeRequest> = (0..payloads)
        .map(|i| {
            let start = mix(i + 2 * payloads) % (f.keys - 100);
            RangeRequest::range(key(start), key(start + 100))
        })
        .collect();
    group.bench_function("range 100 keys", |b| {
        let mut n = 0;
        b.iter(|| {
            n += 1;
            let response = f.store.range(&ranges[(n % payloads) as usize]).unwrap();
            assert_eq!(response.kvs.len(), 100);
            black_box(response)
        })
    });
    group.finish();
}

criterion_group!(kv, benches);
criterion_main!(kv);
