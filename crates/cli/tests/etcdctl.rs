//! etcd compatibility, driven by etcd's own `etcdctl` (3.4, Debian's `etcd-client`, installed by
//! `scripts/test` when missing) against a real 3-process cluster: outputs are checked field by
//! field, header revisions included. Requests go to followers as well as the leader (writes are
//! forwarded).

mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::etcd::*;
use common::*;
use serde_json::Value;

fn spawn_etcdctl(endpoints: &str, args: &[&str], out: &std::path::Path) -> Running {
    Etcdctl::from_env().spawn(endpoints, args, out)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_put_get_del_field_by_field_through_any_member() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let follower = &endpoints[(leader + 1) % 3];
    let leader_ep = &endpoints[leader];

    assert_eq!(etcdctl(follower, &["put", "k1", "v1"]).trim(), "OK");
    let first = etcdctl_json(follower, &["get", "k1"]);
    let kv = &first["kvs"][0];
    assert_eq!(kv["key"], b64("k1"));
    assert_eq!(kv["value"], b64("v1"));
    assert_eq!(kv["version"], 1);
    let rev1 = kv["mod_revision"].as_i64().unwrap();
    assert_eq!(kv["create_revision"], rev1);
    assert_eq!(first["header"]["revision"], rev1, "{first}");
    assert_eq!(first["count"], 1);
    let status = status(&format!("http://{follower}")).await.unwrap();
    assert_eq!(
        first["header"]["member_id"].as_u64(),
        status["id"].as_u64(),
        "the header names the member asked"
    );
    assert_eq!(
        first["header"]["cluster_id"].as_u64(),
        u64::from_str_radix(status["cluster_id"].as_str().unwrap(), 16).ok()
    );

    // A second put: version 2, same create revision; the old value is readable at its revision.
    etcdctl(leader_ep, &["put", "k1", "v2"]);
    let second = etcdctl_json(leader_ep, &["get", "k1"]);
    assert_eq!(second["kvs"][0]["version"], 2);
    assert_eq!(second["kvs"][0]["create_revision"], rev1);
    let rev2 = second["kvs"][0]["mod_revision"].as_i64().unwrap();
    assert_eq!(rev2, rev1 + 1);
    assert_eq!(
        etcdctl(follower, &["get", "k1", &format!("--rev={rev1}")]),
        "k1\nv1\n"
    );
    assert_eq!(
        etcdctl(follower, &["put", "k1", "v3", "--prev-kv"]),
        "OK\nk1\nv2\n"
    );

    // Prefix, keys only, limit, sorting.
    etcdctl(follower, &["put", "k2", "b"]);
    etcdctl(follower, &["put", "k3", "a"]);
    assert_eq!(
        etcdctl(follower, &["get", "k", "--prefix", "--keys-only"]),
        "k1\n\nk2\n\nk3\n\n"
    );
    let limited = etcdctl_json(follower, &["get", "k", "--prefix", "--limit=2"]);
    assert_eq!(limited["kvs"].as_array().unwrap().len(), 2);
    assert_eq!(
        (limited["more"].clone(), limited["count"].clone()),
        (Value::Bool(true), 3.into())
    );
    assert_eq!(
        etcdctl(
            follower,
            &[
                "get",
                "k",
                "--prefix",
                "--sort-by=VALUE",
                "--print-value-only"
            ]
        ),
        "a\nb\nv3\n"
    );
    assert_eq!(
        etcdctl(
            follower,
            &[
                "get",
                "k",
                "--prefix",
                "--sort-by=MODIFY",
                "--order=DESCEND",
                "--keys-only"
            ]
        ),
        "k3\n\nk2\n\nk1\n\n"
    );
    let serializable = etcdctl_json(follower, &["get", "k2", "--consistency=s"]);
    assert_eq!(serializable["kvs"][0]["value"], b64("b"));

    // Deletes: one key with its previous value, then a prefix.
    assert_eq!(
        etcdctl(follower, &["del", "k1", "--prev-kv"]),
        "1\nk1\nv3\n"
    );
    assert_eq!(etcdctl(follower, &["del", "k", "--prefix"]).trim(), "2");
    let gone = etcdctl_json(leader_ep, &["get", "k", "--prefix"]);
    assert!(gone.get("kvs").is_none() || gone["kvs"].as_array().unwrap().is_empty());
    assert_eq!(gone["count"].as_i64().unwrap_or(0), 0);

    // Errors clients match on.
    let (ok, _, err) = etcdctl_with(follower, &["put", "", "x"], "");
    assert!(
        !ok && err.contains("etcdserver: key is not provided"),
        "{err}"
    );
    etcdctl(leader_ep, &["compaction", &rev2.to_string()]);
    let (ok, _, err) = etcdctl_with(follower, &["get", "k1", &format!("--rev={rev1}")], "");
    assert!(
        !ok && err.contains("etcdserver: mvcc: required revision has been compacted"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_txn_reads_its_input_and_applies_one_branch() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let follower = &endpoints[(leader + 1) % 3];
    etcdctl(follower, &["put", "flag", "on"]);
    let script = "value(\"flag\") = \"on\"\n\nput result yes\nget flag\n\nput result no\n\n";
    let (ok, out, err) = etcdctl_with(follower, &["txn", "-w", "json"], script);
    assert!(ok, "{out}{err}");
    let txn: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(txn["succeeded"], true, "{txn}");
    let responses = txn["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 2);
    let put_revision = txn["header"]["revision"].as_i64().unwrap();
    // etcdctl 3.4 names the oneof variant `ResponseRange`, 3.5 `response_range`.
    let range = &responses[1]["Response"];
    let range = if range["ResponseRange"].is_null() {
        &range["response_range"]
    } else {
        &range["ResponseRange"]
    };
    assert_eq!(range["kvs"][0]["value"], b64("on"), "{txn}");
    assert_eq!(
        etcdctl(follower, &["get", "result", "--print-value-only"]),
        "yes\n"
    );
    let result = etcdctl_json(follower, &["get", "result"]);
    assert_eq!(result["kvs"][0]["mod_revision"], put_revision);
    // The other branch when the compare fails.
    let script = "version(\"flag\") > \"5\"\n\nput result yes\n\nput result no\n\n";
    let (ok, out, _) = etcdctl_with(follower, &["txn"], script);
    assert!(ok);
    assert!(out.starts_with("FAILURE"), "{out}");
    assert_eq!(
        etcdctl(follower, &["get", "result", "--print-value-only"]),
        "no\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_watch_streams_history_and_live_changes_and_reports_compaction() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let follower = endpoints[(leader + 1) % 3].clone();
    etcdctl(&follower, &["put", "w/a", "1"]);
    let first: i64 = etcdctl_json(&follower, &["get", "w/a"])["header"]["revision"]
        .as_i64()
        .unwrap();
    let watch_out = root.path().join("watch");
    let watch = spawn_etcdctl(
        &follower,
        &[
            "watch",
            "w/",
            "--prefix",
            "--prev-kv",
            &format!("--rev={first}"),
        ],
        &watch_out,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    etcdctl(&endpoints[leader], &["put", "w/a", "2"]);
    etcdctl(&follower, &["put", "other", "x"]);
    etcdctl(&follower, &["del", "w/a"]);
    let lines = eventually("the watch to print three events", || async {
        let lines = lines_of(&watch_out);
        (lines.len() >= 13).then_some(lines)
    })
    .await;
    drop(watch);
    assert_eq!(
        lines,
        [
            "PUT", "w/a", "1", // from history
            "PUT", "w/a", "1", "w/a", "2", // with its previous value
            "DELETE", "w/a", "2", "w/a", "",
        ],
        "{lines:?}"
    );

    // A watch below the compacted revision is cancelled with the compaction.
    let now = etcdctl_json(&follower, &["get", "w/a"])["header"]["revision"]
        .as_i64()
        .unwrap();
    etcdctl(&follower, &["compaction", &now.to_string()]);
    let (ok, out, err) = etcdctl_with(&follower, &["watch", "w/a", &format!("--rev={first}")], "");
    assert!(!ok, "{out}");
    assert!(
        err.contains("etcdserver: mvcc: required revision has been compacted")
            || out.contains("etcdserver: mvcc: required revision has been compacted"),
        "{out}{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_leases_grant_attach_keep_alive_list_and_revoke() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let follower = &endpoints[(leader + 1) % 3];
    let granted = etcdctl_json(follower, &["lease", "grant", "60"]);
    assert_eq!(granted["TTL"], 60, "{granted}");
    let id = granted["ID"].as_i64().unwrap();
    let hex = format!("{id:x}");
    etcdctl(follower, &["put", "leased", "v", &format!("--lease={hex}")]);
    let attached = etcdctl_json(follower, &["get", "leased"]);
    assert_eq!(attached["kvs"][0]["lease"], id);
    let ttl = etcdctl_json(follower, &["lease", "timetolive", &hex, "--keys"]);
    assert_eq!(ttl["granted-ttl"], 60, "{ttl}");
    assert!((1..=60).contains(&ttl["ttl"].as_i64().unwrap()), "{ttl}");
    assert_eq!(ttl["id"], id);
    assert_eq!(ttl["revision"], attached["header"]["revision"]);
    assert_eq!(ttl["keys"], serde_json::json!([b64("leased")]));
    let kept = etcdctl(follower, &["lease", "keep-alive", "--once", &hex]);
    assert!(
        kept.contains(&format!("lease {hex:0>16} keepalived with TTL(60)")),
        "{kept}"
    );
    let list = etcdctl(follower, &["lease", "list"]);
    assert!(
        list.contains("found 1 leases") && list.contains(&format!("{hex:0>16}")),
        "{list}"
    );
    assert!(
        etcdctl(follower, &["lease", "revoke", &hex]).contains("revoked"),
        "revoke answers"
    );
    let gone = etcdctl_json(follower, &["get", "leased"]);
    assert!(gone.get("kvs").is_none(), "{gone}");
    assert!(
        etcdctl(follower, &["lease", "timetolive", &hex]).contains("already expired"),
        "an unknown lease answers TTL -1"
    );
    let (ok, _, err) = etcdctl_with(follower, &["lease", "revoke", &hex], "");
    assert!(
        !ok && err.contains("etcdserver: requested lease not found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_member_list_and_endpoint_status_health_and_hashkv() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let all = endpoints.join(",");
    let list = etcdctl_json(&endpoints[0], &["member", "list"]);
    let mut members: Vec<(String, String, String)> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["peerURLs"][0].as_str().unwrap().to_string(),
                m["clientURLs"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    members.sort();
    let expected: Vec<(String, String, String)> = nodes
        .iter()
        .map(|n| (n.name.clone(), format!("http://{}", n.peer), n.url()))
        .collect();
    assert_eq!(members, expected);

    etcdctl(&endpoints[leader], &["put", "h", "1"]);
    let statuses = etcdctl_json(&all, &["endpoint", "status"]);
    let statuses = statuses.as_array().unwrap();
    assert_eq!(statuses.len(), 3);
    let leader_id = statuses[leader]["Status"]["header"]["member_id"].clone();
    for s in statuses {
        assert_eq!(s["Status"]["leader"], leader_id, "{s}");
        assert_eq!(s["Status"]["version"], "3.5.0");
        assert!(s["Status"]["raftIndex"].as_u64().unwrap() > 0);
    }
    // etcdctl 3.4 prints the health lines on stderr, 3.5 on stdout.
    let (ok, out, err) = etcdctl_with(&all, &["endpoint", "health"], "");
    let health = out + &err;
    assert!(ok, "{health}");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    let hashes = eventually("every member to hash the same state", || async {
        let hashes = etcdctl_json(&all, &["endpoint", "hashkv"]);
        let values: Vec<Value> = hashes
            .as_array()?
            .iter()
            .map(|h| h["HashKV"]["hash"].clone())
            .collect();
        values.windows(2).all(|w| w[0] == w[1]).then_some(values)
    })
    .await;
    assert_eq!(hashes.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_lock_has_one_holder_at_a_time_and_hands_over_when_the_lease_ends() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, _leader) = etcd_cluster(root.path()).await;
    let all = endpoints.join(",");
    let (first_out, second_out) = (root.path().join("first"), root.path().join("second"));
    // The first holder keeps the lock while its command runs; the second waits for it.
    let first = spawn_etcdctl(
        &all,
        &[
            "lock",
            "the-lock",
            "--",
            "sh",
            "-c",
            "echo first in; sleep 2; echo first out",
        ],
        &first_out,
    );
    eventually("the first contender to hold the lock", || async {
        lines_of(&first_out)
            .contains(&"first in".to_string())
            .then_some(())
    })
    .await;
    let second = spawn_etcdctl(
        &all,
        &["lock", "the-lock", "--", "sh", "-c", "echo second in"],
        &second_out,
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        lines_of(&second_out).is_empty(),
        "the second waits while the first holds it"
    );
    eventually("the second contender to get the lock", || async {
        lines_of(&second_out)
            .contains(&"second in".to_string())
            .then_some(())
    })
    .await;
    assert_eq!(
        lines_of(&first_out),
        ["first in", "first out"],
        "the first let go first"
    );
    drop((first, second));

    // A holder that dies without unlocking loses the lock when its session's lease ends.
    let third_out = root.path().join("third");
    let third = spawn_etcdctl(
        &all,
        &[
            "lock",
            "--ttl=2",
            "other-lock",
            "--",
            "sh",
            "-c",
            "echo third in; sleep 60",
        ],
        &third_out,
    );
    eventually("the third contender to hold the lock", || async {
        lines_of(&third_out)
            .contains(&"third in".to_string())
            .then_some(())
    })
    .await;
    let mut third = third;
    let _ = third.0.kill(); // SIGKILL: no revoke, the lease must expire
    let fourth_out = root.path().join("fourth");
    let _fourth = spawn_etcdctl(
        &all,
        &["lock", "other-lock", "--", "sh", "-c", "echo fourth in"],
        &fourth_out,
    );
    eventually(
        "the lock to pass on once the dead holder's lease expired",
        || async {
            lines_of(&fourth_out)
                .contains(&"fourth in".to_string())
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_move_leader_hands_leadership_to_the_member_named() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let all = endpoints.join(",");
    let target = (leader + 1) % 3;
    let status = etcdctl_json(&endpoints[target], &["endpoint", "status"]);
    let target_id = status[0]["Status"]["header"]["member_id"].as_u64().unwrap();
    let moved = etcdctl(&all, &["move-leader", &format!("{target_id:x}")]);
    assert!(moved.contains(&format!("to {target_id:x}")), "{moved}");
    let after = etcdctl_json(&endpoints[leader], &["endpoint", "status"]);
    assert_eq!(after[0]["Status"]["leader"].as_u64(), Some(target_id));
}

/// etcd's election recipe as the store's very first writes: one leader at a time, an observer
/// sees the current leader's proposal, and a leader that stops (SIGTERM: etcdctl resigns by
/// revoking its session's lease) hands over to the next candidate.
#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_elect_has_one_leader_at_a_time_and_hands_over_when_it_resigns() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, _leader) = etcd_cluster(root.path()).await;
    let all = endpoints.join(",");
    let (alice_out, bob_out, observer_out) = (
        root.path().join("alice"),
        root.path().join("bob"),
        root.path().join("observer"),
    );
    let alice = spawn_etcdctl(&all, &["elect", "the-election", "alice"], &alice_out);
    let alice_key = eventually("alice to be elected", || async {
        match lines_of(&alice_out).as_slice() {
            [key, proposal] if proposal == "alice" => Some(key.clone()),
            _ => None,
        }
    })
    .await;
    assert!(alice_key.starts_with("the-election/"), "{alice_key}");
    let _bob = spawn_etcdctl(&all, &["elect", "the-election", "bob"], &bob_out);
    let _observer = spawn_etcdctl(&all, &["elect", "--listen", "the-election"], &observer_out);
    eventually("the observer to see alice", || async {
        lines_of(&observer_out)
            .contains(&"alice".to_string())
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(lines_of(&bob_out).is_empty(), "bob waits while alice leads");
    let stopped = Command::new("kill")
        .args(["-TERM", &alice.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    eventually("bob to be elected once alice resigned", || async {
        match lines_of(&bob_out).as_slice() {
            [key, proposal] if proposal == "bob" => Some(key.clone()),
            _ => None,
        }
    })
    .await;
    eventually("the observer to see bob", || async {
        lines_of(&observer_out)
            .contains(&"bob".to_string())
            .then_some(())
    })
    .await;
    drop(alice);
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_snapshot_save_writes_a_checksummed_backup_of_the_members_state() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let follower = &endpoints[(leader + 1) % 3];
    etcdctl(&endpoints[leader], &["put", "snap-key", "snap-value"]);
    // A follower's applied state includes the put once a linearizable read there sees it.
    etcdctl(follower, &["get", "snap-key"]);
    let path = root.path().join("backup.db");
    let (ok, out, err) = etcdctl_with(follower, &["snapshot", "save", path.to_str().unwrap()], "");
    assert!(ok, "{out}{err}");
    assert!(
        (out.clone() + &err).contains(&format!("Snapshot saved at {}", path.display())),
        "{out}{err}"
    );
    let file = bytes::Bytes::from(std::fs::read(&path).unwrap());
    // etcd's clients accept a snapshot only as whole 512-byte pages and a SHA-256.
    assert_eq!(file.len() % 512, 32);
    let (applied, state) = raftkv_server::backup::decode(&file).unwrap();
    assert!(applied > 0);
    for needle in [&b"snap-key"[..], b"snap-value"] {
        assert!(state.windows(needle.len()).any(|w| w == needle));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_watch_sees_every_event_once_across_a_leader_kill() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    // The watch's client may stream from the leader or a follower: either way the watch must
    // go on, through its reconnection or through the new leader's commits.
    let all = [leader, survivors[0], survivors[1]]
        .map(|i| endpoints[i].clone())
        .join(",");
    let watch_out = root.path().join("watch");
    let watch = spawn_etcdctl(&all, &["watch", "k/", "--prefix"], &watch_out);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writer = endpoints[survivors[0]].clone();
    for i in 1..=3 {
        etcdctl(&writer, &["put", &format!("k/{i}"), &format!("v{i}")]);
    }
    nodes[leader].kill();
    let urls: Vec<String> = survivors.iter().map(|&i| nodes[i].url()).collect();
    wait_for_leader(&urls).await;
    for i in 4..=6 {
        let (key, value) = (format!("k/{i}"), format!("v{i}"));
        eventually("a put after the leader's death", || async {
            etcdctl_with(&writer, &["put", &key, &value], "")
                .0
                .then_some(())
        })
        .await;
    }
    // A put retried after an unknown outcome may have applied twice: the store's versions say
    // how many events each key made.
    let stored = etcdctl_json(&writer, &["get", "k/", "--prefix"]);
    let expected: Vec<String> = stored["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .flat_map(|(i, kv)| {
            let event = [
                "PUT".to_string(),
                format!("k/{}", i + 1),
                format!("v{}", i + 1),
            ];
            let times = kv["version"].as_u64().unwrap() as usize;
            std::iter::repeat_n(event, times).flatten()
        })
        .collect();
    assert!(expected.len() >= 18, "{stored}");
    eventually("the watch to print every event", || async {
        (lines_of(&watch_out).len() >= expected.len()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = lines_of(&watch_out);
    drop(watch);
    assert_eq!(
        lines, expected,
        "every event once, in order, and nothing more"
    );
}
