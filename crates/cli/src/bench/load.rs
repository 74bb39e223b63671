//! Running one load: concurrent clients send requests as fast as they are answered (closed
//! loop), or at a fixed rate (open loop, `--rate`), until a request count or a duration is
//! reached; a progress line each second; a [`Summary`] at the end.
//!
//! In the open loop request `n` is due at `start + n / rate` and its latency counts from then,
//! not from when a client was free to send it: a stalled server shows as latency, not as fewer
//! requests (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::target::{Consistency, Protocol, Target};

/// Significant digits the latency histograms keep.
const HISTOGRAM_DIGITS: u8 = 3;
/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The operation mix, from `--op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Puts only.
    Put,
    /// Reads only.
    Get,
    /// `--read-percent` reads, the rest puts.
    Mixed,
}

/// What one load does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The operation mix.
    pub op: Op,
    /// Percent of reads when `op` is `Mixed`.
    pub read_percent: u64,
    /// How reads are served.
    pub consistency: Consistency,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests in all (ignored when `duration` is set).
    pub requests: u64,
    /// Run for this long instead of a request count.
    pub duration: Option<Duration>,
    /// Requests per second in all (open loop); `None`: as fast as answered.
    pub rate: Option<f64>,
    /// Distinct keys.
    pub keys: u64,
    /// Number of the first key.
    pub first_key: u64,
    /// The value every put writes.
    pub value: Bytes,
    /// Print a progress line each second (to stderr).
    pub progress: bool,
    /// Stamp each put's value with its send time since this origin (for watchers).
    pub stamp: Option<std::time::Instant>,
}

impl Plan {
    /// The key of request `n`.
    pub fn key(&self, n: u64) -> String {
        format!("bench/{:08}", self.first_key + n % self.keys)
    }

    /// Whether request `n` is a read (spread evenly through the mix).
    fn is_read(&self, n: u64) -> bool {
        match self.op {
            Op::Put => false,
            Op::Get => true,
            Op::Mixed => n.wrapping_mul(37) % 100 < self.read_percent,
        }
    }
}

/// Latencies in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// The slowest.
    pub max: f64,
}

impl Latency {
    /// The percentiles of a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: histogram.max() as f64 / 1000.0,
        }
    }
}

/// The outcome of one load (printed as one JSON line).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The protocol spoken.
    pub protocol: Protocol,
    /// The operation mix.
    pub op: Op,
    /// How reads were served.
    pub consistency: Consistency,
    /// Concurrent clients.
    pub clients: usize,
    /// The open-loop rate, if any.
    pub rate: Option<f64>,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (counted in the latencies too).
    pub errors: u64,
    /// Wall time of the load.
    pub seconds: f64,
    /// Requests answered per second.
    pub ops_per_sec: f64,
    /// Request latencies.
    pub latency_ms: Latency,
    /// What the watchers saw, if any watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<super::watchers::WatchSummary>,
}

/// A histogram of microseconds.
fn histogram() -> Histogram<u64> {
    Histogram::new(HISTOGRAM_DIGITS).expect("3 significant digits is a valid precision")
}

/// What the clients share.
struct Shared {
    /// The next request number.
    next: AtomicU64,
    /// Requests finished.
    done: AtomicU64,
    /// Requests failed.
    errors: AtomicU64,
    /// Latencies since the last progress line.
    window: Mutex<Histogram<u64>>,
}

/// Runs `plan` against `target`.
pub async fn run(target: Arc<Target>, protocol: Protocol, plan: Arc<Plan>) -> Summary {
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        window: Mutex::new(histogram()),
    });
    let started = tokio::time::Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let progress = plan.progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
            let mut last = 0;
            loop {
                ticker.tick().await;
                let done = shared.done.load(Ordering::Relaxed);
                let window = match shared.window.lock() {
                    Ok(mut window) => {
                        let latency = Latency::of(&window);
                        window.reset();
                        latency
                    }
                    Err(_) => Latency::default(),
                };
                eprintln!(
                    "{:>4.0}s  {:>7} ops/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
                    started.elapsed().as_secs_f64(),
                    done - last,
                    window.p50,
                    window.p99,
                    shared.errors.load(Ordering::Relaxed)
                );
                last = done;
            }
        })
    });
    let mut tasks = Vec::with_capacity(plan.clients);
    for client in 0..plan.clients {
        let (target, plan, shared) = (target.clone(), plan.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = histogram();
            loop {
                let n = shared.next.fetch_add(1, Ordering::Relaxed);
                if deadline.is_none() && n >= plan.requests {
                    return latencies;
                }
                let due = match plan.rate {
                    Some(rate) => {
                        let due = started + Duration::from_secs_f64(n as f64 / rate);
                        tokio::time::sleep_until(due).await;
                        due
                    }
                    None => tokio::time::Instant::now(),
                };
                if deadline.is_some_and(|d| due >= d) {
                    return latencies;
                }
                let key = plan.key(n);
                let ok = if plan.is_read(n) {
                    target.get(client, key, plan.consistency).await
                } else {
                    let value = match plan.stamp {
                        Some(origin) => super::watchers::stamped(origin, plan.value.len()),
                        None => plan.value.clone(),
                    };
                    target.put(client, key, value).await
                };
                if !ok {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
                let micros = due.elapsed().as_micros() as u64;
                let _ = latencies.record(micros);
                if let Ok(mut window) = shared.window.lock() {
                    let _ = window.record(micros);
                }
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut all = histogram();
    for task in tasks {
        if let Ok(latencies) = task.await {
            let _ = all.add(latencies);
        }
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    let seconds = started.elapsed().as_secs_f64();
    let requests = shared.done.load(Ordering::Relaxed);
    Summary {
        protocol,
        op: plan.op,
        consistency: plan.consistency,
        clients: plan.clients,
        rate: plan.rate,
        requests,
        errors: shared.errors.load(Ordering::Relaxed),
        seconds,
        ops_per_sec: requests as f64 / seconds,
        latency_ms: Latency::of(&all),
        watch: None,
    }
}
