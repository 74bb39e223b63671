//! Real 3-node clusters as separate `raftkv serve` processes on loopback: writes through the
//! leader and a follower, reads everywhere, the leader killed with SIGKILL, a restarted node
//! catching up through a snapshot, a fourth node joining, garbage on a peer port.

mod common;

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

use std::io::Write;
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
async fn a_fourth_node_joins_as_a_learner_and_is_promoted_to_voter() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, urls) = started_cluster(root.path(), &["a", "b", "c"]);
    let leader = wait_for_leader(&urls).await;
    put_ok(&urls[leader], "before-join", "x").await;

    let mut d = Node::new(root.path(), "d");
    // Join through a follower: the request is forwarded to the leader.
    let via = urls[(leader + 1) % 3].clone();
    d.start(&["--join".to_string(), via]);
    let d_url = d.url();
    eventually("d to become a voter", || async {
        let s = status(&urls[leader]).await?;
        let voter = s["members"]
            .as_array()?
            .iter()
            .any(|m| m["name"] == "d" && m["role"] == "voter");
        voter.then_some(())
    })
    .await;
    assert_eq!(
        get_settled(&d_url, "before-join", "linearizable").await,
        Some("x".into())
    );
    put_ok(&d_url, "after-join", "y").await;
    assert_eq!(
        get_raw(&urls[0], "after-join", "linearizable").await,
        Ok(Some("y".into()))
    );

    // A voter cannot join again as itself (a wiped voter would vote with an empty log).
    let again = http()
        .post(format!("{}/v1/members", urls[leader]))
        .json(&serde_json::json!({
            "name": "a", "peer_url": format!("http://{}", nodes[0].peer), "client_url": urls[0],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 409);
    let body: serde_json::Value = again.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("already a voter"),
        "{body}"
    );

    // Removing d (through any node): the others stop counting it, and refuse its connections.
    let removed = http()
        .delete(format!("{}/v1/members/d", urls[(leader + 2) % 3]))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status().as_u16(), 200, "{:?}", removed.text().await);
    eventually("d to leave the configuration", || async {
        let s = status(&urls[leader]).await?;
        let names: Vec<&str> = s["members"]
            .as_array()?
            .iter()
            .filter_map(|m| m["name"].as_str())
            .collect();
        (names == ["a", "b", "c"]).then_some(())
    })
    .await;
    put_ok(&urls[leader], "after-removal", "z").await;
    eventually("a peer to refuse the removed node", || async {
        nodes
            .iter()
            .any(|n| n.log_text().contains("was removed from the cluster"))
            .then_some(())
    })
    .await;
}

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
async fn bad_requests_get_clear_json_errors() {
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "solo");
    node.start(&[]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    let client = http();
    let big = vec![b'x'; 2 * 1024 * 1024];
    let response = client
        .put(format!("{url}/v1/kv/big"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let response = client
        .get(format!("{url}/v1/kv/k?consistency=sometimes"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    let response = client
        .get(format!("{url}/v1/kv/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    // The HTTP layer's own errors are JSON too.
    for (response, status, code) in [
        (
            client
                .put(format!("{url}/v1/kv/k?cas=x"))
                .body("v")
                .send()
                .await
                .unwrap(),
            400,
            "bad_request",
        ),
        (
            send_huge(&client, &format!("{url}/v1/kv/huge")).await,
            413,
            "too_large",
        ),
        (
            client.get(format!("{url}/nowhere")).send().await.unwrap(),
            404,
            "not_found",
        ),
    ] {
        assert_eq!(response.status().as_u16(), status);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
    }
    // The metrics scrape shows the node leading and the write it applied.
    put_ok(&url, "counted", "1").await;
    let metrics = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("raftkv_is_leader 1\n"), "{metrics}");
    assert!(metrics.contains("raftkv_proposals_total 1\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn raftkv_serve_with_no_flags_is_a_working_single_node_cluster_that_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .arg("serve")
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
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
    assert!(child.wait().unwrap().success());
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
    let client_port = free_port_run(6);
    let peer_port = client_port + 3;
    let mut dev = std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["dev", "--nodes", "3"])
        .args(["--client-port", &client_port.to_string()])
        .args(["--peer-port", &peer_port.to_string()])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
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
    // Killed on drop, so a failing assertion leaves no cluster behind (its nodes stop when their
    // stdin, held by `dev`, closes).
    let mut dev = KillOnDrop(dev);
    let dev = &mut dev.0;
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
    assert!(!ok && out.contains("is at mod_revision"), "{out}");
    let (ok, out) = cli(&["ls", "gr"]);
    assert!(ok && out.contains("greeting = hello"), "{out}");
    let (ok, out) = cli(&["status"]);
    assert!(ok && out.contains("leader"), "{out}");
    let (ok, out) = cli(&["del", "greeting"]);
    assert!(ok && out.contains("deleted 1 key"), "{out}");
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

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_with_a_stalled_disk_loses_leadership_and_reports_itself_unhealthy() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| Node::new(root.path(), n))
        .collect();
    let spec = initial_cluster(&nodes);
    let stall_files: Vec<_> = nodes
        .iter()
        .map(|n| root.path().join(format!("{}.stall", n.name)))
        .collect();
    for (node, stall) in nodes.iter_mut().zip(&stall_files) {
        node.start(&[
            "--initial-cluster".to_string(),
            spec.clone(),
            "--debug-stall-file".to_string(),
            stall.display().to_string(),
        ]);
    }
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
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

#[tokio::test(flavor = "multi_thread")]
async fn keys_on_a_lease_vanish_when_it_is_revoked_or_expires_even_across_a_leader_change() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, urls) = started_cluster(root.path(), &["l1", "l2", "l3"]);
    let leader = wait_for_leader(&urls).await;
    let client = http();
    let grant = |ttl: u64| {
        let client = client.clone();
        let url = urls[leader].clone();
        async move {
            let r = client
                .post(format!("{url}/v1/lease?ttl={ttl}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_i64()
                .unwrap()
        }
    };

    // Revoked: its keys go at once, on every node.
    let revoked = grant(60).await;
    put_ok(&urls[leader], &format!("a?lease={revoked}"), "x").await;
    assert_eq!(
        get_settled(&urls[leader], "a", "linearizable").await,
        Some("x".into())
    );
    let r = client
        .delete(format!("{}/v1/lease/{revoked}", urls[leader]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for url in &urls {
        assert_eq!(get_settled(url, "a", "linearizable").await, None);
    }

    // Expiring: granted for 2 s under one leader, which then dies; the next leader expires it.
    let expiring = grant(2).await;
    put_ok(&urls[leader], &format!("b?lease={expiring}"), "y").await;
    nodes[leader].kill();
    let others: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| urls[i].clone())
        .collect();
    let new_leader = wait_for_leader(&others).await;
    eventually("the lease to expire under the new leader", || async {
        (get_raw(&others[new_leader], "b", "linearizable").await == Ok(None)).then_some(())
    })
    .await;
    // A lease unknown to the store cannot be renewed.
    let r = client
        .post(format!(
            "{}/v1/lease/{expiring}/keepalive",
            others[new_leader]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_streams_every_change_in_revision_order_from_the_past_and_live() {
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "watcher");
    node.start(&[]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    let first = put_ok(&url, "w/a", "1").await["revision"].as_i64().unwrap();
    // A watch from the first write's revision sees the history, then live changes.
    let mut stream = http()
        .get(format!("{url}/v1/watch/w/?prefix&rev={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    put_ok(&url, "w/b", "2").await;
    put_ok(&url, "other", "x").await;
    let response = http()
        .delete(format!("{url}/v1/kv/w/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut events = Vec::new();
    let mut next_revision = first;
    let mut buffer = String::new();
    while events.len() < 3 {
        let chunk = tokio::time::timeout(PATIENCE, stream.chunk())
            .await
            .expect("watch stream stalled")
            .unwrap()
            .expect("watch stream ended");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line: serde_json::Value = serde_json::from_str(&buffer[..end]).unwrap();
            buffer.drain(..=end);
            // Responses cover contiguous revision ranges: no gap.
            assert_eq!(
                line["from_revision"].as_i64(),
                Some(next_revision),
                "{line}"
            );
            next_revision = line["to_revision"].as_i64().unwrap() + 1;
            for event in line["events"].as_array().unwrap() {
                events.push((
                    event["type"].as_str().unwrap().to_string(),
                    event["kv"]["key"].as_str().unwrap().to_string(),
                    event["kv"]["mod_revision"].as_i64().unwrap(),
                ));
            }
        }
    }
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|(t, k, _)| (t.as_str(), k.as_str()))
        .collect();
    assert_eq!(kinds, [("put", "w/a"), ("put", "w/b"), ("delete", "w/a")]);
    assert!(events.windows(2).all(|w| w[0].2 < w[1].2), "{events:?}");
}

/// A client that lost its answer because the leader died mid-request retries the write in its
/// session, through another node: the write is applied once, and the retry gets the first answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_retried_in_its_session_after_the_leader_dies_is_applied_exactly_once() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = ["x1", "x2", "x3"]
        .iter()
        .map(|n| Node::new(root.path(), n))
        .collect();
    let spec = initial_cluster(&nodes);
    let stall_files: Vec<_> = nodes
        .iter()
        .map(|n| root.path().join(format!("{}.stall", n.name)))
        .collect();
    for (node, stall) in nodes.iter_mut().zip(&stall_files) {
        node.start(&[
            "--initial-cluster".to_string(),
            spec.clone(),
            "--debug-stall-file".to_string(),
            stall.display().to_string(),
        ]);
    }
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
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
    assert_eq!(found["version"], 1, "applied once: {found}");
    assert_eq!(
        answer["revision"], found["mod_revision"],
        "the retry repeats the first answer"
    );
}

/// Snapshots slower than an election timeout are produced off the node loop: writes go on and
/// no election happens while they are written.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_slower_than_the_election_timeout_causes_no_election() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = ["w1", "w2", "w3"]
        .iter()
        .map(|n| Node::new(root.path(), n))
        .collect();
    let spec = initial_cluster(&nodes);
    let delay = (ELECTION_TIMEOUT * 3).as_millis().to_string();
    for node in nodes.iter_mut() {
        node.start(&[
            "--initial-cluster".to_string(),
            spec.clone(),
            "--debug-snapshot-delay-ms".to_string(),
            delay.clone(),
        ]);
    }
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
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

/// A body over the HTTP limit: the node answers 413 before reading all of it and may close the
/// connection while the client is still sending, so a reset attempt is sent again.
async fn send_huge(client: &reqwest::Client, url: &str) -> reqwest::Response {
    for _ in 0..5 {
        if let Ok(response) = client
            .put(url)
            .body(vec![b'x'; 5 * 1024 * 1024])
            .send()
            .await
        {
            return response;
        }
    }
    panic!("no answer to an oversized body from {url}");
}

/// A prefix too large for one answer is read completely in pages (`limit`, `start`, and the
/// first page's `revision`), by hand and by `raftkv ls`; `keys_only` and `count_only` are
/// honoured.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_prefix_is_read_completely_by_paging() {
    const KEYS: u64 = 100_000;
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "p1");
    node.start(&[]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    let loaded = std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args([
            "bench",
            "--op",
            "put",
            "--clients",
            "64",
            "--value-size",
            "64",
        ])
        .args(["--requests", &KEYS.to_string(), "--keys", &KEYS.to_string()])
        .args(["--endpoint", &url])
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{loaded:?}");
    // Written after the first page: not seen by a listing at that page's revision.
    let client = http();
    let page = |start: Option<String>, revision: Option<String>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut request = client.get(format!("{url}/v1/kv/bench/")).query(&[
                ("prefix", ""),
                ("limit", "5000"),
                ("keys_only", ""),
            ]);
            if let Some(start) = start {
                request = request.query(&[("start", start)]);
            }
            if let Some(revision) = revision {
                request = request.query(&[("revision", revision)]);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let (mut seen, mut start, mut revision) = (0u64, None, None);
    let mut last_key = String::new();
    loop {
        let json = page(start.clone(), revision.clone()).await;
        if revision.is_none() {
            revision = Some(json["revision"].to_string());
            put_ok(&url, "bench/zzz-later", "x").await;
        }
        for kv in json["kvs"].as_array().unwrap() {
            let key = kv["key"].as_str().unwrap().to_string();
            assert!(key > last_key, "keys in order, each once");
            assert!(kv.get("value").is_none(), "keys_only leaves values out");
            last_key = key;
            seen += 1;
        }
        if json["more"] != true {
            break;
        }
        start = json["next"].as_str().map(str::to_string);
    }
    assert_eq!(
        seen, KEYS,
        "every key of the prefix, at the first page's revision"
    );
    let counted: serde_json::Value = client
        .get(format!("{url}/v1/kv/bench/?prefix&count_only"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counted["count"], KEYS + 1);
    assert_eq!(counted["kvs"].as_array().map_or(0, Vec::len), 0);
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["ls", "bench/", "--endpoints", &url])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let lines = String::from_utf8_lossy(&listed.stdout).lines().count() as u64;
    assert_eq!(lines, KEYS + 1, "raftkv ls pages through everything");
}

/// Membership requests are validated (bounded, well-formed names and URLs: a clear 400), and a
/// member can always be removed, by its id as well as by its name.
#[tokio::test(flavor = "multi_thread")]
async fn membership_requests_are_validated_and_any_member_can_be_removed() {
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "m1");
    node.start(&[]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    let client = http();
    let join = |name: String, peer_url: &str| {
        let body = serde_json::json!({ "name": name, "peer_url": peer_url, "client_url": "" });
        client.post(format!("{url}/v1/members")).json(&body).send()
    };
    for (name, peer_url) in [
        ("x".repeat(200_000), "http://127.0.0.1:1"),
        ("has space".to_string(), "http://127.0.0.1:1"),
        ("ok".to_string(), "not-a-url"),
        ("ok".to_string(), "http://127.0.0.1:99999"),
    ] {
        let response = join(name, peer_url).await.unwrap();
        assert_eq!(response.status().as_u16(), 400);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "bad_request", "{body}");
    }
    let response = join("learner".to_string(), "http://127.0.0.1:1")
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "{:?}",
        response.text().await
    );
    let id = eventually("the learner to be listed", || async {
        let s = status(&url).await?;
        s["learners"].as_array()?.first()?.as_u64()
    })
    .await;
    let removed = client
        .delete(format!("{url}/v1/members/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status().as_u16(), 200, "{:?}", removed.text().await);
    eventually("the learner to be gone", || async {
        let s = status(&url).await?;
        s["learners"].as_array()?.is_empty().then_some(())
    })
    .await;
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
    let client_port = free_port_run(6);
    let peer_port = client_port + 3;
    let dev = std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["dev", "--nodes", "3"])
        .args(["--client-port", &client_port.to_string()])
        .args(["--peer-port", &peer_port.to_string()])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut dev = KillOnDrop(dev);
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
