//! Connection discipline on real processes: on the client port a bound on open connections
//! (fitted to the descriptor limit), a header-read timeout, an idle timeout, a request timeout;
//! on the peer port refusals at accept.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

/// With its descriptor limit lowered, a node flooded with idle connections refuses those past
/// its bound and keeps serving (writes, snapshots, its WAL) the connection it had; once the idle
/// ones time out, new clients get in again.
#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_bound_are_refused_while_the_node_keeps_serving() {
    const OPEN_FILES: u32 = 320;
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "c1");
    node.start_with_open_files(
        OPEN_FILES,
        &["--client-idle-timeout-ms".to_string(), "3000".to_string()],
    );
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    let client = http();
    put_ok(&url, "before", "x").await;
    let status_of = |client: reqwest::Client| {
        let url = url.clone();
        async move {
            client
                .get(format!("{url}/v1/status"))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    // This client's connection is open (and pooled) before the flood.
    let snapshot_before = status_of(client.clone()).await["snapshot_index"]
        .as_u64()
        .unwrap();
    let flooded_at = Instant::now();
    let flood: Vec<std::net::TcpStream> = (0..OPEN_FILES)
        .filter_map(|_| std::net::TcpStream::connect(&node.client).ok())
        .collect();
    assert!(!flood.is_empty());
    // The client that was already connected keeps being served, past a snapshot. (Its pool may
    // try a new connection while the old one is on its way back to the pool: that one is
    // refused, and the request is sent again.)
    for n in 0..SNAPSHOT_ENTRIES * 3 {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match client
                .put(format!("{url}/v1/kv/during-{n}"))
                .body("v")
                .send()
                .await
            {
                Ok(response) => {
                    assert_eq!(response.status().as_u16(), 200);
                    let _ = response.bytes().await;
                    break;
                }
                Err(_) if attempts < 20 => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => panic!("the node stopped serving: {e}\n{}", node.log_text()),
            }
        }
    }
    let after = status_of(client.clone()).await;
    assert!(
        after["snapshot_index"].as_u64().unwrap() > snapshot_before,
        "{after}"
    );
    assert!(after["wal_error"].is_null(), "{after}");
    let log = node.log_text();
    assert!(log.contains("client connections refused"), "{log}");
    assert!(
        !log.contains("Too many open files") || log.contains("accept failed"),
        "{log}"
    );
    // The idle flood, still open on its side, is closed by the idle timeout; then anyone gets in.
    eventually("a new client to be served", || async {
        let fresh = http();
        let r = fresh.get(format!("{url}/v1/status")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let waited = flooded_at.elapsed();
    assert!(
        waited >= Duration::from_millis(2500),
        "a new client got in {waited:?} after the flood, before its idle timeout"
    );
    drop(flood);
}

/// A client that sends its request headers too slowly (slowloris) is cut off.
#[tokio::test(flavor = "multi_thread")]
async fn a_slowloris_connection_is_closed_by_the_header_timeout() {
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "s1");
    node.start(&["--client-header-timeout-ms".to_string(), "500".to_string()]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    let client_addr = node.client.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&client_addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /v1/status HTTP/1.1\r\nHost: slow\r\n")
            .unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    })
    .await
    .unwrap();
    let (waited, answer) = outcome;
    assert!(
        waited < Duration::from_secs(5),
        "the connection stayed open {waited:?}: {answer}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // The node serves everyone else meanwhile.
    assert!(status(&url).await.is_some());
}

/// A client that trickles its request body (a byte at a time, each within the idle timeout) is
/// answered 408 once the request timeout passes.
#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_body_is_cut_off_by_the_request_timeout() {
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "t1");
    node.start(&[
        "--client-request-timeout-ms".to_string(),
        "1000".to_string(),
    ]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    let client_addr = node.client.clone();
    let (waited, answer) = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&client_addr).unwrap();
        stream
            .write_all(b"PUT /v1/kv/slow HTTP/1.1\r\nHost: slow\r\nContent-Length: 100\r\n\r\n")
            .unwrap();
        let started = Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut answer = Vec::new();
        while started.elapsed() < Duration::from_secs(10) {
            let _ = stream.write_all(b"x");
            let mut buf = [0u8; 4096];
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(_) if !answer.is_empty() => break,
                Err(_) => {}
            }
        }
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--client-request-timeout-ms"), "{answer}");
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    assert_eq!(
        get_settled(&url, "slow", "linearizable").await,
        None,
        "nothing was written"
    );
}

/// Whether a peer connection from `from` (a local address) to `peer` is closed at once, before
/// it sends anything (refused at accept), rather than left to its handshake timeout.
async fn closed_at_once(from: &str, peer: &str) -> bool {
    use tokio::io::AsyncReadExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(peer.parse().unwrap()).await.unwrap();
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// The peer port refuses, at accept, an address that is not a member's (127.0.0.2 here, the
/// members being on 127.0.0.1), and with `--peer-sources any`, an address whose handshakes kept
/// failing; a member's address still gets its handshake time.
#[tokio::test(flavor = "multi_thread")]
async fn peer_connections_from_non_members_and_repeated_failures_are_refused_early() {
    use tokio::io::AsyncWriteExt;
    let root = tempfile::tempdir().unwrap();
    let mut members_only = Node::new(root.path(), "p1");
    members_only.start(&[]);
    let mut any = Node::new(root.path(), "p2");
    any.start(&["--peer-sources".into(), "any".into()]);
    wait_for_leader(&[members_only.url()]).await;
    wait_for_leader(&[any.url()]).await;

    assert!(closed_at_once("127.0.0.2", &members_only.peer).await);
    assert!(
        !closed_at_once("127.0.0.1", &members_only.peer).await,
        "a member's address gets its handshake time"
    );
    assert!(!closed_at_once("127.0.0.2", &any.peer).await);
    for _ in 0..5 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut junk = socket.connect(any.peer.parse().unwrap()).await.unwrap();
        let _ = junk.write_all(&[0xAB; 64]).await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(
            PATIENCE,
            tokio::io::AsyncReadExt::read_to_end(&mut junk, &mut rest),
        )
        .await;
    }
    assert!(
        closed_at_once("127.0.0.2", &any.peer).await,
        "after 5 failed handshakes the address is refused at accept"
    );
    assert!(!closed_at_once("127.0.0.1", &any.peer).await);
    assert!(
        members_only.log_text().contains("not a member's address"),
        "the first refusal is logged at once, with its reason"
    );
}
