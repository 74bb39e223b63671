//! Backup and disaster recovery on real processes: `raftkv snapshot save` from a live 3-member
//! cluster under writes, `snapshot status`, `snapshot restore` into a fresh 3-member cluster
//! that serves the same keys at the same revisions, and a damaged backup refused.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// `raftkv ARGS` that succeeds, with its stdout as JSON.
fn raftkv_json(args: &[&str]) -> Value {
    let (ok, out, err) = raftkv(args);
    assert!(ok, "raftkv {args:?}: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `GET /v1/kv/{key}`: the value and ModifyIndex, if the key exists.
async fn read(url: &str, key: &str) -> Option<(String, i64)> {
    let response = http()
        .get(format!("{url}/v1/kv/{key}?consistent"))
        .send()
        .await
        .ok()?;
    if response.status().as_u16() == 404 {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    let value = base64_decode(body[0]["Value"].as_str()?);
    Some((value, body[0]["ModifyIndex"].as_i64()?))
}

fn base64_decode(text: &str) -> String {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_of_a_live_cluster_restores_into_a_new_cluster_with_the_same_keys_and_revisions() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, urls) = started_cluster(root.path(), &["a", "b", "c"]);
    let leader = wait_for_leader(&urls).await;
    for i in 0..100 {
        put_ok(&urls[leader], &format!("key-{i}"), &format!("value-{i}")).await;
    }
    // Writes go on while the backup is taken.
    let writer_url = urls[leader].clone();
    let writer = tokio::spawn(async move {
        for i in 0..200 {
            put(&writer_url, &format!("during-{i}"), "x").await;
        }
    });
    let file = root.path().join("backup.db");
    let follower = urls[(leader + 1) % 3].clone();
    let saved = raftkv_json(&[
        "snapshot",
        "save",
        path(&file),
        "--endpoints",
        &follower,
        "--json",
    ]);
    writer.await.unwrap();
    assert!(saved["index"].as_u64().unwrap() > 100, "{saved}");
    let status = raftkv_json(&["snapshot", "status", path(&file), "--json"]);
    let keys = status["keys"].as_u64().unwrap();
    let revision = status["revision"].as_i64().unwrap();
    assert!((100..=300).contains(&keys), "{status}");
    assert!(revision > 100, "{status}");
    assert_eq!(status["index"], saved["index"], "{status}");

    // A new cluster of three, each member's data dir built from the backup.
    let mut fresh: Vec<Node> = ["x", "y", "z"]
        .iter()
        .map(|name| Node::new(root.path(), name))
        .collect();
    let initial = initial_cluster(&fresh);
    for node in &fresh {
        let restored = raftkv_json(&[
            "snapshot",
            "restore",
            path(&file),
            "--name",
            &node.name,
            "--initial-cluster",
            &initial,
            "--data-dir",
            path(&node.data_dir),
            "--json",
        ]);
        assert_eq!(restored["revision"], revision, "{restored}");
    }
    let again = raftkv(&[
        "snapshot",
        "restore",
        path(&file),
        "--name",
        "x",
        "--initial-cluster",
        &initial,
        "--data-dir",
        path(&fresh[0].data_dir),
    ]);
    assert!(!again.0 && again.2.contains("is not empty"), "{again:?}");
    for node in fresh.iter_mut() {
        node.start(&[]);
    }
    let fresh_urls: Vec<String> = fresh.iter().map(Node::url).collect();
    let fresh_leader = wait_for_leader(&fresh_urls).await;
    // Every key the backup holds, with its value and revision; nothing of the old membership.
    let mut found = 0;
    for i in 0..100 {
        let key = format!("key-{i}");
        let old = read(&urls[leader], &key).await.unwrap();
        assert_eq!(read(&fresh_urls[fresh_leader], &key).await, Some(old));
        found += 1;
    }
    for i in 0..200 {
        let key = format!("during-{i}");
        if let Some(new) = read(&fresh_urls[fresh_leader], &key).await {
            assert!(new.1 <= revision, "{key} after the backup's revision");
            assert_eq!(read(&urls[leader], &key).await, Some(new), "{key}");
            found += 1;
        }
    }
    assert_eq!(found, keys);
    let members = status_of(&fresh_urls[fresh_leader]).await;
    let names: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["x", "y", "z"]);
    // The new cluster goes on from the backup's revision.
    put_ok(&fresh_urls[fresh_leader], "after-restore", "1").await;
    let written = modify_index(&fresh_urls[fresh_leader], "after-restore").await;
    assert_eq!(written, revision + 1);

    // A damaged backup is refused, and nothing is written.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let damaged = root.path().join("damaged.db");
    std::fs::write(&damaged, bytes).unwrap();
    let (ok, _, err) = raftkv(&["snapshot", "status", path(&damaged)]);
    assert!(!ok && err.contains("checksum mismatch"), "{err}");
    let target = root.path().join("never");
    let (ok, _, err) = raftkv(&[
        "snapshot",
        "restore",
        path(&damaged),
        "--name",
        "x",
        "--initial-cluster",
        &initial,
        "--data-dir",
        path(&target),
    ]);
    assert!(!ok && err.contains("checksum mismatch"), "{err}");
    assert!(!target.exists());
}

async fn status_of(url: &str) -> Value {
    status(url).await.unwrap()
}
