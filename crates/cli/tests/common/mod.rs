//! Real `raftkv serve` processes on loopback for the integration tests: free ports, temporary
//! data dirs, short ticks, and a client that speaks the HTTP API.

#![allow(dead_code)]

pub mod etcd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process killed when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Tick length the test clusters run with.
pub const TICK_MS: u64 = 50;
/// Election timeout in ticks.
pub const ELECTION_TICKS: u64 = 10;
/// One election timeout.
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(TICK_MS * ELECTION_TICKS);
/// Applied entries between snapshots: small, so tests exercise compaction and snapshot catch-up.
pub const SNAPSHOT_ENTRIES: u64 = 20;
/// How long a test waits for anything before failing (generous: the process suites run dozens
/// of debug-built nodes at once on small machines).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Ports [`free_port`] hands out: just below Linux's ephemeral range (32768 and up), so no
/// outgoing connection of a running node can take one between the test choosing it and the node
/// binding it; and apart from [`free_port_run`]'s.
const FREE_PORTS: std::ops::Range<u16> = 30_000..32_700;

/// A free loopback port, not handed out before in this process (checked free by binding it).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(FREE_PORTS.end - FREE_PORTS.start);
    let offset = std::process::id() % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(
            n < span,
            "free_port: every port of {FREE_PORTS:?} was handed out"
        );
        let port = FREE_PORTS.start + ((offset + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The first of `n` consecutive free loopback ports, below the ephemeral range and below
/// [`FREE_PORTS`] (so they cannot collide with ports handed to other tests running at the same
/// time).
pub fn free_port_run(n: u16) -> u16 {
    let mut seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    loop {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = 15_000 + ((seed >> 33) % 14_000) as u16;
        let held: Vec<_> = (0..n)
            .map_while(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return base;
        }
    }
}

/// A stream of JSON lines (a watch), read a line at a time.
pub struct JsonLines {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl JsonLines {
    pub fn new(response: reqwest::Response) -> JsonLines {
        JsonLines {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next line; panics if the stream stalls for `PATIENCE` or ends.
    pub async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line = serde_json::from_slice(&self.buffer[..end]).expect("a JSON line");
                self.buffer.drain(..=end);
                return line;
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("the stream stalled")
                .expect("the stream reads")
                .expect("the stream stays open");
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

/// One node process.
pub struct Node {
    pub name: String,
    pub client: String,
    pub peer: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// A node's addresses and data dir under `root`, not started.
    pub fn new(root: &Path, name: &str) -> Node {
        Node {
            name: name.to_string(),
            client: format!("127.0.0.1:{}", free_port()),
            peer: format!("127.0.0.1:{}", free_port()),
            data_dir: root.join(name),
            log: root.join(format!("{name}.log")),
            child: None,
        }
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.client)
    }

    /// Starts `raftkv serve` with these extra flags.
    pub fn start(&mut self, extra: &[String]) {
        self.spawn(Command::new(env!("CARGO_BIN_EXE_raftkv")), extra);
    }

    /// Starts `raftkv serve` with these extra flags, allowed at most `limit` open files.
    pub fn start_with_open_files(&mut self, limit: u32, extra: &[String]) {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_raftkv"));
        self.spawn(shell, extra);
    }

    fn spawn(&mut self, mut command: Command, extra: &[String]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = command
            .arg("serve")
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client", &self.client])
            .args(["--listen-peer", &self.peer])
            .args(["--tick-ms", &TICK_MS.to_string()])
            .args(["--election-ticks", &ELECTION_TICKS.to_string()])
            .args(["--snapshot-entries", &SNAPSHOT_ENTRIES.to_string()])
            .args(extra)
            .env("RAFTKV_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start raftkv serve");
        self.child = Some(child);
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit by itself; its exit status, or `None` after `within`.
    pub fn exited_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The node's log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `name=http://peer,...` for `--initial-cluster`.
pub fn initial_cluster(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("{}=http://{}", n.name, n.peer))
        .collect::<Vec<_>>()
        .join(",")
}

/// Nodes called `names` under `root`, started as one static cluster; with their client URLs.
pub fn started_cluster(root: &Path, names: &[&str]) -> (Vec<Node>, Vec<String>) {
    started_cluster_with(root, names, |_| Vec::new())
}

/// As [`started_cluster`], each node also given the flags `extra` makes for it.
pub fn started_cluster_with(
    root: &Path,
    names: &[&str],
    extra: impl Fn(&Node) -> Vec<String>,
) -> (Vec<Node>, Vec<String>) {
    let mut nodes: Vec<Node> = names.iter().map(|n| Node::new(root, n)).collect();
    let spec = initial_cluster(&nodes);
    for node in nodes.iter_mut() {
        let mut flags = vec!["--initial-cluster".to_string(), spec.clone()];
        flags.extend(extra(node));
        node.start(&flags);
    }
    let urls = nodes.iter().map(Node::url).collect();
    (nodes, urls)
}

/// The file whose existence stalls a node's WAL syncs (`--debug-stall-file`).
pub fn stall_file(node: &Node) -> PathBuf {
    node.data_dir.with_extension("stall")
}

/// Flags that let a test stall a node's disk through [`stall_file`].
pub fn stall_flags(node: &Node) -> Vec<String> {
    vec![
        "--debug-stall-file".to_string(),
        stall_file(node).display().to_string(),
    ]
}

/// `raftkv dev` with 3 nodes on free ports in `dir`, its stdout piped; the first node's client
/// port.
pub fn spawn_dev(dir: &Path, stderr: Stdio) -> (KillOnDrop, u16) {
    let client_port = free_port_run(6);
    let peer_port = client_port + 3;
    let dev = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["dev", "--nodes", "3"])
        .args(["--client-port", &client_port.to_string()])
        .args(["--peer-port", &peer_port.to_string()])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start raftkv dev");
    (KillOnDrop(dev), client_port)
}

/// `raftkv ARGS` (the endpoints variable cleared): success, stdout, stderr.
pub fn raftkv(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(args)
        .env_remove("RAFTKV_ENDPOINTS")
        .output()
        .expect("run raftkv");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// HTTP client.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// `GET /v1/status`, if the node answers.
pub async fn status(url: &str) -> Option<Value> {
    let response = http().get(format!("{url}/v1/status")).send().await.ok()?;
    response.json().await.ok()
}

/// Waits until a node among `urls` says it is the leader; returns its index in `urls`.
pub async fn wait_for_leader(urls: &[String]) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        for (i, url) in urls.iter().enumerate() {
            if let Some(s) = status(url).await {
                if s["role"] == "leader" {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader among {urls:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Retries `f` until it returns `Some`, failing the test after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `PUT /v1/kv/{key}`; returns the status and JSON body.
pub async fn put(url: &str, key: &str, value: &str) -> (u16, Value) {
    match http()
        .put(format!("{url}/v1/kv/{key}"))
        .body(value.to_string())
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// The `ModifyIndex` of `key` (which must exist), read through `url`.
pub async fn modify_index(url: &str, key: &str) -> i64 {
    let entries: Value = http()
        .get(format!("{url}/v1/kv/{key}?consistent"))
        .send()
        .await
        .expect("read the key")
        .json()
        .await
        .expect("Consul's JSON");
    entries[0]["ModifyIndex"]
        .as_i64()
        .unwrap_or_else(|| panic!("no ModifyIndex for {key}: {entries}"))
}

/// Puts until acknowledged (retrying 503s while a leader is elected).
pub async fn put_ok(url: &str, key: &str, value: &str) -> Value {
    eventually(&format!("put {key} via {url}"), || async {
        let (status, body) = put(url, key, value).await;
        (status == 200).then_some(body)
    })
    .await
}

/// `GET /v1/kv/{key}?raw&consistency=...`: the value, `None` on 404, `Err` otherwise.
pub async fn get_raw(url: &str, key: &str, consistency: &str) -> Result<Option<String>, String> {
    let response = http()
        .get(format!("{url}/v1/kv/{key}?raw&consistency={consistency}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    match response.status().as_u16() {
        200 => Ok(Some(response.text().await.map_err(|e| e.to_string())?)),
        404 => Ok(None),
        other => Err(format!(
            "{other}: {}",
            response.text().await.unwrap_or_default()
        )),
    }
}

/// Like [`get_raw`], retrying while the node answers 503 (no leader known yet, leader changing).
pub async fn get_settled(url: &str, key: &str, consistency: &str) -> Option<String> {
    eventually(&format!("get {key} from {url}"), || async {
        match get_raw(url, key, consistency).await {
            Err(e) if e.starts_with("503") => None,
            Err(e) => panic!("get {key} from {url}: {e}"),
            Ok(found) => Some(found),
        }
    })
    .await
}

/// Waits until every node of `urls` knows every member's client URL (members publish theirs
/// after they start; a follower forwards to the leader's).
pub async fn wait_for_client_urls(urls: &[String]) {
    let deadline = Instant::now() + PATIENCE;
    for url in urls {
        loop {
            let seen = status(url).await;
            let published = seen
                .as_ref()
                .and_then(|s| s["members"].as_array())
                .is_some_and(|members| {
                    members
                        .iter()
                        .all(|m| m["client_url"].as_str().is_some_and(|u| !u.is_empty()))
                });
            if published {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the members' client URLs were not all published; {url} says {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
