//! The HTTP API on real processes: clear JSON errors, leases, watches (shared delivery, slow
//! readers, per-client limits), paging through a large prefix.

mod common;

use std::time::{Duration, Instant};

use common::*;

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
    // A missing key is Consul's 404: an empty body, with the index to block on.
    assert_eq!(response.status().as_u16(), 404);
    assert!(response.headers().contains_key("x-consul-index"));
    assert_eq!(response.text().await.unwrap(), "");
    // The HTTP layer's own errors are JSON.
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
            client.get(format!("{url}/nowhere")).send().await.unwrap(),
            404,
            "not_found",
        ),
        // Last: the node may close the connection this one used.
        (
            send_huge(&client, &format!("{url}/v1/kv/huge")).await,
            413,
            "too_large",
        ),
    ] {
        assert_eq!(response.status().as_u16(), status);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
    }
    // The metrics scrape shows the node leading and the write it applied (a fresh client: the
    // oversized body may have left a closed connection in the old one's pool).
    put_ok(&url, "counted", "1").await;
    let metrics = http()
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
    put_ok(&url, "w/a", "1").await;
    let first = modify_index(&url, "w/a").await;
    // A watch from the first write's revision sees the history, then live changes.
    let stream = http()
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
    let mut lines = JsonLines::new(stream);
    while events.len() < 3 {
        let line = lines.next().await;
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
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|(t, k, _)| (t.as_str(), k.as_str()))
        .collect();
    assert_eq!(kinds, [("put", "w/a"), ("put", "w/b"), ("delete", "w/a")]);
    assert!(events.windows(2).all(|w| w[0].2 < w[1].2), "{events:?}");
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
            let mut request = client
                .get(format!("{url}/v1/kv/bench/"))
                .query(&[("keys", ""), ("limit", "5000")]);
            if let Some(start) = start {
                request = request.query(&[("start", start)]);
            }
            if let Some(revision) = revision {
                request = request.query(&[("revision", revision)]);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_string())
            };
            let (index, next) = (header("x-consul-index"), header("x-raftkv-next"));
            let keys = response.json::<Vec<String>>().await.unwrap();
            (keys, index, next)
        }
    };
    let (mut seen, mut start, mut revision) = (0u64, None, None);
    let mut last_key = String::new();
    loop {
        let (keys, index, next) = page(start.clone(), revision.clone()).await;
        if revision.is_none() {
            revision = index;
            put_ok(&url, "bench/zzz-later", "x").await;
        }
        for key in keys {
            assert!(key > last_key, "keys in order, each once");
            last_key = key;
            seen += 1;
        }
        let Some(next) = next else {
            break;
        };
        let decoded = url::form_urlencoded::parse(format!("k={next}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned());
        start = decoded;
    }
    assert_eq!(
        seen, KEYS,
        "every key of the prefix, at the first page's revision"
    );
    // Unpaged, the answer would pass the store's range limit: refused, saying so.
    let unpaged = client
        .get(format!("{url}/v1/kv/bench/?keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(unpaged.status().as_u16(), 413);
    let refusal: serde_json::Value = unpaged.json().await.unwrap();
    assert_eq!(refusal["code"], "too_large", "{refusal}");
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["ls", "bench/", "--endpoints", &url])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let lines = String::from_utf8_lossy(&listed.stdout).lines().count() as u64;
    assert_eq!(lines, KEYS + 1, "raftkv ls pages through everything");
}

/// Leases expiring together are revoked in batches: 20,000 leases, each with a key, are all gone
/// within 2 s of their TTL.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_leases_expiring_together_are_revoked_within_two_seconds() {
    const LEASES: usize = 20_000;
    const CLIENTS: usize = 64;
    const TTL_SECS: u64 = 30;
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "e1");
    node.start(&[]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    let client = http();
    let granted_by = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for n in (c..LEASES).step_by(CLIENTS) {
                let grant: serde_json::Value = client
                    .post(format!("{url}/v1/lease?ttl={TTL_SECS}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let id = grant["id"].as_i64().expect("a lease id");
                let put = client
                    .put(format!("{url}/v1/kv/leased/{n:05}?lease={id}"))
                    .body("v")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(put.status().as_u16(), 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let granted = granted_by.elapsed();
    assert!(
        granted < Duration::from_secs(TTL_SECS),
        "granting took {granted:?}, longer than the TTL: the test measures nothing"
    );
    let count = || async {
        let response = http()
            .get(format!("{url}/v1/kv/leased/?keys&stale"))
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 404 {
            return 0;
        }
        response.json::<Vec<String>>().await.unwrap().len() as u64
    };
    assert_eq!(count().await, LEASES as u64);
    // The last lease expires TTL after its grant (just now); all must be gone 2 s after that.
    tokio::time::sleep(Duration::from_secs(TTL_SECS + 2)).await;
    let left = count().await;
    assert_eq!(left, 0, "{left} keys of expired leases are still there");
}

/// An idle watch stream sends a progress line (with the store's revision) every 5 s, so a client
/// can tell it is alive.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_watch_sends_progress_lines() {
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "i1");
    node.start(&[]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    put_ok(&url, "elsewhere", "x").await;
    let mut stream = http()
        .get(format!("{url}/v1/watch/quiet"))
        .send()
        .await
        .unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(8), stream.chunk())
        .await
        .expect("a line within the progress interval")
        .unwrap()
        .expect("the stream is open");
    let line: serde_json::Value = serde_json::from_slice(&chunk).unwrap();
    assert_eq!(line["progress"], true, "{line}");
    assert!(line["revision"].as_i64().unwrap() >= 1, "{line}");
}

/// Many watchers of one prefix each get every event, in order, through the shared pump.
#[tokio::test(flavor = "multi_thread")]
async fn every_watcher_of_a_busy_prefix_gets_every_event() {
    const WATCHERS: usize = 50;
    const PUTS: u64 = 500;
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "w1");
    node.start(&[]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let response = http()
            .get(format!("{url}/v1/watch/busy/?prefix"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        watchers.push(tokio::spawn(async move {
            let mut lines = JsonLines::new(response);
            let mut seen = Vec::new();
            while (seen.len() as u64) < PUTS {
                let line = lines.next().await;
                assert!(line.get("error").is_none(), "{line}");
                for event in line["events"].as_array().into_iter().flatten() {
                    seen.push(event["kv"]["mod_revision"].as_i64().unwrap());
                }
            }
            seen
        }));
    }
    for n in 0..PUTS {
        put_ok(&url, &format!("busy/{n}"), "v").await;
    }
    for watcher in watchers {
        let seen = watcher.await.unwrap();
        assert_eq!(seen.len() as u64, PUTS);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in revision order");
    }
}

/// A client beyond `--watches-per-client-max` gets a 429 it should not retry, and an ended
/// watch frees its slot.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_beyond_its_watch_limit_gets_a_429() {
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "limited");
    node.start(&["--watches-per-client-max".into(), "2".into()]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    let open = |key: &'static str| http().get(format!("{url}/v1/watch/{key}")).send();
    let first = open("a").await.unwrap();
    let second = open("b").await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let refused = open("c").await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().get("retry-after").is_none());
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "limit_reached", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--watches-per-client-max"),
        "{body}"
    );
    drop(first);
    eventually("the ended watch frees its slot", || async {
        let response = open("d").await.ok()?;
        (response.status().as_u16() == 200).then_some(())
    })
    .await;
}

/// A watcher that stops reading while thousands of events are written is not cancelled: once it
/// reads again it gets every event, in order, with no gap.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_watcher_reads_on_from_history() {
    const PUTS: usize = 2_000;
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "slow");
    node.start(&[]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    let response = reqwest::Client::new() // no overall timeout: the stream is long
        .get(format!("{url}/v1/watch/slow/?prefix"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // About 16 MB of events, far more than the stream's queue and socket buffers hold.
    let value = "v".repeat(8 * 1024);
    for n in 0..PUTS {
        put_ok(&url, &format!("slow/{n}"), &value).await;
    }
    let (mut seen, mut next) = (0, None);
    let mut lines = JsonLines::new(response);
    while seen < PUTS {
        let line = lines.next().await;
        assert!(line.get("error").is_none(), "not cancelled: {line}");
        if let Some(from) = next {
            assert_eq!(line["from_revision"].as_i64(), Some(from), "no gap");
        }
        next = line["to_revision"].as_i64().map(|to| to + 1);
        seen += line["events"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(seen, PUTS);
}
