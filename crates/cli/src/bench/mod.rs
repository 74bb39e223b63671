//! `raftkv bench`: a load generator for a running cluster, in raftkv's HTTP API or etcd's v3 gRPC
//! API (so the same load can be pointed at etcd), closed loop or at a fixed rate; a progress line
//! each second and one JSON line at the end. `raftkv bench compare` runs a matrix of loads
//! against raftkv and etcd side by side; `raftkv bench floor` measures the disk's and the
//! loopback's floor.

mod compare;
mod floor;
mod load;
mod target;
mod watchers;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use load::{Op, Plan};
use target::{Consistency, Protocol, Target};

/// `raftkv bench`: a load, or one of its subcommands.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Start a 3-member etcd and a 3-member raftkv on loopback and run the same matrix of loads
    /// against both through etcd's gRPC API, interleaved, round after round; print one table.
    Compare(compare::CompareArgs),
    /// Measure the floor of a replicated write here: 4 KiB append + fdatasync, loopback round trip.
    Floor(FloorArgs),
}

/// Flags of `raftkv bench floor`.
#[derive(Args, Debug)]
struct FloorArgs {
    /// A directory on the disk to measure.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Samples of each.
    #[arg(long, default_value_t = floor::SAMPLES_DEFAULT)]
    samples: usize,
}

/// Flags of one load.
#[derive(Args, Debug)]
struct LoadArgs {
    /// What to send: puts, gets, or a mix (`--read-percent` reads).
    #[arg(long, value_enum, default_value = "put")]
    op: Op,
    /// Percent of reads with `--op mixed`.
    #[arg(long, default_value_t = 90)]
    read_percent: u64,
    /// The API spoken: raftkv's HTTP API, or etcd's v3 gRPC API (raftkv's client port speaks it
    /// too, so the same load runs against etcd and raftkv).
    #[arg(long, value_enum, default_value = "http")]
    protocol: Protocol,
    /// Concurrent clients (each waits for its answer before its next request).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// gRPC connections the clients share (`--protocol etcd`; HTTP opens one per client).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Run for this many seconds instead of a request count.
    #[arg(long)]
    seconds: Option<f64>,
    /// Open loop: send this many requests per second in all, each timed from when it was due.
    #[arg(long)]
    rate: Option<f64>,
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
    /// How reads are served.
    #[arg(long, value_enum, default_value = "linearizable")]
    consistency: Consistency,
    /// Endpoints, comma-separated; clients are spread over them (the leader is fastest for
    /// writes; any member works).
    #[arg(
        long,
        alias = "endpoint",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:4001"
    )]
    endpoints: Vec<String>,
    /// Watch streams opened before the load and drained throughout (the cost of watch fan-out
    /// to writers; raftkv's HTTP API).
    #[arg(long, default_value_t = 0)]
    watchers: usize,
    /// What each watcher watches: `all` (the whole `bench/` prefix: every event goes to every
    /// watcher) or `each` (watcher n watches key n alone).
    #[arg(long, default_value = "all")]
    watch: String,
}

/// Runs `raftkv bench`.
pub async fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        Some(BenchCommand::Compare(compare)) => compare::run(compare).await,
        Some(BenchCommand::Floor(floor)) => {
            let measured = tokio::task::spawn_blocking(move || {
                floor::measure(&floor.dir, floor.samples.max(1))
            })
            .await??;
            println!("{}", serde_json::to_string(&measured)?);
            Ok(())
        }
        None => run_load(args.load).await,
    }
}

/// Runs one load and prints its summary: a line for people on stderr, JSON on stdout.
async fn run_load(args: LoadArgs) -> Result<()> {
    if args.clients == 0 || args.requests == 0 || args.keys == 0 {
        bail!("--clients, --requests and --keys must be at least 1");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of requests per second");
    }
    if args.seconds.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
        bail!("--seconds must be a positive number");
    }
    if args.read_percent > 100 {
        bail!("--read-percent must be at most 100");
    }
    if args.protocol == Protocol::Etcd && args.consistency == Consistency::Lease {
        bail!("etcd's API has no lease reads: use linearizable or serializable");
    }
    if args.watchers > 0 && args.op != Op::Put {
        bail!("--watchers needs --op put");
    }
    if args.watchers > 0 && args.protocol == Protocol::Etcd && args.watch != "all" {
        bail!("over etcd's API every watcher watches the whole bench prefix (--watch all)");
    }
    let plan = Arc::new(Plan {
        op: args.op,
        read_percent: args.read_percent,
        consistency: args.consistency,
        clients: args.clients,
        requests: args.requests,
        duration: args.seconds.map(Duration::from_secs_f64),
        rate: args.rate,
        keys: args.keys,
        first_key: args.first_key,
        value: bytes::Bytes::from(vec![b'v'; args.value_size]),
        progress: true,
        stamp: (args.watchers > 0 && args.protocol == Protocol::Etcd).then(Instant::now),
    });
    let target = Arc::new(
        Target::connect(
            args.protocol,
            &args.endpoints,
            args.clients,
            args.connections,
        )
        .await?,
    );
    let watched = Arc::new(AtomicU64::new(0));
    let mut etcd_watchers = None;
    if let (Some(origin), Target::Etcd { connections }) = (plan.stamp, &*target) {
        let watchers =
            watchers::Watchers::open(connections, args.watchers, b"bench/", origin).await?;
        etcd_watchers = Some(watchers);
    } else if args.watchers > 0 {
        let paths = (0..args.watchers as u64).map(|n| match args.watch.as_str() {
            "all" => Ok("bench/?prefix".to_string()),
            "each" => Ok(plan.key(n)),
            other => bail!("--watch must be all or each, not {other}"),
        });
        let endpoint = crate::client::normalize(&args.endpoints[0]);
        open_watchers(&endpoint, paths.collect::<Result<_>>()?, &watched).await?;
        tokio::time::sleep(Duration::from_millis(500)).await; // let every watch start
    }
    let started = Instant::now();
    let mut summary = load::run(target, args.protocol, plan.clone()).await;
    if let Some(watchers) = etcd_watchers {
        let written = summary.requests - summary.errors;
        let seen = watchers.finish(written, WATCHERS_DRAIN_TIMEOUT).await;
        eprintln!(
            "watchers: {} streams received {}..{} of {} events each ({} out of order or \
             repeated); put to delivery ms: p50 {:.2}  p99 {:.2}  max {:.2}",
            seen.watchers,
            seen.received_min,
            seen.received_max,
            seen.expected_each,
            seen.disordered,
            seen.latency_ms.p50,
            seen.latency_ms.p99,
            seen.latency_ms.max
        );
        summary.watch = Some(seen);
    }
    eprintln!(
        "{:?} x{} ({} clients, {}-byte values, {} keys) in {:.2}s: {:.0} requests/s",
        summary.op,
        summary.requests,
        summary.clients,
        args.value_size,
        args.keys,
        summary.seconds,
        summary.ops_per_sec
    );
    let l = summary.latency_ms;
    eprintln!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}; errors {}",
        l.p50, l.p90, l.p99, l.p999, l.max, summary.errors
    );
    if args.watchers > 0 && args.protocol == Protocol::Http {
        let written = summary.requests - summary.errors;
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
        eprintln!(
            "watchers: {} streams received {} of {} events ({:.2?} after the start)",
            args.watchers,
            watched.load(Ordering::Relaxed),
            expected,
            started.elapsed()
        );
    }
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
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
