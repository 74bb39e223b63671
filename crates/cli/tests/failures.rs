//! Faults on real processes: garbage on a peer port, a stalled disk, a failed WAL (fail-stop), a
//! node of `raftkv dev` dying, a leader dying mid-request under a client session.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_a_peer_port_closes_that_connection_and_the_node_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, urls) = started_cluster(root.path(), &["g1", "g2", "g3"]);
    let leader = wait_for_leader(&urls).await;
    let mut state = 1u64;
    for node in &nodes {
        // Random bytes, an HTTP request, a handshake of another cluster, and a valid-looking
        // handshake followed by an oversized frame header.
        let mut payloads: Vec<Vec<u8>> = vec![
            (0..4096)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 33) as u8
                })
                .collect(),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ];
        let mut foreign = b"RKV1".to_vec();
        foreign.extend_from_slice(&0xdead_beef_u64.to_le_bytes());
        foreign.extend_from_slice(&7u64.to_le_bytes());
        foreign.extend_from_slice(&8u64.to_le_bytes());
        payloads.push(foreign);
        let mut oversized = vec![0xff; 8];
        oversized.extend_from_slice(&[0u8; 64]);
        payloads.push(oversized);
        for payload in payloads {
            if let Ok(mut socket) = std::net::TcpStream::connect(&node.peer) {
                let _ = socket.write_all(&payload);
            }
        }
    }
    put_ok(&urls[leader], "still", "serving").await;
    for url in &urls {
        assert_eq!(
            get_raw(url, "still", "linearizable").await,
            Ok(Some("serving".into()))
        );
    }
    for node in &nodes {
        assert!(!node.log_text().contains("panicked"), "{}", node.log_text());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_with_a_stalled_disk_loses_leadership_and_reports_itself_unhealthy() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, urls) = started_cluster_with(root.path(), &["s1", "s2", "s3"], stall_flags);
    let stall_files: Vec<_> = nodes.iter().map(stall_file).collect();
    let leader = wait_for_leader(&urls).await;
    put_ok(&urls[leader], "before", "stall").await;
    let old_term = status(&urls[leader]).await.unwrap()["term"]
        .as_u64()
        .unwrap();

    // The leader's disk stalls: its next write never syncs.
    std::fs::write(&stall_files[leader], b"").unwrap();
    let (code, _) = put(&urls[leader], "during", "stall").await;
    assert_eq!(
        code, 504,
        "a write that cannot be made durable is not acknowledged"
    );
    // The others elect a new leader in a later term, and serve.
    let others: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| urls[i].clone())
        .collect();
    let new_leader = wait_for_leader(&others).await;
    let new_term = status(&others[new_leader]).await.unwrap()["term"]
        .as_u64()
        .unwrap();
    assert!(new_term > old_term);
    put_ok(&others[new_leader], "after", "stall").await;
    // The stalled node says so.
    let stalled = eventually("the stalled node to report itself unhealthy", || async {
        let s = status(&urls[leader]).await?;
        (s["disk_stalled"] == true).then_some(s)
    })
    .await;
    assert_eq!(stalled["healthy"], false);

    // The disk recovers: the node follows the new leader and is healthy again.
    std::fs::remove_file(&stall_files[leader]).unwrap();
    eventually("the recovered node to follow and be healthy", || async {
        let s = status(&urls[leader]).await?;
        (s["role"] == "follower" && s["healthy"] == true).then_some(())
    })
    .await;
    assert_eq!(
        get_settled(&urls[leader], "after", "linearizable").await,
        Some("stall".into())
    );
}

/// Fail-stop means stop: a node whose WAL fails exits with a non-zero status and says why, so a
/// supervisor restarts it (it recovers from what was synced).
#[tokio::test(flavor = "multi_thread")]
async fn a_wal_failure_ends_the_process_with_a_non_zero_exit_and_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let fail = root.path().join("fail-syncs");
    let mut node = Node::new(root.path(), "f1");
    node.start(&[
        "--debug-fail-sync-file".to_string(),
        fail.display().to_string(),
    ]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    put_ok(&url, "before", "x").await;
    std::fs::write(&fail, b"").unwrap();
    let (code, _) = put(&url, "during", "x").await;
    assert_ne!(code, 200, "nothing is acknowledged once the WAL failed");
    let status = node
        .exited_within(PATIENCE)
        .expect("the node exits by itself");
    assert!(!status.success(), "{status:?}");
    let log = node.log_text();
    assert!(log.contains("sync failed"), "{log}");

    // Restarted, it has everything it acknowledged.
    std::fs::remove_file(&fail).unwrap();
    node.start(&[]);
    wait_for_leader(std::slice::from_ref(&url)).await;
    assert_eq!(
        get_raw(&url, "before", "linearizable").await,
        Ok(Some("x".into()))
    );
}

/// `raftkv dev` notices a node that died, stops the others and exits non-zero naming the node
/// and its log.
#[tokio::test(flavor = "multi_thread")]
async fn raftkv_dev_reports_a_node_that_died() {
    let dir = tempfile::tempdir().unwrap();
    let (mut dev, client_port) = spawn_dev(dir.path(), std::process::Stdio::piped());
    let mut stdout = std::io::BufReader::new(dev.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("nodes running") {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(read > 0, "raftkv dev ended before the cluster was up");
    }
    let victim = format!("127.0.0.1:{}", client_port + 1);
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", &format!("listen-client {victim}")])
        .status()
        .unwrap();
    assert!(killed.success(), "the node n2 was running");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = dev.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "raftkv dev noticed nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut dev.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("node n2 exited") && stderr.contains("n2.log"),
        "{stderr}"
    );
}

/// A client that lost its answer because the leader died mid-request retries the write in its
/// session, through another node: the write is applied once, and the retry gets the first answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_retried_in_its_session_after_the_leader_dies_is_applied_exactly_once() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, urls) = started_cluster_with(root.path(), &["x1", "x2", "x3"], stall_flags);
    let stall_files: Vec<_> = nodes.iter().map(stall_file).collect();
    let leader = wait_for_leader(&urls).await;
    let client = http();
    let opened: serde_json::Value = client
        .post(format!("{}/v1/session", urls[leader]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = opened["client_id"]
        .as_u64()
        .expect("a client id")
        .to_string();
    let write = |url: String| {
        let client = client.clone();
        let client_id = client_id.clone();
        async move {
            client
                .put(format!("{url}/v1/kv/once"))
                .header("x-raftkv-client-id", client_id)
                .header("x-raftkv-sequence", "1")
                .body("v")
                .send()
                .await
        }
    };

    // The leader's disk stalls: it replicates the write (the followers commit it) but never
    // applies it, so the client waits; then the leader dies mid-request.
    std::fs::write(&stall_files[leader], b"").unwrap();
    let first = tokio::spawn(write(urls[leader].clone()));
    let others: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| urls[i].clone())
        .collect();
    eventually("the followers to apply the write", || async {
        let found = get_raw(&others[0], "once", "stale").await.ok()??;
        (found == "v").then_some(())
    })
    .await;
    nodes[leader].kill();
    let lost = first.await.unwrap();
    assert!(
        lost.as_ref().map_or(true, |r| !r.status().is_success()),
        "the first attempt got no answer: {lost:?}"
    );

    // The retry, through a surviving node, is answered from the session.
    let retried = eventually("the retry to be answered", || async {
        let r = write(others[0].clone()).await.ok()?;
        r.status().is_success().then_some(r)
    })
    .await;
    let answer: serde_json::Value = retried.json().await.unwrap();
    let found: serde_json::Value = client
        .get(format!("{}/v1/kv/once", others[1]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        found[0]["CreateIndex"], found[0]["ModifyIndex"],
        "applied once: {found}"
    );
    assert_eq!(answer, true, "the retry repeats the first answer");
}

/// A flood of junk connections on a follower's peer port (idle ones holding handshake slots,
/// thousands of them) does not cut the follower off from its leader: it keeps applying, no
/// election happens, and the refusals are logged as a few summary lines.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_junk_peer_connections_does_not_cut_a_follower_off() {
    /// Junk connections held open at once (under the test process's own descriptor limit).
    const JUNK: usize = 800;
    let root = tempfile::tempdir().unwrap();
    let (nodes, urls) = started_cluster(root.path(), &["j1", "j2", "j3"]);
    let leader = wait_for_leader(&urls).await;
    let follower = (leader + 1) % 3;
    let term = status(&urls[leader]).await.unwrap()["term"].clone();
    let peer = nodes[follower].peer.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held = std::collections::VecDeque::new();
            let mut opened = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(socket) = std::net::TcpStream::connect(&peer) {
                    opened += 1;
                    held.push_back(socket);
                }
                if held.len() > JUNK {
                    held.pop_front();
                }
            }
            opened
        })
    };
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < ELECTION_TIMEOUT * 10 {
        put_ok(&urls[leader], &format!("flood-{written}"), "v").await;
        written += 1;
    }
    let applied_on_leader = status(&urls[leader]).await.unwrap()["applied_index"]
        .as_u64()
        .unwrap();
    let caught_up = eventually("the follower to keep applying", || async {
        let s = status(&urls[follower]).await?;
        (s["applied_index"].as_u64()? >= applied_on_leader).then_some(s)
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = flooding.join().unwrap();
    assert!(opened > JUNK, "the flood opened {opened} connections");
    assert_eq!(caught_up["term"], term, "no election: {caught_up}");
    let log = nodes[follower].log_text();
    let lines = log.matches("peer connections refused").count();
    assert!(
        (1..=20).contains(&lines),
        "{lines} refusal lines for {opened} junk connections"
    );
}
