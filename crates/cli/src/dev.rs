//! `raftkv dev`: a local cluster of real `raftkv serve` processes on loopback, for trying raftkv
//! out. Each node logs to a file in the dev data dir; Ctrl-C (or SIGTERM) stops them all cleanly.
//! With `--tls`, a throwaway CA signs a certificate per node and one for the client (written to
//! `<data-dir>/tls`, new on every start), and both ports speak TLS only.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::process::{Child, Command};

/// Most nodes `raftkv dev` starts.
pub const DEV_NODES_MAX: usize = 7;
/// How long to wait for the cluster to elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `raftkv dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Number of nodes (1 to 7).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Client port of the first node; the others follow.
    #[arg(long, default_value_t = 4001)]
    client_port: u16,
    /// Peer port of the first node; the others follow.
    #[arg(long, default_value_t = 7001)]
    peer_port: u16,
    /// Where the nodes keep their data and logs (kept between runs: a restart resumes).
    #[arg(long, default_value = "raftkv-dev")]
    data_dir: PathBuf,
    /// TLS on the client and peer ports, with a throwaway CA and certificates written to
    /// <data-dir>/tls (peers must present theirs).
    #[arg(long)]
    tls: bool,
}

/// Starts the cluster and waits for Ctrl-C.
pub async fn run(args: DevArgs) -> Result<()> {
    if args.nodes == 0 || args.nodes > DEV_NODES_MAX {
        bail!("--nodes must be between 1 and {DEV_NODES_MAX}");
    }
    for (flag, port) in [
        ("--client-port", args.client_port),
        ("--peer-port", args.peer_port),
    ] {
        if port == 0 || usize::from(port) + args.nodes > usize::from(u16::MAX) {
            bail!("{flag} {port} leaves no room for {} nodes", args.nodes);
        }
    }
    // Listen for signals before anything starts, so an early Ctrl-C still stops every node.
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the raftkv binary")?;
    let tls_dir = args.data_dir.join("tls");
    let scheme = if args.tls { "https" } else { "http" };
    if args.tls {
        let names: Vec<String> = (1..=args.nodes).map(|i| format!("n{i}")).collect();
        let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
        names.push("client");
        raftkv_server::tls::DevCa::new("raftkv dev CA")?.write(&tls_dir, &names)?;
    }
    let node = |i: usize| {
        let n = i as u16;
        (
            format!("n{}", i + 1),
            format!("127.0.0.1:{}", args.client_port + n),
            format!("127.0.0.1:{}", args.peer_port + n),
        )
    };
    let initial: Vec<String> = (0..args.nodes)
        .map(|i| {
            let (name, _, peer) = node(i);
            format!("{name}={scheme}://{peer}")
        })
        .collect();
    let initial = initial.join(",");
    let mut children: Vec<(String, Child)> = Vec::new();
    for i in 0..args.nodes {
        let (name, client, peer) = node(i);
        let dir = args.data_dir.join(&name);
        let log_path = args.data_dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut command = Command::new(&exe);
        command.arg("serve");
        if args.tls {
            let cert = tls_dir.join(format!("{name}.pem"));
            let key = tls_dir.join(format!("{name}-key.pem"));
            let ca = tls_dir.join("ca.pem");
            for prefix in ["--", "--peer-"] {
                command
                    .arg(format!("{prefix}cert-file"))
                    .arg(&cert)
                    .arg(format!("{prefix}key-file"))
                    .arg(&key)
                    .arg(format!("{prefix}trusted-ca-file"))
                    .arg(&ca);
            }
            command.arg("--peer-client-cert-auth");
        }
        let child = command
            .args(["--name", &name])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen-client", &client])
            .args(["--listen-peer", &peer])
            .args(["--initial-cluster", &initial])
            .arg("--stop-with-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            // The nodes take their settings from these flags only, not from RAFTKV_* variables.
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| !k.starts_with("RAFTKV_")))
            .spawn()
            .with_context(|| format!("cannot start node {name}"))?;
        children.push((name, child));
    }
    let endpoints: Vec<String> = (0..args.nodes)
        .map(|i| format!("{scheme}://{}", node(i).1))
        .collect();
    let ca = args.tls.then(|| tls_dir.join("ca.pem"));
    let ready = tokio::select! {
        ready = wait_for_leader(&endpoints, ca.as_deref(), &mut children) => Some(ready),
        _ = interrupt.recv() => None,
        _ = term.recv() => None,
    };
    let Some(ready) = ready else {
        println!("stopping...");
        stop_all(&mut children).await;
        println!("stopped");
        return Ok(());
    };
    match ready {
        Ok(leader) => {
            println!("raftkv dev: {} nodes running, leader {leader}", args.nodes);
            for i in 0..args.nodes {
                let (name, client, peer) = node(i);
                println!(
                    "  {name}  client {scheme}://{client}  peer {scheme}://{peer}  data {}  log {}",
                    args.data_dir.join(&name).display(),
                    args.data_dir.join(format!("{name}.log")).display()
                );
            }
            let last = endpoints.last().cloned().unwrap_or_default();
            println!();
            println!("Try:");
            match &ca {
                None => {
                    println!("  curl -X PUT {}/v1/kv/hello -d world", endpoints[0]);
                    println!("  curl {last}/v1/kv/hello?raw");
                    println!("  cargo run --release -- status --endpoints {last}");
                    println!(
                        "  ETCDCTL_API=3 etcdctl --endpoints={} get hello",
                        last.trim_start_matches("http://")
                    );
                }
                Some(ca) => {
                    let (ca, dir) = (ca.display(), tls_dir.display());
                    println!(
                        "  curl --cacert {ca} -X PUT {}/v1/kv/hello -d world",
                        endpoints[0]
                    );
                    println!("  curl --cacert {ca} {last}/v1/kv/hello?raw");
                    println!(
                        "  cargo run --release -- status --endpoints {last} --cacert {ca} \\\n      \
                         --cert {dir}/client.pem --key {dir}/client-key.pem"
                    );
                    println!("  ETCDCTL_API=3 etcdctl --endpoints={last} --cacert {ca} get hello");
                }
            }
            println!();
            println!("Ctrl-C stops the cluster.");
        }
        Err(e) => {
            stop_all(&mut children).await;
            return Err(e.context(format!(
                "the cluster did not come up; see the logs in {}",
                args.data_dir.display()
            )));
        }
    }
    let died = tokio::select! {
        _ = interrupt.recv() => None,
        _ = term.recv() => None,
        (name, status) = first_exit(&mut children) => Some((name, status)),
    };
    println!("stopping...");
    stop_all(&mut children).await;
    println!("stopped");
    match died {
        Some((name, status)) => bail!(
            "node {name} exited ({status}); its log says why: {}",
            args.data_dir.join(format!("{name}.log")).display()
        ),
        None => Ok(()),
    }
}

/// Waits until some node reports a leader; fails early if a node exits.
async fn wait_for_leader(
    endpoints: &[String],
    ca: Option<&std::path::Path>,
    children: &mut [(String, Child)],
) -> Result<String> {
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(2));
    if let Some(ca) = ca {
        let (tls, _) = raftkv_server::tls::client_side(ca, None)?;
        client = client.use_preconfigured_tls(tls);
    }
    let client = client.build()?;
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        for (name, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("node {name} exited at start ({status})");
            }
        }
        for endpoint in endpoints {
            let Ok(response) = client.get(format!("{endpoint}/v1/status")).send().await else {
                continue;
            };
            let Ok(status) = response.json::<serde_json::Value>().await else {
                continue;
            };
            // Ready once the leader is known and every member has published its addresses.
            let published = status["members"].as_array().is_some_and(|members| {
                members.len() == endpoints.len()
                    && members.iter().all(|m| m["client_url"].as_str() != Some(""))
            });
            if let Some(leader) = status["leader_name"].as_str().filter(|_| published) {
                return Ok(leader.to_string());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no leader within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn first_exit(children: &mut [(String, Child)]) -> (String, String) {
    loop {
        for (name, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return (name.clone(), status.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends SIGTERM to every node and waits for them (SIGKILL after a grace period).
async fn stop_all(children: &mut [(String, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for (name, child) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("node {name} did not stop in time; killing it");
                let _ = child.kill().await;
            }
        }
    }
}
