//! Real clusters as separate `raftkv serve` processes on loopback: writes through the leader
//! and a follower, reads everywhere, the leader killed with SIGKILL, a restarted node catching up
//! through a snapshot, a single node with no flags, `raftkv dev`, snapshots off the node loop.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_three_node_cluster_serves_survives_a_killed_leader_and_catches_up_a_restarted_node() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, urls) = started_cluster(root.path(), &["n1", "n2", "n3"]);
    let leader = wait_for_leader(&urls).await;
    let follower = (leader + 1) % 3;

    // Writes to the leader and to a follower (forwarded) are both acknowledged.
    // Every member publishes its addresses into the replicated registry.
    eventually("every member to publish its client URL", || async {
        let s = status(&urls[follower]).await?;
        let members = s["members"].as_array()?;
        let all = members.len() == 3
            && members.iter().all(|m| {
                m["client_url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("http://"))
            });
        all.then_some(())
    })
    .await;
    put_ok(&urls[leader], "via-leader", "1").await;
    put_ok(&urls[follower], "via-follower", "2").await;
    // Every node reads both, linearizably (followers through ReadIndex) and by lease.
    for url in &urls {
        assert_eq!(
            get_raw(url, "via-leader", "linearizable").await,
            Ok(Some("1".into()))
        );
        assert_eq!(
            get_raw(url, "via-follower", "linearizable").await,
            Ok(Some("2".into()))
        );
        assert_eq!(get_raw(url, "missing", "linearizable").await, Ok(None));
    }

    // kill -9 the leader: a new leader comes up, and every acknowledged write is still there.
    let mut acknowledged = vec![("via-leader", "1"), ("via-follower", "2")];
    nodes[leader].kill();
    let killed_at = Instant::now();
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| urls[i].clone())
        .collect();
    let new_leader = wait_for_leader(&survivors).await;
    let failover = killed_at.elapsed();
    eprintln!(
        "failover: new leader after {failover:?} (election timeout {ELECTION_TIMEOUT:?}, \
         randomized in [1, 2) timeouts)"
    );
    assert!(
        failover < ELECTION_TIMEOUT * 2 + Duration::from_secs(2),
        "failover took {failover:?}"
    );
    for (key, value) in &acknowledged {
        assert_eq!(
            get_raw(&survivors[new_leader], key, "linearizable").await,
            Ok(Some(value.to_string()))
        );
    }

    // While the old leader is down, write enough that the others compact past it (snapshots
    // every 20 entries), so it must catch up through a snapshot.
    let keys: Vec<String> = (0..60).map(|i| format!("k{i:03}")).collect();
    for key in &keys {
        put_ok(&survivors[new_leader], key, key).await;
    }
    acknowledged.extend(keys.iter().map(|k| (k.as_str(), k.as_str())));
    nodes[leader].start(&[]);
    let restarted = urls[leader].clone();
    eventually("the restarted node to catch up", || async {
        let mut all = true;
        for (key, value) in &acknowledged {
            all &= get_raw(&restarted, key, "stale").await == Ok(Some(value.to_string()));
        }
        all.then_some(())
    })
    .await;
    let log = nodes[leader].log_text();
    assert!(
        log.contains("installed snapshot"),
        "the restarted node should have caught up through a snapshot; its log:\n{log}"
    );

    // A clean stop of everything exits 0.
    for node in nodes.iter_mut() {
        assert!(
            node.terminate(),
            "{} did not stop cleanly:\n{}",
            node.name,
            node.log_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn raftkv_serve_with_no_flags_is_a_working_single_node_cluster_that_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let start = || {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .arg("serve")
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    };
    let url = "http://127.0.0.1:4001".to_string();
    let mut child = start();
    wait_for_leader(std::slice::from_ref(&url)).await;
    put_ok(&url, "k", "v").await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exited = child.wait().unwrap();
    assert!(
        exited.success(),
        "{exited:?}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(dir.path().join("raftkv-data").join("node.json").exists());
    // Restarted with its data dir, it resumes with the data.
    let mut child = start();
    wait_for_leader(std::slice::from_ref(&url)).await;
    assert_eq!(
        get_settled(&url, "k", "linearizable").await,
        Some("v".into())
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn raftkv_dev_starts_a_cluster_the_cli_can_use_and_stops_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // Killed on drop, so a failing assertion leaves no cluster behind (its nodes stop when their
    // stdin, held by `dev`, closes).
    let (mut dev, client_port) = spawn_dev(dir.path(), std::process::Stdio::null());
    let dev = &mut dev.0;
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = std::io::BufReader::new(dev.stdout.take().unwrap());
    let sink = printed.clone();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut stdout, &mut line).unwrap_or(0) > 0 {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    let urls: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:{}", client_port + i))
        .collect();
    eventually("dev to report the cluster running", || async {
        printed
            .lock()
            .unwrap()
            .contains("3 nodes running")
            .then_some(())
    })
    .await;
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .args(args)
            .args(["--endpoints", &urls.join(",")])
            .output()
            .unwrap();
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (ok, out) = cli(&["put", "greeting", "hello"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["get", "greeting"]);
    assert!(ok && out.trim() == "hello", "{out}");
    let (ok, out) = cli(&["put", "greeting", "again", "--cas", "999"]);
    assert!(!ok && out.contains("is not at ModifyIndex 999"), "{out}");
    let (ok, out) = cli(&["ls", "gr"]);
    assert!(ok && out.contains("greeting = hello"), "{out}");
    let (ok, out) = cli(&["status"]);
    assert!(ok && out.contains("leader"), "{out}");
    let (ok, out) = cli(&["del", "greeting"]);
    assert!(ok && out.trim() == "OK", "{out}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &dev.id().to_string()])
        .status();
    assert!(dev.wait().unwrap().success());
    reader.join().unwrap();
    let printed = printed.lock().unwrap().clone();
    assert!(printed.contains("3 nodes running"), "{printed}");
    assert!(printed.contains("stopped"), "{printed}");
    for url in &urls {
        assert!(
            status(url).await.is_none(),
            "{url} still answers after dev stopped"
        );
    }
}

/// Snapshots slower than an election timeout are produced off the node loop: writes go on and
/// no election happens while they are written.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_slower_than_the_election_timeout_causes_no_election() {
    let root = tempfile::tempdir().unwrap();
    let delay = (ELECTION_TIMEOUT * 3).as_millis().to_string();
    let (_nodes, urls) = started_cluster_with(root.path(), &["w1", "w2", "w3"], |_| {
        vec!["--debug-snapshot-delay-ms".to_string(), delay.clone()]
    });
    let leader = wait_for_leader(&urls).await;
    let term = status(&urls[leader]).await.unwrap()["term"].clone();
    let started = Instant::now();
    let mut written = 0;
    while started.elapsed() < ELECTION_TIMEOUT * 12 {
        put_ok(&urls[leader], &format!("k{written}"), "v").await;
        written += 1;
    }
    for url in &urls {
        let s = status(url).await.unwrap();
        assert_eq!(s["term"], term, "no election: {s}");
        assert!(
            s["snapshot_index"].as_u64().unwrap() > 0,
            "snapshots were taken: {s}"
        );
    }
    assert!(written > SNAPSHOT_ENTRIES * 3, "writes went on: {written}");
}
