//! etcd's JSON gateway on real processes: plain HTTP requests to each `/v3/...` endpoint, answers
//! checked field by field in the gateway's form (proto field names, base64 bytes, 64-bit
//! integers as strings).

mod common;

use base64::Engine;
use common::*;
use serde_json::{Value, json};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `POST {url}{path}` with `body`; the status and JSON answer.
async fn call(url: &str, path: &str, body: Value) -> (u16, Value) {
    let response = http()
        .post(format!("{url}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn ok(url: &str, path: &str, body: Value) -> Value {
    let (status, answer) = call(url, path, body).await;
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn every_gateway_endpoint_answers_in_the_gateways_json() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, urls) = started_cluster(root.path(), &["g1", "g2", "g3"]);
    let leader = wait_for_leader(&urls).await;
    wait_for_client_urls(&urls).await;
    let url = &urls[(leader + 1) % 3]; // a follower: writes are forwarded

    let put = ok(
        url,
        "/v3/kv/put",
        json!({ "key": b64("g/a"), "value": b64("1") }),
    )
    .await;
    let revision = put["header"]["revision"].as_str().unwrap().to_string();
    assert!(put["header"]["member_id"].is_string(), "{put}");
    let range = ok(url, "/v3/kv/range", json!({ "key": b64("g/a") })).await;
    assert_eq!(range["count"], "1");
    let kv = &range["kvs"][0];
    assert_eq!(
        (
            kv["key"].clone(),
            kv["value"].clone(),
            kv["version"].clone()
        ),
        (json!(b64("g/a")), json!(b64("1")), json!("1"))
    );
    assert_eq!(kv["mod_revision"], json!(revision));
    assert_eq!(kv["create_revision"], json!(revision));

    let txn = ok(
        url,
        "/v3/kv/txn",
        json!({
            "compare": [{ "key": b64("g/a"), "target": "VALUE", "result": "EQUAL", "value": b64("1") }],
            "success": [{ "request_put": { "key": b64("g/b"), "value": b64("2") } }],
        }),
    )
    .await;
    assert_eq!(txn["succeeded"], true, "{txn}");
    assert!(txn["responses"][0]["response_put"].is_object(), "{txn}");

    let deleted = ok(
        url,
        "/v3/kv/deleterange",
        json!({ "key": b64("g/b"), "prev_kv": true }),
    )
    .await;
    assert_eq!(deleted["deleted"], "1");
    assert_eq!(deleted["prev_kvs"][0]["value"], b64("2"));
    ok(url, "/v3/kv/compaction", json!({ "revision": revision })).await;

    let grant = ok(url, "/v3/lease/grant", json!({ "TTL": "30" })).await;
    assert_eq!(grant["TTL"], "30", "{grant}");
    let id = grant["ID"].as_str().unwrap().to_string();
    let kept = ok(url, "/v3/lease/keepalive", json!({ "ID": id })).await;
    assert_eq!(kept["result"]["TTL"], "30", "{kept}");
    assert_eq!(kept["result"]["ID"], json!(id));
    ok(
        url,
        "/v3/kv/put",
        json!({ "key": b64("g/l"), "value": b64("x"), "lease": id }),
    )
    .await;
    let ttl = ok(
        url,
        "/v3/lease/timetolive",
        json!({ "ID": id, "keys": true }),
    )
    .await;
    assert_eq!(ttl["grantedTTL"], "30", "{ttl}");
    assert_eq!(ttl["keys"], json!([b64("g/l")]));
    let leases = ok(url, "/v3/lease/leases", json!({})).await;
    assert_eq!(leases["leases"], json!([{ "ID": id }]));
    ok(url, "/v3/lease/revoke", json!({ "ID": id })).await;

    let members = ok(url, "/v3/cluster/member/list", json!({})).await;
    let mut names: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["g1", "g2", "g3"]);
    let status = ok(url, "/v3/maintenance/status", json!({})).await;
    assert_eq!(status["version"], "3.5.0");
    assert!(status["leader"].is_string(), "{status}");

    let version: Value = http()
        .get(format!("{url}/version"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        version,
        json!({ "etcdserver": "3.5.0", "etcdcluster": "3.5.0" })
    );

    // Errors: etcd's message and gRPC code, with grpc-gateway's HTTP status.
    let (code, error) = call(url, "/v3/kv/put", json!({ "key": "", "value": b64("x") })).await;
    assert_eq!(code, 400);
    assert_eq!(error["error"], "etcdserver: key is not provided");
    assert_eq!(error["code"], 3);
    let (code, error) = call(url, "/v3/lease/revoke", json!({ "ID": id })).await;
    assert_eq!((code, error["code"].clone()), (404, json!(5)), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_watch_streams_result_lines() {
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "gw");
    node.start(&[]);
    let url = node.url();
    wait_for_leader(std::slice::from_ref(&url)).await;
    ok(
        &url,
        "/v3/kv/put",
        json!({ "key": b64("w/1"), "value": b64("a") }),
    )
    .await;
    let stream = reqwest::Client::new()
        .post(format!("{url}/v3/watch"))
        .json(&json!({ "create_request": { "key": b64("w/"), "range_end": b64("w0"), "start_revision": "1" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    ok(
        &url,
        "/v3/kv/put",
        json!({ "key": b64("w/2"), "value": b64("b") }),
    )
    .await;
    let mut lines: Vec<Value> = Vec::new();
    let mut stream = JsonLines::new(stream);
    while lines.len() < 2
        || lines
            .iter()
            .map(|l| l["result"]["events"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
            < 2
    {
        lines.push(stream.next().await);
    }
    assert_eq!(lines[0]["result"]["created"], true, "{lines:?}");
    let events: Vec<Value> = lines
        .iter()
        .flat_map(|l| {
            l["result"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(events[0]["kv"]["key"], b64("w/1"));
    assert_eq!(events[1]["kv"]["key"], b64("w/2"));
    assert!(
        events[0].get("type").is_none(),
        "PUT is the default and left out, as etcd"
    );
}
