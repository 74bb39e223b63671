//! The storage quota and `NOSPACE` on a real 3-process cluster, through `etcdctl` (as etcd
//! words it) and `raftkv alarm`: writes past the quota raise the alarm and are refused
//! everywhere, deletes and compaction still work, and disarming once there is room restores
//! writes. A member whose state hash differs from the others' is caught by the corruption
//! check, which raises CORRUPT and stops writes.

mod common;

use common::etcd::*;
use common::*;
use serde_json::Value;

/// The quota the cluster runs with: room for about 20 of the 1,000-byte values below.
const QUOTA_BYTES: u64 = 20_000;

/// `raftkv alarm ARGS --endpoints URL --json`.
fn raftkv_alarm(url: &str, args: &[&str]) -> Value {
    let (ok, out, err) = raftkv(&[&["alarm"], args, &["--endpoints", url, "--json"]].concat());
    assert!(ok, "{out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_store_raises_nospace_refuses_writes_but_not_deletes_until_disarmed() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, urls) = started_cluster_with(root.path(), &["q1", "q2", "q3"], |_| {
        vec!["--quota-bytes".to_string(), QUOTA_BYTES.to_string()]
    });
    let leader = wait_for_leader(&urls).await;
    wait_for_client_urls(&urls).await;
    let follower = nodes[(leader + 1) % 3].client.clone();
    let value = "x".repeat(1000);

    // Write until the quota watch raises NOSPACE and a write is refused.
    let refused = eventually("a write to be refused with NOSPACE", || async {
        for i in 0..5 {
            let key = format!("fill-{}", rand_suffix(i));
            let (ok, _, err) = etcdctl_with(&follower, &["put", &key, &value], "");
            if !ok {
                return Some(err);
            }
        }
        None
    })
    .await;
    assert!(
        refused.contains("etcdserver: mvcc: database space exceeded"),
        "{refused}"
    );
    let listed = etcdctl(&follower, &["alarm", "list"]);
    assert!(listed.contains("alarm:NOSPACE"), "{listed}");
    let alarms = raftkv_alarm(&urls[(leader + 2) % 3], &["list"]);
    assert_eq!(alarms["alarms"][0]["alarm"], "NOSPACE", "{alarms}");
    // Refused on every member, over HTTP too (507), and a transaction that puts as well.
    let http = put(&urls[(leader + 2) % 3], "more", "y").await;
    assert_eq!(http.0, 507, "{http:?}");
    assert_eq!(http.1["code"], "no_space", "{http:?}");
    let script = "value(\"fill-0\") = \"x\"\n\nput txn-key v\n\nput txn-key w\n\n";
    let (ok, _, err) = etcdctl_with(&follower, &["txn"], script);
    assert!(!ok && err.contains("database space exceeded"), "{err}");

    // Deletes and compaction still work; once there is room, disarming restores writes.
    let deleted = etcdctl(&follower, &["del", "fill-", "--prefix"]);
    assert!(deleted.trim().parse::<u64>().unwrap() > 0, "{deleted}");
    let revision = etcdctl_json(&follower, &["get", "x"])["header"]["revision"]
        .as_i64()
        .unwrap();
    etcdctl(&follower, &["compact", &revision.to_string()]);
    let disarmed = etcdctl(&follower, &["alarm", "disarm"]);
    assert!(disarmed.contains("alarm:NOSPACE"), "{disarmed}");
    assert_eq!(
        raftkv_alarm(&urls[leader], &["list"])["alarms"],
        serde_json::json!([])
    );
    etcdctl(&follower, &["put", "after-disarm", "ok"]);
    assert_eq!(
        etcdctl(&follower, &["get", "after-disarm", "--print-value-only"]).trim(),
        "ok"
    );
}

/// A key suffix unique within the test run.
fn rand_suffix(i: u32) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{}-{i}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_whose_state_differs_is_caught_by_the_corruption_check() {
    let root = tempfile::tempdir().unwrap();
    let diverge = |node: &Node| node.data_dir.with_extension("diverge");
    let (nodes, urls) = started_cluster_with(root.path(), &["c1", "c2", "c3"], |node| {
        vec![
            "--corrupt-check-interval-ms".to_string(),
            "200".to_string(),
            "--debug-diverge-file".to_string(),
            diverge(node).display().to_string(),
        ]
    });
    let leader = wait_for_leader(&urls).await;
    wait_for_client_urls(&urls).await;
    put_ok(&urls[leader], "before", "v").await;
    // Healthy members hash alike: several rounds raise nothing.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        raftkv_alarm(&urls[leader], &["list"])["alarms"],
        serde_json::json!([])
    );

    // One follower's state now hashes differently: the check names it, and writes stop.
    let odd = (leader + 1) % 3;
    let odd_id = status(&urls[odd]).await.unwrap()["id"].as_u64().unwrap();
    std::fs::write(diverge(&nodes[odd]), b"").unwrap();
    let alarms = eventually("a CORRUPT alarm", || async {
        let listed = raftkv_alarm(&urls[leader], &["list"]);
        (listed["alarms"] != serde_json::json!([])).then_some(listed)
    })
    .await;
    assert_eq!(
        alarms["alarms"],
        serde_json::json!([{ "member": odd_id, "alarm": "CORRUPT" }])
    );
    let follower = nodes[(leader + 2) % 3].client.clone();
    let listed = etcdctl(&follower, &["alarm", "list"]);
    assert!(listed.contains("alarm:CORRUPT"), "{listed}");
    let (ok, _, err) = etcdctl_with(&follower, &["put", "during", "x"], "");
    assert!(!ok && err.contains("etcdserver: corrupt cluster"), "{err}");
    let http = put(&urls[leader], "during", "y").await;
    assert_eq!(
        (http.0, &http.1["code"]),
        (500, &Value::from("corrupt")),
        "{http:?}"
    );

    // Once the member is healthy again (here: the fault removed) and the alarm disarmed,
    // writes work.
    std::fs::remove_file(diverge(&nodes[odd])).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    etcdctl(&follower, &["alarm", "disarm"]);
    etcdctl(&follower, &["put", "after", "ok"]);
    assert_eq!(
        etcdctl(&follower, &["get", "after", "--print-value-only"]).trim(),
        "ok"
    );
}
