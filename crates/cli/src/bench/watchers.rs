//! Watchers for a load over etcd's API: `--watchers N` gRPC watch streams on the bench prefix,
//! opened before the load, spread over the load's connections. Each checks that it receives
//! every put exactly once, in revision order, and measures the time from a put's send (stamped
//! in its value) to the event's delivery — an upper bound on commit to delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use hdrhistogram::Histogram;
use raftkv_etcdpb::etcdserverpb::watch_client::WatchClient;
use raftkv_etcdpb::etcdserverpb::watch_request::RequestUnion;
use raftkv_etcdpb::etcdserverpb::{WatchCreateRequest, WatchRequest};
use serde::Serialize;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::load::Latency;

/// Hex digits of the send time stamped at the start of each value.
pub const STAMP_DIGITS: usize = 16;
/// How long a watch may take to be created.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// A value of `size` bytes (at least the stamp) stamped with the time since `origin`.
pub fn stamped(origin: Instant, size: usize) -> bytes::Bytes {
    let mut value = format!("{:016x}", origin.elapsed().as_micros() as u64).into_bytes();
    value.resize(size.max(STAMP_DIGITS), b'v');
    value.into()
}

/// What one watcher saw.
struct Seen {
    events: u64,
    /// Events whose revision was not above the previous one (duplicates or disorder).
    disordered: u64,
    latencies: Histogram<u64>,
}

/// What all the watchers saw (one JSON object in the load's summary).
#[derive(Clone, Debug, Serialize)]
pub struct WatchSummary {
    /// Watch streams.
    pub watchers: usize,
    /// Events each should have received (the puts that succeeded).
    pub expected_each: u64,
    /// Fewest events a watcher received.
    pub received_min: u64,
    /// Most events a watcher received.
    pub received_max: u64,
    /// Events out of revision order or repeated, over all watchers.
    pub disordered: u64,
    /// From a put's send to its event's delivery.
    pub latency_ms: Latency,
}

/// Open watch streams; `finish` stops them and sums up.
pub struct Watchers {
    tasks: Vec<tokio::task::JoinHandle<Seen>>,
    /// Events received so far, by watcher.
    counts: Arc<Vec<AtomicU64>>,
    stop: watch::Sender<bool>,
}

impl Watchers {
    /// Opens `count` watches of `prefix` over `channels` (in turn); returns once all exist.
    pub async fn open(
        channels: &[Channel],
        count: usize,
        prefix: &[u8],
        origin: Instant,
    ) -> Result<Watchers> {
        let (stop, stopped) = watch::channel(false);
        let counts: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
        let mut tasks = Vec::with_capacity(count);
        for i in 0..count {
            let mut client = WatchClient::new(channels[i % channels.len()].clone());
            let create = WatchCreateRequest {
                key: prefix.to_vec().into(),
                range_end: crate::etcd_client::prefix_end(prefix).into(),
                ..Default::default()
            };
            let request = WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            };
            let requests = futures::stream::iter([request]).chain(futures::stream::pending());
            let mut responses = client.watch(requests).await?.into_inner();
            match tokio::time::timeout(CREATE_TIMEOUT, responses.next()).await {
                Ok(Some(Ok(created))) if created.created => {}
                other => bail!("watch {i} was not created: {other:?}"),
            }
            let mut stopped = stopped.clone();
            let counts = counts.clone();
            tasks.push(tokio::spawn(async move {
                let mut seen = Seen {
                    events: 0,
                    disordered: 0,
                    latencies: Histogram::new(3).expect("3 significant digits is valid"),
                };
                let mut last_revision = 0;
                loop {
                    let response = tokio::select! {
                        r = responses.next() => r,
                        _ = stopped.changed() => return seen,
                    };
                    let Some(Ok(response)) = response else {
                        return seen;
                    };
                    let now = origin.elapsed().as_micros() as u64;
                    for event in response.events {
                        let Some(kv) = event.kv else { continue };
                        seen.events += 1;
                        counts[i].fetch_add(1, Ordering::Relaxed);
                        if kv.mod_revision <= last_revision {
                            seen.disordered += 1;
                        }
                        last_revision = kv.mod_revision;
                        let sent =
                            std::str::from_utf8(&kv.value[..STAMP_DIGITS.min(kv.value.len())])
                                .ok()
                                .and_then(|s| u64::from_str_radix(s, 16).ok());
                        if let Some(sent) = sent {
                            let _ = seen.latencies.record(now.saturating_sub(sent));
                        }
                    }
                }
            }));
        }
        Ok(Watchers {
            tasks,
            counts,
            stop,
        })
    }

    /// Waits up to `drain` for every watcher to have `expected` events, then stops them.
    pub async fn finish(self, expected: u64, drain: Duration) -> WatchSummary {
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline
            && self
                .counts
                .iter()
                .any(|c| c.load(Ordering::Relaxed) < expected)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.stop.send(true);
        let mut all = Histogram::<u64>::new(3).expect("3 significant digits is valid");
        let (mut min, mut max, mut disordered) = (u64::MAX, 0, 0);
        let watchers = self.tasks.len();
        for task in self.tasks {
            if let Ok(seen) = task.await {
                min = min.min(seen.events);
                max = max.max(seen.events);
                disordered += seen.disordered;
                let _ = all.add(seen.latencies);
            }
        }
        WatchSummary {
            watchers,
            expected_each: expected,
            received_min: if min == u64::MAX { 0 } else { min },
            received_max: max,
            disordered,
            latency_ms: Latency::of(&all),
        }
    }
}
