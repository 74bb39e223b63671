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
    /// Watch streams opened before the load and drained throughout (the cost of watch fan-out
    /// to writers).
    #[arg(long, default_value_t = 0)]
    watchers: usize,
    /// What each watcher watches: `all` (the whole `bench/` prefix: every event goes to every
    /// watcher) or `each` (watcher n watches key n alone).
    #[arg(long, default_value = "all")]
    watch: String,
}

/// A watch event's opening in a watch stream line.
const EVENT_MARK: &[u8] = b"\"type\":\"";
/// How long the watchers may take, after the load, to receive every event.
const WATCHERS_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a watch stream on `endpoint` for each of `paths`; each counts the events it receives
/// into `events`.
async fn open_watchers(endpoint: &str, paths: Vec<String>, events: &Arc<AtomicU64>) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = endpoint
        .strip_prefix("http://")
        .unwrap_or(endpoint)
        .to_string();
    for path in paths {
        let mut stream = tokio::net::TcpStream::connect(&address).await?;
        let request = format!("GET /v1/watch/{path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let events = events.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut carry = 0;
            while let Ok(n) = stream.read(&mut buf[carry..]).await {
                if n == 0 {
                    return;
                }
                let end = carry + n;
                let seen = buf[..end]
                    .windows(EVENT_MARK.len())
                    .filter(|w| *w == EVENT_MARK)
                    .count();
                events.fetch_add(seen as u64, Ordering::Relaxed);
                // Keep a possibly split mark's start for the next read.
                carry = (EVENT_MARK.len() - 1).min(end);
                buf.copy_within(end - carry..end, 0);
            }
        });
    }
    Ok(())
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
    let watched = Arc::new(AtomicU64::new(0));
    let (keys, first_key) = (args.keys, args.first_key);
    let bench_key = move |n: u64| format!("bench/{:08}", first_key + n % keys);
    if put && args.watchers > 0 {
        let paths = (0..args.watchers as u64).map(|n| match args.watch.as_str() {
            "all" => Ok("bench/?prefix".to_string()),
            "each" => Ok(bench_key(n)),
            other => bail!("--watch must be all or each, not {other}"),
        });
        open_watchers(&endpoint, paths.collect::<Result<_>>()?, &watched).await?;
        tokio::time::sleep(Duration::from_millis(500)).await; // let every watch start
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, endpoint, value) = (client.clone(), endpoint.clone(), value.clone());
        let (next, errors) = (next.clone(), errors.clone());
        let (requests, consistency) = (args.requests, args.consistency.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3).expect("3 significant digits is valid");
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return latencies;
                }
                let key = bench_key(n);
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
    if put && args.watchers > 0 {
        let written = args.requests - errors.load(Ordering::Relaxed);
        let expected = match args.watch.as_str() {
            "all" => written * args.watchers as u64,
            _ => (0..written)
                .filter(|n| n % args.keys < args.watchers as u64)
                .count() as u64,
        };
        let deadline = Instant::now() + WATCHERS_DRAIN_TIMEOUT;
        while watched.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "watchers: {} streams received {} of {} events ({:.2?} after the start)",
            args.watchers,
            watched.load(Ordering::Relaxed),
            expected,
            started.elapsed()
        );
    }
    Ok(())
}
