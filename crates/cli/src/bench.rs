//! `raftkv bench`: a load generator against a running cluster. Concurrent clients send puts (or
//! reads) as fast as they are answered; prints throughput and latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use hdrhistogram::Histogram;

/// Flags of `raftkv bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// put or get.
    #[arg(long, default_value = "put")]
    op: String,
    /// Concurrent clients (each waits for its answer before the next request).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys written or read.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Number of the first key (keys are `bench/<first-key + n % keys>`), so successive runs can
    /// load fresh keys.
    #[arg(long, default_value_t = 0)]
    first_key: u64,
    /// Read consistency for `--op get`: linearizable, lease or stale.
    #[arg(long, default_value = "linearizable")]
    consistency: String,
    /// Client URL to send to (the leader is fastest for writes; any node works).
    #[arg(long, default_value = "http://127.0.0.1:4001")]
    endpoint: String,
}

/// Runs the load and prints the result.
pub async fn run(args: BenchArgs) -> Result<()> {
    if args.clients == 0 || args.requests == 0 {
        bail!("--clients and --requests must be at least 1");
    }
    let put = match args.op.as_str() {
        "put" => true,
        "get" => false,
        other => bail!("--op must be put or get, not {other}"),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    let endpoint = args.endpoint.trim_end_matches('/').to_string();
    let value = bytes::Bytes::from(vec![b'v'; args.value_size]);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, endpoint, value) = (client.clone(), endpoint.clone(), value.clone());
        let (next, errors) = (next.clone(), errors.clone());
        let (requests, keys, consistency) = (args.requests, args.keys, args.consistency.clone());
        let first_key = args.first_key;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3).expect("3 significant digits is valid");
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return latencies;
                }
                let key = format!("bench/{:08}", first_key + n % keys);
                let sent = Instant::now();
                let outcome = if put {
                    client
                        .put(format!("{endpoint}/v1/kv/{key}"))
                        .body(value.clone())
                        .send()
                        .await
                } else {
                    client
                        .get(format!("{endpoint}/v1/kv/{key}?consistency={consistency}"))
                        .send()
                        .await
                };
                let ok = match outcome {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status == 200 || (!put && status == 404)
                    }
                    Err(_) => false,
                };
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                let _ = latencies.record(sent.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut all = Histogram::<u64>::new(3).expect("3 significant digits is valid");
    for task in tasks {
        let _ = all.add(task.await?);
    }
    let elapsed = started.elapsed();
    let rate = args.requests as f64 / elapsed.as_secs_f64();
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{} x{} ({} clients, {}-byte values, {} keys) in {:.2?}: {:.0} requests/s",
        args.op, args.requests, args.clients, args.value_size, args.keys, elapsed, rate
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}; errors {}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        all.max() as f64 / 1000.0,
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}
