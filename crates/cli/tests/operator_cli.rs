//! The operator commands on real processes: `raftkv status` as one table of every member,
//! `raftkv member list | add --learner | promote | remove` and `raftkv leader transfer`, each with
//! `--json` (errors too), and the `/health` and `/ready` probes.

mod common;

use common::*;
use serde_json::Value;

/// `raftkv ARGS --endpoints ENDPOINT`: success, stdout, stderr.
fn raftkv_at(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    raftkv(&[args, &["--endpoints", endpoint]].concat())
}

/// `raftkv ARGS --json` that succeeds; its JSON.
fn raftkv_json(endpoint: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let (ok, out, err) = raftkv_at(endpoint, &args);
    assert!(ok, "raftkv {args:?} failed: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The rows of `raftkv status --json`.
fn status_rows(endpoint: &str) -> Vec<Value> {
    raftkv_json(endpoint, &["status"])["members"]
        .as_array()
        .unwrap()
        .clone()
}

/// The row of member `name`.
fn row(rows: &[Value], name: &str) -> Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no row for {name} in {rows:?}"))
}

/// `GET url` : status code and JSON body.
async fn probe(url: &str) -> (u16, Value) {
    let response = http().get(url).send().await.unwrap();
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_run_membership_and_leadership_from_the_cli() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, urls) = started_cluster(root.path(), &["a", "b", "c"]);
    let leader = wait_for_leader(&urls).await;
    wait_for_client_urls(&urls).await;
    let follower = urls[(leader + 1) % 3].clone();
    for url in &urls {
        assert_eq!(
            probe(&format!("{url}/health")).await,
            (200, serde_json::json!({ "health": true }))
        );
        eventually("every member to be ready", || async {
            let (code, body) = probe(&format!("{url}/ready")).await;
            (code == 200 && body["ready"] == true).then_some(())
        })
        .await;
    }

    // One table of every member, each asked for its own view.
    let rows = status_rows(&follower);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let leaders: Vec<&Value> = rows.iter().filter(|r| r["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{rows:?}");
    for r in &rows {
        assert_eq!(r["reachable"], true, "{r}");
        assert_eq!(r["version"], env!("CARGO_PKG_VERSION"), "{r}");
        assert!(r["term"].as_u64().unwrap() >= 1, "{r}");
        assert!(r["lag"].is_u64(), "{r}");
        assert!(r["applied_index"].as_u64().unwrap() >= 1, "{r}");
    }
    let (ok, table, err) = raftkv_at(&follower, &["status"]);
    assert!(ok, "{err}");
    assert!(table.starts_with("NAME"), "{table}");
    for name in ["a", "b", "c"] {
        assert!(table.lines().any(|l| l.starts_with(name)), "{table}");
    }
    assert!(table.contains("leader"), "{table}");

    // A member added before it starts, held a learner, then promoted.
    let mut d = Node::new(root.path(), "d");
    let peer_url = format!("http://{}", d.peer);
    let added = raftkv_json(
        &follower,
        &["member", "add", "d", "--peer-url", &peer_url, "--learner"],
    );
    assert_eq!(added["learner"], true, "{added}");
    let again = raftkv_at(
        &follower,
        &["member", "add", "d", "--peer-url", &peer_url, "--json"],
    );
    assert!(!again.0 && again.1.contains("exists already"), "{again:?}");
    d.start(&["--join".to_string(), follower.clone()]);
    eventually("d to catch up as a learner", || async {
        let rows = status_rows(&follower);
        let d = rows.iter().find(|r| r["name"] == "d")?;
        (d["role"] == "learner" && d["lag"] == 0).then_some(())
    })
    .await;
    eventually("d to be promoted", || async {
        raftkv_at(&follower, &["member", "promote", "d"])
            .0
            .then_some(())
    })
    .await;
    let list = raftkv_json(&follower, &["member", "list"]);
    let d_member = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "d")
        .cloned()
        .unwrap();
    assert_eq!(d_member["role"], "voter", "{list}");
    assert_eq!(d_member["client_url"], d.url(), "{list}");

    // Leadership to d, then (no --to) to the most caught-up other voter.
    let moved = raftkv_json(&follower, &["leader", "transfer", "--to", "d"]);
    assert_eq!(moved["leader"], "d", "{moved}");
    assert_eq!(row(&status_rows(&follower), "d")["role"], "leader");
    let (ok, out, err) = raftkv_at(&follower, &["leader", "transfer"]);
    assert!(ok && out.contains("is the leader now"), "{out}{err}");
    assert_ne!(row(&status_rows(&follower), "d")["role"], "leader");

    let removed = raftkv_json(&follower, &["member", "remove", "d"]);
    assert_eq!(removed["removed"], "d", "{removed}");
    eventually("d to leave the table", || async {
        let rows = status_rows(&follower);
        (rows.len() == 3 && rows.iter().all(|r| r["name"] != "d")).then_some(())
    })
    .await;

    // Under --json, errors are JSON too.
    for args in [
        &["leader", "transfer", "--to", "nosuch", "--json"][..],
        &["member", "promote", "a", "--json"][..],
    ] {
        let (ok, out, _) = raftkv_at(&follower, args);
        assert!(!ok, "{args:?}: {out}");
        let error: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{out}"
        );
    }
    let (_, out, _) = raftkv_at(
        &follower,
        &["leader", "transfer", "--to", "nosuch", "--json"],
    );
    assert!(out.contains("no member named `nosuch`"), "{out}");

    // Without a quorum a member is alive but not ready, and says why.
    let survivor = urls[0].clone();
    for node in nodes.iter_mut().skip(1) {
        node.kill();
    }
    assert_eq!(probe(&format!("{survivor}/health")).await.0, 200);
    eventually("the survivor to say it is not ready", || async {
        let (code, body) = probe(&format!("{survivor}/ready")).await;
        (code == 503 && body["reason"].as_str()?.contains("no leader")).then_some(())
    })
    .await;
}

/// The value of a sample, whatever its type.
fn sample_value(value: &prometheus_parse::Value) -> f64 {
    use prometheus_parse::Value::*;
    match value {
        Counter(v) | Gauge(v) | Untyped(v) => *v,
        Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Summary(quantiles) => quantiles.len() as f64,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_parse_as_prometheus_text_with_latency_histograms() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, urls) = started_cluster(root.path(), &["a", "b", "c"]);
    let leader = wait_for_leader(&urls).await;
    for i in 0..5 {
        put_ok(&urls[leader], &format!("metric-{i}"), "v").await;
    }
    get_raw(&urls[leader], "metric-0", "linearizable")
        .await
        .unwrap();
    let response = http()
        .get(format!("{}/metrics", urls[leader]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines)
        .unwrap_or_else(|e| panic!("the scrape does not parse: {e}\n{text}"));
    let value = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| sample_value(&s.value))
            .next()
            .unwrap_or_else(|| panic!("no sample {name} {label:?} in\n{text}"))
    };
    assert!(value("raftkv_wal_fsync_seconds", None) >= 1.0, "{text}");
    assert!(value("raftkv_apply_seconds", None) >= 1.0, "{text}");
    assert!(
        value("raftkv_request_seconds", Some(("op", "put"))) >= 5.0,
        "{text}"
    );
    assert!(
        value("raftkv_request_seconds", Some(("op", "range_linearizable"))) >= 1.0,
        "{text}"
    );
    assert_eq!(value("raftkv_keys", None), 5.0, "{text}");
    // Five keys `metric-N` (8 bytes) with the value `v`.
    assert_eq!(value("raftkv_live_bytes", None), 45.0, "{text}");
    assert!(value("raftkv_leader_changes_total", None) >= 1.0, "{text}");
    assert_eq!(value("raftkv_proposals_failed_total", None), 0.0, "{text}");
    assert_eq!(value("raftkv_is_leader", None), 1.0, "{text}");
    assert!(value("raftkv_proposals_total", None) >= 5.0, "{text}");
    // Per peer, on the leader: heartbeat round trips, replication lag, send queues.
    let peers = |name: &str| {
        let mut peers: Vec<&str> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| s.labels.get("peer"))
            .collect();
        peers.sort();
        peers.dedup();
        peers.len()
    };
    for name in [
        "raftkv_peer_round_trip_seconds",
        "raftkv_peer_replication_lag",
        "raftkv_peer_send_queue",
    ] {
        assert_eq!(
            peers(name),
            2,
            "{name} for each of the two peers in\n{text}"
        );
    }
    assert!(
        value("raftkv_peer_round_trip_seconds", None) >= 1.0,
        "{text}"
    );
}
