//! `raftkv bench compare`: raftkv beside etcd, measured the way a user comparing them would.
//!
//! Starts a 3-member etcd and a 3-member raftkv on loopback (both up together, each member
//! syncing its own data dir), and runs one matrix of loads against each through the same client
//! and protocol (etcd's v3 gRPC API). Workloads are interleaved — for each workload one store
//! then the other, the order alternating — and the whole matrix is repeated `--rounds` times,
//! because a disk's speed drifts within minutes and back-to-back blocks would compare the
//! weather. Also measures the floor (fdatasync and loopback), the members' CPU time per 1,000
//! puts and their memory; prints one Markdown table and stops everything it started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::floor::{self, Floor};
use super::load::{self, Op, Plan, Summary};
use super::target::{self, Consistency, Protocol, Target};

/// Members per cluster.
const MEMBERS: usize = 3;
/// Distinct keys the loads write and read.
const KEYS: u64 = 10_000;
/// Bytes per value.
const VALUE_BYTES: usize = 256;
/// Clients that load the keys before the first read workload.
const PRELOAD_CLIENTS: usize = 64;
/// How long a cluster may take to elect its first leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `raftkv bench compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The etcd server binary.
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// Where both clusters keep their data and logs (emptied first).
    #[arg(long, default_value = "target/bench-compare")]
    dir: PathBuf,
    /// Times the whole matrix runs; each workload's figures are the medians over the rounds.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seconds each workload runs against each store in each round.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// gRPC connections the clients share, against either store.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Only the workloads whose names contain this (repeatable), e.g. `--only put`.
    #[arg(long)]
    only: Vec<String>,
    /// First client port of etcd's members (peer ports follow the client ports).
    #[arg(long, default_value_t = 12379)]
    etcd_port: u16,
    /// First client port of raftkv's members (peer ports follow the client ports).
    #[arg(long, default_value_t = 14001)]
    raftkv_port: u16,
    /// Also write the table to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One workload of the matrix.
#[derive(Clone, Copy, Debug)]
struct Workload {
    name: &'static str,
    op: Op,
    consistency: Consistency,
    clients: usize,
    /// Sent to the leader alone (writes), or spread over every member (reads).
    leader_only: bool,
}

/// The matrix: puts at 1 to 256 clients, linearizable and serializable gets, a read-mostly mix.
const MATRIX: [Workload; 8] = [
    put("put, 1 client", 1),
    put("put, 16 clients", 16),
    put("put, 64 clients", 64),
    put("put, 256 clients", 256),
    get(
        "linearizable get, 64 clients",
        Consistency::Linearizable,
        64,
    ),
    get(
        "linearizable get, 256 clients",
        Consistency::Linearizable,
        256,
    ),
    get(
        "serializable get, 256 clients",
        Consistency::Serializable,
        256,
    ),
    Workload {
        name: "90% get / 10% put, 64 clients",
        op: Op::Mixed,
        consistency: Consistency::Linearizable,
        clients: 64,
        leader_only: false,
    },
];

const fn put(name: &'static str, clients: usize) -> Workload {
    Workload {
        name,
        op: Op::Put,
        consistency: Consistency::Linearizable,
        clients,
        leader_only: true,
    }
}

const fn get(name: &'static str, consistency: Consistency, clients: usize) -> Workload {
    Workload {
        name,
        op: Op::Get,
        consistency,
        clients,
        leader_only: false,
    }
}

/// A cluster the comparison started; its processes are killed when it is dropped.
struct Cluster {
    /// `etcd` or `raftkv`.
    name: &'static str,
    /// The member processes.
    members: Vec<Child>,
    /// Client endpoints, `127.0.0.1:port`.
    endpoints: Vec<String>,
    /// The endpoint of the leader, once known.
    leader: String,
    /// CPU time its members spent on puts, and the puts committed meanwhile.
    put_cpu: Duration,
    puts: u64,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.kill();
            let _ = member.wait();
        }
    }
}

impl Cluster {
    /// Starts `MEMBERS` processes, `command(i, client, peer, initial)` each, logging to `dir`.
    fn start(
        name: &'static str,
        dir: &Path,
        port: u16,
        peer_url: impl Fn(usize, u16) -> String,
        command: impl Fn(usize, &str, &str, &str, &Path) -> Command,
    ) -> Result<Cluster> {
        let ports = |i: usize| (port + i as u16, port + (MEMBERS + i) as u16);
        let initial = (0..MEMBERS)
            .map(|i| peer_url(i, ports(i).1))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            name,
            members: Vec::new(),
            endpoints: Vec::new(),
            leader: String::new(),
            put_cpu: Duration::ZERO,
            puts: 0,
        };
        for i in 0..MEMBERS {
            let (client, peer) = ports(i);
            let client = format!("127.0.0.1:{client}");
            let peer = format!("127.0.0.1:{peer}");
            let data = dir.join(format!("m{}", i + 1));
            let log_path = dir.join(format!("m{}.log", i + 1));
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("cannot create {}", log_path.display()))?;
            let child = command(i, &client, &peer, &initial, &data)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {name} member {}", i + 1))?;
            cluster.members.push(child);
            cluster.endpoints.push(client);
        }
        Ok(cluster)
    }

    /// Waits until a member leads.
    async fn wait_for_leader(&mut self) -> Result<()> {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        loop {
            for member in &mut self.members {
                if let Some(status) = member.try_wait()? {
                    bail!("a {} member exited ({status}); see its log", self.name);
                }
            }
            match target::etcd_leader(&self.endpoints).await {
                Ok(leader) => {
                    self.leader = leader;
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// CPU time (user + system) its members have used so far.
    fn cpu(&self) -> Duration {
        self.members.iter().map(|m| process_cpu(m.id())).sum()
    }

    /// The largest resident memory among its members, in MiB.
    fn rss_max_mib(&self) -> f64 {
        self.members
            .iter()
            .map(|m| process_rss_kib(m.id()) as f64 / 1024.0)
            .fold(0.0, f64::max)
    }
}

/// Clock ticks per second of `/proc`'s CPU times (asked of `getconf` once).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// A process's CPU time so far (user + system), from `/proc/PID/stat`; zero if unreadable.
fn process_cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// A process's resident memory in KiB, from `/proc/PID/status`; zero if unreadable.
fn process_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The first line `program --version` prints.
fn version_of(program: &Path) -> Result<String> {
    let output = Command::new(program)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "cannot run `{}`: install etcd (e.g. Debian's etcd-server) or pass --etcd",
                program.display()
            )
        })?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or("unknown")
        .to_string())
}

/// Runs one workload against one cluster.
async fn run_workload(
    cluster: &mut Cluster,
    workload: &Workload,
    args: &CompareArgs,
    first_key: u64,
    seconds: Option<f64>,
    requests: u64,
) -> Result<Summary> {
    let endpoints = if workload.leader_only {
        vec![cluster.leader.clone()]
    } else {
        cluster.endpoints.clone()
    };
    let target = Arc::new(
        Target::connect(
            Protocol::Etcd,
            &endpoints,
            workload.clients,
            args.connections,
        )
        .await?,
    );
    let plan = Arc::new(Plan {
        op: workload.op,
        read_percent: 90,
        consistency: workload.consistency,
        clients: workload.clients,
        requests,
        duration: seconds.map(Duration::from_secs_f64),
        rate: None,
        keys: KEYS,
        first_key,
        value: bytes::Bytes::from(vec![b'v'; VALUE_BYTES]),
        progress: false,
        stamp: None,
    });
    let cpu_before = cluster.cpu();
    let summary = load::run(target, Protocol::Etcd, plan).await;
    if workload.op == Op::Put {
        cluster.put_cpu += cluster.cpu().saturating_sub(cpu_before);
        cluster.puts += summary.requests - summary.errors;
    }
    Ok(summary)
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs the comparison and prints the table.
pub async fn run(args: CompareArgs) -> Result<()> {
    if args.rounds == 0 || args.seconds.is_nan() || args.seconds <= 0.0 {
        bail!("--rounds and --seconds must be positive");
    }
    let workloads: Vec<Workload> = MATRIX
        .into_iter()
        .filter(|w| args.only.is_empty() || args.only.iter().any(|o| w.name.contains(o.as_str())))
        .collect();
    if workloads.is_empty() {
        bail!("--only matches no workload");
    }
    let etcd_version = version_of(&args.etcd)?;
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let floor_dir = args.dir.join("floor");
    let floor: Floor =
        tokio::task::spawn_blocking(move || floor::measure(&floor_dir, floor::SAMPLES_DEFAULT))
            .await??;
    eprintln!(
        "floor: fdatasync p50 {:.3} ms + loopback round trip p50 {:.3} ms",
        floor.fdatasync_p50_ms, floor.loopback_rtt_p50_ms
    );
    let (etcd_dir, raftkv_dir) = (args.dir.join("etcd"), args.dir.join("raftkv"));
    std::fs::create_dir_all(&etcd_dir)?;
    std::fs::create_dir_all(&raftkv_dir)?;
    let etcd_bin = args.etcd.clone();
    let mut etcd = Cluster::start(
        "etcd",
        &etcd_dir,
        args.etcd_port,
        |i, port| format!("e{}=http://127.0.0.1:{port}", i + 1),
        |i, client, peer, initial, data| {
            let mut c = Command::new(&etcd_bin);
            c.arg("--name")
                .arg(format!("e{}", i + 1))
                .arg("--data-dir")
                .arg(data)
                .arg(format!("--listen-client-urls=http://{client}"))
                .arg(format!("--advertise-client-urls=http://{client}"))
                .arg(format!("--listen-peer-urls=http://{peer}"))
                .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
                .arg(format!("--initial-cluster={initial}"))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=raftkv-bench-compare");
            c
        },
    )?;
    let exe = std::env::current_exe().context("cannot find the raftkv binary")?;
    let mut raftkv = Cluster::start(
        "raftkv",
        &raftkv_dir,
        args.raftkv_port,
        |i, port| format!("n{}=http://127.0.0.1:{port}", i + 1),
        |i, client, peer, initial, data| {
            let mut c = Command::new(&exe);
            c.arg("serve")
                .args(["--name", &format!("n{}", i + 1)])
                .arg("--data-dir")
                .arg(data)
                .args(["--listen-client", client])
                .args(["--listen-peer", peer])
                .args(["--initial-cluster", initial])
                .env_clear()
                .envs(std::env::vars().filter(|(k, _)| !k.starts_with("RAFTKV_")));
            c
        },
    )?;
    etcd.wait_for_leader().await?;
    raftkv.wait_for_leader().await?;
    eprintln!(
        "etcd ({etcd_version}) leader {}, raftkv leader {}",
        etcd.leader, raftkv.leader
    );
    let preload = MATRIX[3];
    for cluster in [&mut etcd, &mut raftkv] {
        let loaded = run_workload(
            cluster,
            &Workload {
                clients: PRELOAD_CLIENTS,
                ..preload
            },
            &args,
            0,
            None,
            KEYS,
        )
        .await?;
        if loaded.errors > 0 {
            bail!(
                "{} refused {} of the preload's puts",
                cluster.name,
                loaded.errors
            );
        }
        cluster.put_cpu = Duration::ZERO;
        cluster.puts = 0;
    }
    // results[w] = (etcd's runs, raftkv's runs)
    let mut results: Vec<(Vec<Summary>, Vec<Summary>)> = vec![Default::default(); workloads.len()];
    for round in 0..args.rounds {
        for (w, workload) in workloads.iter().enumerate() {
            let etcd_first = (round + w) % 2 == 0;
            for turn in 0..2 {
                let is_etcd = (turn == 0) == etcd_first;
                let cluster = if is_etcd { &mut etcd } else { &mut raftkv };
                let summary =
                    run_workload(cluster, workload, &args, 0, Some(args.seconds), 0).await?;
                eprintln!(
                    "round {} {:<32} {:<7} {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
                    round + 1,
                    workload.name,
                    cluster.name,
                    summary.ops_per_sec,
                    summary.latency_ms.p50,
                    summary.latency_ms.p99,
                    summary.errors
                );
                if is_etcd {
                    results[w].0.push(summary);
                } else {
                    results[w].1.push(summary);
                }
            }
        }
    }
    let table = render(
        &args,
        &etcd_version,
        &floor,
        &workloads,
        &results,
        [&etcd, &raftkv],
    );
    drop(etcd);
    drop(raftkv);
    println!("{table}");
    if let Some(out) = &args.out {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(out, &table).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("written to {}", out.display());
    }
    Ok(())
}

/// The first `model name` of `/proc/cpuinfo`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The result as Markdown.
fn render(
    args: &CompareArgs,
    etcd_version: &str,
    floor: &Floor,
    workloads: &[Workload],
    results: &[(Vec<Summary>, Vec<Summary>)],
    [etcd, raftkv]: [&Cluster; 2],
) -> String {
    use std::fmt::Write;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "raftkv {} vs {etcd_version}: 3 members each on loopback, both fsyncing; the same client \
         (`raftkv bench`, etcd v3 gRPC, {} connections) against both; {}-byte values over {} \
         keys; {} round(s) of {} s per workload, interleaved; medians. Machine: {cores} cores, {}.",
        env!("CARGO_PKG_VERSION"),
        args.connections,
        VALUE_BYTES,
        KEYS,
        args.rounds,
        args.seconds,
        cpu_model()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| workload | etcd ops/s | raftkv ops/s | ratio | p50 ms etcd / raftkv | p99 ms etcd / raftkv |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let mut put1_p50 = None;
    for (workload, (e, r)) in workloads.iter().zip(results) {
        let ops = |s: &[Summary]| median(s.iter().map(|s| s.ops_per_sec).collect());
        let p50 = |s: &[Summary]| median(s.iter().map(|s| s.latency_ms.p50).collect());
        let p99 = |s: &[Summary]| median(s.iter().map(|s| s.latency_ms.p99).collect());
        let errors: u64 = e.iter().chain(r).map(|s| s.errors).sum();
        let (eo, ro) = (ops(e), ops(r));
        if workload.op == Op::Put && workload.clients == 1 {
            put1_p50 = Some(p50(r));
        }
        let _ = writeln!(
            out,
            "| {}{} | {:.0} | {:.0} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} |",
            workload.name,
            if errors > 0 {
                format!(" ({errors} errors)")
            } else {
                String::new()
            },
            eo,
            ro,
            if eo > 0.0 { ro / eo } else { 0.0 },
            p50(e),
            p50(r),
            p99(e),
            p99(r)
        );
    }
    let _ = writeln!(out);
    let _ = write!(
        out,
        "Floor: fdatasync p50 {:.3} ms + loopback round trip p50 {:.3} ms = {:.3} ms",
        floor.fdatasync_p50_ms,
        floor.loopback_rtt_p50_ms,
        floor.write_ms()
    );
    match put1_p50 {
        Some(p50) => {
            let _ = writeln!(
                out,
                "; raftkv's 1-client put p50 is {:.2} × the floor.",
                p50 / floor.write_ms()
            );
        }
        None => {
            let _ = writeln!(out, ".");
        }
    }
    let per_thousand = |c: &Cluster| {
        if c.puts == 0 {
            0.0
        } else {
            c.put_cpu.as_secs_f64() * 1000.0 * 1000.0 / c.puts as f64
        }
    };
    let (ec, rc) = (per_thousand(etcd), per_thousand(raftkv));
    let _ = writeln!(
        out,
        "CPU per 1,000 committed puts (all 3 members, user + system): etcd {ec:.0} ms, raftkv \
         {rc:.0} ms ({:.2} of etcd's).",
        if ec > 0.0 { rc / ec } else { 0.0 }
    );
    let _ = writeln!(
        out,
        "Resident memory, largest member, at the end: etcd {:.0} MiB, raftkv {:.0} MiB.",
        etcd.rss_max_mib(),
        raftkv.rss_max_mib()
    );
    out
}
