//! The `raftkv` binary: `raftkv serve` runs a node, `raftkv dev` a local cluster, `status`,
//! `member` and `leader` operate a cluster, and the other subcommands are a client of the HTTP
//! API (or, with `--etcd`, of etcd's gRPC API).

/// `println!` for a command's output: when the reader went away (`raftkv ls | head -1`), the
/// command ends quietly instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod bench;
mod client;
mod dev;
mod etcd_client;
mod members;
mod serve;
mod snapshot;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a node allocates and frees many small buffers per
/// request on several threads (HTTP/2 frames, protobuf messages), where glibc's allocator spent
/// a fifth of the leader's CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// raftkv: a replicated key-value store built on Raft.
#[derive(Parser, Debug)]
#[command(name = "raftkv", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node (with no flags: a single-node cluster on 127.0.0.1:4001, data in ./raftkv-data).
    Serve(Box<serve::ServeArgs>),
    /// Start a local cluster of `raftkv serve` processes on loopback; Ctrl-C stops it.
    Dev(dev::DevArgs),
    /// Set a key.
    Put(client::PutArgs),
    /// Read a key.
    Get(client::GetArgs),
    /// Delete a key (or every key under a prefix with --prefix).
    Del(client::DelArgs),
    /// Print each change to a key (or every key under a prefix with --prefix) as it happens.
    Watch(client::WatchArgs),
    /// List the keys under a prefix.
    Ls(client::LsArgs),
    /// Show a node's view of the cluster.
    Status(members::StatusArgs),
    /// List, add, promote or remove members.
    #[command(subcommand)]
    Member(members::MemberCommand),
    /// Hand leadership to another voter.
    #[command(subcommand)]
    Leader(members::LeaderCommand),
    /// List or disarm alarms (NOSPACE: the storage quota is used up).
    #[command(subcommand)]
    Alarm(members::AlarmCommand),
    /// Save a backup of a live member, inspect one, or restore a new cluster from one.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Load a running cluster with concurrent puts or gets; prints requests/s and latencies.
    Bench(bench::BenchArgs),
    /// Grant, renew or revoke a lease (keys attached to a lease vanish when it ends).
    #[command(subcommand)]
    Lease(client::LeaseCommand),
}

impl Command {
    /// Whether an operator command runs under `--json` (then its errors are JSON too).
    fn json(&self) -> bool {
        match self {
            Command::Status(args) => args.json(),
            Command::Member(command) => command.common().json,
            Command::Leader(command) => command.common().json,
            Command::Snapshot(command) => command.json(),
            Command::Alarm(command) => command.common().json,
            _ => false,
        }
    }
}

/// How long the process waits for the async runtime's tasks when it exits.
const RUNTIME_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json = cli.command.json();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Put(args) => client::put(args).await,
            Command::Get(args) => client::get(args).await,
            Command::Del(args) => client::del(args).await,
            Command::Watch(args) => client::watch(args).await,
            Command::Ls(args) => client::ls(args).await,
            Command::Status(args) => members::status(args).await,
            Command::Member(command) => members::member(command).await,
            Command::Leader(command) => members::leader(command).await,
            Command::Snapshot(command) => snapshot::snapshot(command).await,
            Command::Alarm(command) => members::alarm(command).await,
            Command::Lease(command) => client::lease(command).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    // A blocking task may still wait on stdin (`serve --stop-with-stdin`): do not wait for it,
    // so a node that failed exits at once with its reason.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if json => {
            out!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
