//! Consul's KV API on real 3-process clusters: Consul's own Python client (py-consul, installed
//! by `scripts/install-test-tools` in `target/test-tools/python`, or `$RAFTKV_PY_CONSUL_DIR`)
//! runs its calls against it; plain HTTP checks every header and answer shape; a blocking query
//! survives a leader kill.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Where py-consul is installed.
fn py_consul_dir() -> PathBuf {
    std::env::var_os("RAFTKV_PY_CONSUL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools/python")
        })
}

/// `host:port` of a client URL.
fn address(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// A header of `response` as text.
fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn consuls_python_client_works_against_a_three_node_cluster() {
    let dir = py_consul_dir();
    assert!(
        dir.join("consul").is_dir(),
        "py-consul is not installed in {}; run scripts/install-test-tools (or scripts/test)",
        dir.display()
    );
    let root = tempfile::tempdir().unwrap();
    let (_nodes, urls) = started_cluster(root.path(), &["c1", "c2", "c3"]);
    let leader = wait_for_leader(&urls).await;
    wait_for_client_urls(&urls).await;
    // Written through a follower (forwarded), read from every member.
    let mut addresses: Vec<&str> = urls.iter().map(|u| address(u)).collect();
    addresses.rotate_left((leader + 1) % 3);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/consul/kv_client.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .args(&addresses)
        .env("PYTHONPATH", &dir)
        .output()
        .expect("run python3");
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success() && out.trim() == "ok",
        "py-consul failed:\n{out}\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn consul_headers_and_answer_shapes_over_plain_http() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, urls) = started_cluster(root.path(), &["h1", "h2", "h3"]);
    let leader = wait_for_leader(&urls).await;
    wait_for_client_urls(&urls).await;
    let (url, follower) = (&urls[leader], &urls[(leader + 1) % 3]);
    let client = http();

    let put = client
        .put(format!("{url}/v1/kv/web/port?flags=7"))
        .body("8080")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    assert_eq!(put.text().await.unwrap(), "true");

    // A read: Consul's array and headers, on the leader and on a follower.
    for (node, is_leader) in [(url, true), (follower, false)] {
        let read = client
            .get(format!("{node}/v1/kv/web/port"))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status().as_u16(), 200);
        let index: i64 = header(&read, "x-consul-index").parse().unwrap();
        assert_eq!(header(&read, "x-consul-knownleader"), "true");
        let contact: u64 = header(&read, "x-consul-lastcontact").parse().unwrap();
        if is_leader {
            assert_eq!(contact, 0, "a leader is its own contact");
        } else {
            assert!(
                contact < 5_000,
                "a follower heard from its leader lately: {contact}"
            );
        }
        let entries: Value = read.json().await.unwrap();
        let entry = &entries[0];
        assert_eq!(entries.as_array().unwrap().len(), 1);
        assert_eq!(entry["Key"], "web/port");
        assert_eq!(entry["Value"], "ODA4MA==");
        assert_eq!(entry["Flags"], 7);
        assert_eq!(entry["LockIndex"], 0);
        assert!(entry["ModifyIndex"].as_i64().unwrap() <= index, "{entry}");
    }
    let raw = client
        .get(format!("{url}/v1/kv/web/port?raw"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.text().await.unwrap(), "8080");

    // Missing: a 404 with an empty body and the index to block on.
    let missing = client
        .get(format!("{url}/v1/kv/web/none"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert!(header(&missing, "x-consul-index").parse::<i64>().unwrap() > 0);
    assert_eq!(missing.text().await.unwrap(), "");

    // Stale reads with a bound: fine on a follower in touch with its leader.
    let stale = client
        .get(format!("{follower}/v1/kv/web/port?stale&max_stale=10s"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 200);
    let bad = client
        .get(format!("{follower}/v1/kv/web/port?stale&max_stale=soon"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    // An index above the store's is reset: answered at once.
    let started = Instant::now();
    let ahead = client
        .get(format!("{url}/v1/kv/web/port?index=999999999&wait=10s"))
        .send()
        .await
        .unwrap();
    assert_eq!(ahead.status().as_u16(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));

    // A delete answers true; a check-and-set delete at index 0 does nothing and answers false.
    let refused = client
        .delete(format!("{url}/v1/kv/web/port?cas=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.text().await.unwrap(), "false");
    let deleted = client
        .delete(format!("{url}/v1/kv/web/port"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.text().await.unwrap(), "true");

    // Lock delay: after a session ends, its keys may not be acquired for its LockDelay.
    let session = |delay: &'static str| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let created: Value = client
                .put(format!("{url}/v1/session/create"))
                .body(format!("{{\"LockDelay\": \"{delay}\"}}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            created["ID"].as_str().unwrap().to_string()
        }
    };
    let acquire = |id: String| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let answer = client
                .put(format!("{url}/v1/kv/locked?acquire={id}"))
                .body("x")
                .send()
                .await
                .unwrap();
            (answer.status().as_u16(), answer.text().await.unwrap())
        }
    };
    let (first, second) = (session("2s").await, session("0s").await);
    assert_eq!(acquire(first.clone()).await, (200, "true".to_string()));
    let destroyed = client
        .put(format!("{url}/v1/session/destroy/{first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(destroyed.text().await.unwrap(), "true");
    let delayed_from = Instant::now();
    assert_eq!(acquire(second.clone()).await, (200, "false".to_string()));
    eventually("the lock delay to pass", || {
        let acquired = acquire(second.clone());
        async move { (acquired.await.1 == "true").then_some(()) }
    })
    .await;
    assert!(delayed_from.elapsed() >= Duration::from_millis(1500));
    // An unknown session is refused as Consul refuses it.
    let (status, body) = acquire("00000000-0000-4000-8000-0000000fffff".into()).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("invalid session"), "{body}");

    // Session reads block on the sessions' index: without a change the wait passes with the
    // same index; a session created meanwhile wakes a waiting read (on a follower too).
    let listed = client
        .get(format!("{follower}/v1/session/list"))
        .send()
        .await
        .unwrap();
    let index: u64 = header(&listed, "x-consul-index").parse().unwrap();
    let started = Instant::now();
    let timed_out = client
        .get(format!("{follower}/v1/session/list?index={index}&wait=1s"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(header(&timed_out, "x-consul-index"), index.to_string());
    let waiting = tokio::spawn(
        client
            .get(format!("{follower}/v1/session/list?index={index}&wait=30s"))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let created = session("0s").await;
    let woken = waiting.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the create"
    );
    let woken_index: u64 = header(&woken, "x-consul-index").parse().unwrap();
    assert!(woken_index > index, "{woken_index} after {index}");
    let sessions: Value = woken.json().await.unwrap();
    let ids: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["ID"].as_str())
        .collect();
    assert!(ids.contains(&created.as_str()), "{created} in {ids:?}");

    // Consul's status endpoints: the leader's and the voters' Raft addresses.
    let leader_address: String = client
        .get(format!("{follower}/v1/status/leader"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let peers: Vec<String> = client
        .get(format!("{follower}/v1/status/peers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(peers.len(), 3);
    assert!(
        peers.contains(&leader_address),
        "{leader_address} in {peers:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocking_query_survives_a_leader_kill() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, urls) = started_cluster(root.path(), &["b1", "b2", "b3"]);
    let leader = wait_for_leader(&urls).await;
    wait_for_client_urls(&urls).await;
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| urls[i].clone())
        .collect();
    put_ok(&urls[leader], "jobs/1", "queued").await;
    let read = http()
        .get(format!("{}/v1/kv/jobs/?recurse", survivors[0]))
        .send()
        .await
        .unwrap();
    let index = header(&read, "x-consul-index").to_string();

    // A client blocks on a survivor; the leader dies; the next leader takes writes.
    let blocked_at = Instant::now();
    let blocked = tokio::spawn({
        let url = survivors[0].clone();
        let index = index.clone();
        async move {
            http()
                .get(format!("{url}/v1/kv/jobs/?recurse&index={index}&wait=30s"))
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    nodes[leader].kill();
    put_ok(&survivors[1], "jobs/2", "queued").await;
    put_ok(&survivors[1], "jobs/1", "done").await;

    // The blocked query wakes (or, had its connection died, the client's retry with its last
    // index answers at once); either way it sees the changes.
    let woke = match blocked.await.unwrap() {
        Ok(response) if response.status().is_success() => {
            assert!(
                blocked_at.elapsed() < Duration::from_secs(25),
                "the blocked query woke on a change, not at the end of its wait"
            );
            response
        }
        _ => http()
            .get(format!(
                "{}/v1/kv/jobs/?recurse&index={index}&wait=30s",
                survivors[0]
            ))
            .send()
            .await
            .unwrap(),
    };
    assert!(header(&woke, "x-consul-index").parse::<u64>().unwrap() > index.parse().unwrap());
    let entries: Value = woke.json().await.unwrap();
    let keys: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"jobs/1"), "{entries}");
    // Every change after the index, through the retry loop a Consul client runs.
    eventually("both changes to be seen", || async {
        let response = http()
            .get(format!(
                "{}/v1/kv/jobs/?recurse&index={index}&wait=5s",
                survivors[0]
            ))
            .send()
            .await
            .ok()?;
        let entries: Value = response.json().await.ok()?;
        let values: Vec<&str> = entries
            .as_array()?
            .iter()
            .filter_map(|e| e["Value"].as_str())
            .collect();
        (values == ["ZG9uZQ==", "cXVldWVk"]).then_some(())
    })
    .await;
}
