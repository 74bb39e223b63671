//! `raftkv`'s client commands speaking etcd's gRPC API (`--etcd`): the same script against a real
//! etcd 3.5 and against a raftkv cluster prints the same, revisions included; and `raftkv watch`
//! over raftkv's HTTP API prints what it prints over etcd's.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::etcd::{EtcdServer, Running, etcd_cluster, lines_of};
use common::eventually;

/// `raftkv <args> --endpoints <endpoint> [--etcd]`: (success, stdout, stderr's last line).
fn raftkv(endpoint: &str, etcd: bool, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_raftkv"));
    command.args(args).args(["--endpoints", endpoint]);
    if etcd {
        command.arg("--etcd");
    }
    let output = command.output().expect("run raftkv");
    let err = String::from_utf8_lossy(&output.stderr);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        err.lines().last().unwrap_or_default().to_string(),
    )
}

/// `raftkv watch <args>` running, its output going to `out`.
fn spawn_watch(endpoint: &str, etcd: bool, args: &[&str], out: &std::path::Path) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_raftkv"));
    command
        .arg("watch")
        .args(args)
        .args(["--endpoints", endpoint]);
    if etcd {
        command.arg("--etcd");
    }
    let stdout = std::fs::File::create(out).unwrap();
    Running(
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

const WATCHED: [&str; 4] = [
    "PUT b/1 = x (revision 6)",
    "PUT b/2 = y (revision 7)",
    "DELETE b/1 (revision 8)",
    "DELETE b/2 (revision 8)",
];

/// The script: each step's output, and the watch's lines.
async fn script(
    endpoint: &str,
    etcd: bool,
    dir: &std::path::Path,
) -> (Vec<(bool, String, String)>, Vec<String>) {
    let mut outputs = Vec::new();
    for args in [
        &["put", "a", "1"][..],
        &["put", "a", "2"],
        &["get", "a"],
        &["get", "a", "--consistency", "stale"],
        &["put", "a", "3", "--cas", "2"],
        &["put", "a", "3", "--cas", "3"],
        &["put", "new", "v", "--cas", "0", "--json"],
        &["put", "b/1", "x"],
        &["put", "b/2", "y"],
    ] {
        outputs.push(raftkv(endpoint, etcd, args));
    }
    let out = dir.join(format!("watch-{etcd}"));
    let watch = spawn_watch(endpoint, etcd, &["b/", "--prefix", "--rev", "1"], &out);
    for args in [
        &["del", "b/", "--prefix"][..],
        &["get", "missing"],
        &["del", "a", "--json"],
    ] {
        outputs.push(raftkv(endpoint, etcd, args));
    }
    let lines = eventually("the watch to print four events", || async {
        let lines = lines_of(&out);
        (lines.len() >= WATCHED.len()).then_some(lines)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(watch);
    assert_eq!(
        lines,
        WATCHED,
        "{}",
        if etcd { "over etcd's API" } else { "over HTTP" }
    );
    (outputs, lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_speaks_etcd_to_etcd_and_to_raftkv_alike() {
    let root = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(root.path());
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let follower = &endpoints[(leader + 1) % 3];

    let (from_etcd, _) = script(&etcd.endpoint, true, root.path()).await;
    let (from_raftkv, _) = script(follower, true, root.path()).await;
    let ok = |out: &str| (true, out.to_string(), String::new());
    assert_eq!(
        from_raftkv,
        [
            ok("OK (revision 2)\n"),
            ok("OK (revision 3)\n"),
            ok("2\n"),
            ok("2\n"),
            (
                false,
                String::new(),
                "error: not written: `a` is at mod_revision 3".into()
            ),
            ok("OK (revision 4)\n"),
            ok("{\"revision\":5,\"succeeded\":true}\n"),
            ok("OK (revision 6)\n"),
            ok("OK (revision 7)\n"),
            ok("deleted 2 keys (revision 8)\n"),
            (
                false,
                String::new(),
                "error: key `missing` not found".into()
            ),
            ok("{\"deleted\":1,\"revision\":9}\n"),
        ]
    );
    assert_eq!(from_raftkv, from_etcd, "raftkv and etcd print the same");

    let refused = raftkv(follower, true, &["status"]);
    assert!(
        !refused.0 && refused.2.contains("drop --etcd"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn raftkv_watch_prints_the_same_over_http_and_over_etcds_api() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let follower = format!("http://{}", endpoints[(leader + 1) % 3]);
    let (_, over_http) = script(&follower, false, root.path()).await;
    assert_eq!(over_http, WATCHED);
}

/// `raftkv bench --protocol etcd`: the same load against a real etcd and against raftkv, each
/// request answered, one JSON summary line at the end; `raftkv bench floor` measures the floor.
#[tokio::test(flavor = "multi_thread")]
async fn raftkv_bench_loads_etcd_and_raftkv_through_etcds_api() {
    const REQUESTS: u64 = 300;
    let root = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(root.path());
    let (_nodes, endpoints, _) = etcd_cluster(root.path()).await;
    let bench = |endpoints: &str, extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .args(["bench", "--protocol", "etcd", "--op", "mixed"])
            .args(["--clients", "8", "--connections", "2", "--keys", "50"])
            .args([
                "--requests",
                &REQUESTS.to_string(),
                "--endpoints",
                endpoints,
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        summary
    };
    for (target, summary) in [
        ("etcd", bench(&etcd.endpoint, &[])),
        ("raftkv", bench(&endpoints.join(","), &[])),
        (
            "raftkv, serializable, open loop",
            bench(
                &endpoints.join(","),
                &["--consistency", "serializable", "--rate", "2000"],
            ),
        ),
    ] {
        assert_eq!(summary["protocol"], "etcd", "{target}: {summary}");
        assert_eq!(summary["requests"], REQUESTS, "{target}: {summary}");
        assert_eq!(summary["errors"], 0, "{target}: {summary}");
        assert!(
            summary["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
            "{target}: {summary}"
        );
    }

    // Watchers over etcd's API: each sees every put once, in order, and times its delivery.
    let output = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args([
            "bench",
            "--protocol",
            "etcd",
            "--op",
            "put",
            "--watchers",
            "3",
        ])
        .args([
            "--clients",
            "4",
            "--requests",
            "200",
            "--endpoints",
            &endpoints[0],
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let watch = &summary["watch"];
    assert_eq!(watch["watchers"], 3, "{summary}");
    assert_eq!(watch["received_min"], 200, "{summary}");
    assert_eq!(watch["received_max"], 200, "{summary}");
    assert_eq!(watch["disordered"], 0, "{summary}");
    assert!(
        watch["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{summary}"
    );

    let floor = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["bench", "floor", "--samples", "5", "--dir"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(floor.status.success(), "{floor:?}");
    let floor: serde_json::Value = serde_json::from_slice(&floor.stdout).unwrap();
    assert!(floor["fdatasync_p50_ms"].as_f64().unwrap() > 0.0, "{floor}");
    assert!(floor["loopback_rtt_p50_ms"].as_f64().is_some(), "{floor}");
}
