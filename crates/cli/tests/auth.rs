//! Authentication and roles on a real 3-process cluster, set up with `etcdctl` as etcd's
//! documentation does it: a root user, a role with read-write on one prefix, a user with that
//! role, `auth enable`. The user may read, write and watch under its prefix, through any member,
//! and is refused everywhere else; anonymous callers are refused on every data, membership and
//! internal route, over gRPC and over HTTP; root may do everything; `auth disable` opens the
//! cluster again.

mod common;

use std::time::Duration;

use base64::Engine;

use common::etcd::*;
use common::*;

/// `raftkv ARGS --endpoints URL EXTRA`: (success, stdout, stderr).
fn raftkv_at(args: &[&str], url: &str, extra: &[&str]) -> (bool, String, String) {
    raftkv(&[args, &["--endpoints", url], extra].concat())
}

/// An `etcdctl watch` of `args` for a moment: what it printed, to stdout and stderr.
async fn watch_briefly(endpoint: &str, args: &[&str], out: &std::path::Path) -> (String, String) {
    let running = Etcdctl::from_env().spawn(endpoint, args, out);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(running);
    (
        std::fs::read_to_string(out).unwrap_or_default(),
        std::fs::read_to_string(out.with_extension("err")).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_limited_to_a_prefix_is_refused_elsewhere_and_anonymous_callers_everywhere() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, urls) = started_cluster(root.path(), &["u1", "u2", "u3"]);
    let leader = wait_for_leader(&urls).await;
    wait_for_client_urls(&urls).await;
    // Through a follower: every change and every forwarded call must carry the caller along.
    let follower = nodes[(leader + 1) % 3].client.clone();
    let url = urls[(leader + 1) % 3].clone();
    etcdctl(&follower, &["user", "add", "root:rootpw"]);
    etcdctl(&follower, &["role", "add", "app"]);
    etcdctl(
        &follower,
        &[
            "role",
            "grant-permission",
            "app",
            "readwrite",
            "/app/",
            "--prefix=true",
        ],
    );
    etcdctl(
        &follower,
        &[
            "role",
            "grant-permission",
            "app",
            "write",
            "/drop/",
            "--prefix=true",
        ],
    );
    etcdctl(&follower, &["user", "add", "alice:alicepw"]);
    etcdctl(&follower, &["user", "grant-role", "alice", "app"]);
    // While authentication is off, credentials are ignored (over etcd's API too).
    let (ok, _, err) = raftkv_at(
        &["put", "/other", "before"],
        &url,
        &["--etcd", "--user", "alice:alicepw"],
    );
    assert!(ok, "{err}");
    let enabled = etcdctl(&follower, &["auth", "enable"]);
    assert!(enabled.contains("Authentication Enabled"), "{enabled}");

    // Alice under her prefix: writes, reads, and a watch that sees her write.
    let alice = "--user=alice:alicepw";
    let watched = root.path().join("app-watch.out");
    let watch =
        Etcdctl::from_env().spawn(&follower, &[alice, "watch", "/app/", "--prefix"], &watched);
    tokio::time::sleep(Duration::from_millis(500)).await;
    etcdctl(&follower, &[alice, "put", "/app/x", "1"]);
    let value = etcdctl(
        &nodes[(leader + 2) % 3].client,
        &[alice, "get", "/app/x", "--print-value-only"],
    );
    assert_eq!(value.trim(), "1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(watch);
    let seen = std::fs::read_to_string(&watched).unwrap_or_default();
    assert!(seen.contains("/app/x"), "alice's watch saw: {seen}");

    // Elsewhere: writes, reads and watches refused with etcd's words.
    for args in [
        vec![alice, "put", "/other", "x"],
        vec![alice, "get", "/other"],
        vec![alice, "get", "/app", "--prefix"],
        vec![alice, "txn"],
    ] {
        let stdin = "\n\nput /other y\n\n";
        let (ok, out, err) = etcdctl_with(&follower, &args, stdin);
        assert!(
            !ok && err.contains("etcdserver: permission denied"),
            "{args:?}: {out}{err}"
        );
    }
    // Ending a lease deletes its keys: a revoke needs write permission on each, and listing
    // them read permission (etcd's rules).
    let root_user = "--user=root:rootpw";
    let granted = etcdctl_json(
        &follower,
        &[root_user, "lease", "grant", "600", "-w", "json"],
    );
    let lease = granted["ID"].as_i64().expect("a lease id");
    let lease_hex = format!("{lease:x}");
    etcdctl(
        &follower,
        &[
            root_user,
            "put",
            "/other-leased",
            "r",
            &format!("--lease={lease_hex}"),
        ],
    );
    for args in [
        vec![alice, "lease", "revoke", &lease_hex],
        vec![alice, "lease", "timetolive", &lease_hex, "--keys"],
    ] {
        let (ok, out, err) = etcdctl_with(&follower, &args, "");
        assert!(
            !ok && err.contains("etcdserver: permission denied"),
            "{args:?}: {out}{err}"
        );
    }
    let ttl = etcdctl(&follower, &[alice, "lease", "timetolive", &lease_hex]);
    assert!(ttl.contains("remaining"), "without its keys: {ttl}");
    let revoke = http()
        .delete(format!("{url}/v1/lease/{lease}"))
        .header(
            "Authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice:alicepw")
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status().as_u16(), 403, "over HTTP too");
    let kept = etcdctl(
        &follower,
        &[root_user, "get", "/other-leased", "--print-value-only"],
    );
    assert_eq!(kept.trim(), "r", "the lease and its key live on");
    etcdctl(&follower, &[root_user, "lease", "revoke", &lease_hex]);

    let (out, err) = watch_briefly(
        &follower,
        &[alice, "watch", "/other"],
        &root.path().join("w.out"),
    )
    .await;
    assert!(
        err.contains("permission denied"),
        "a watch outside the prefix: {out}{err}"
    );

    // Anonymous: nothing but authentication, over gRPC and over HTTP.
    let (ok, _, err) = etcdctl_with(&follower, &["get", "/app/x"], "");
    assert!(
        !ok && err.contains("etcdserver: user name is empty"),
        "{err}"
    );
    let (ok, _, err) = etcdctl_with(
        &follower,
        &["member", "add", "x", "--peer-urls=http://127.0.0.1:1"],
        "",
    );
    assert!(
        !ok && err.contains("etcdserver: user name is empty"),
        "{err}"
    );
    let (ok, _, err) = etcdctl_with(&follower, &[alice, "member", "remove", "1"], "");
    assert!(
        !ok && err.contains("etcdserver: permission denied"),
        "{err}"
    );
    let (ok, _, err) = raftkv_at(&["get", "/app/x"], &url, &[]);
    assert!(!ok && err.contains("user name is empty"), "{err}");
    let (ok, _, err) = raftkv_at(&["member", "remove", "u1"], &url, &[]);
    assert!(!ok && err.contains("user name is empty"), "{err}");
    for (method, path) in [
        ("POST", "/v1/internal/publish"),
        ("GET", "/v1/internal/hash"),
        ("POST", "/v1/members/x"),
        ("POST", "/v1/leader/transfer"),
        ("DELETE", "/v1/alarms"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let answer = http()
            .request(method, format!("{url}{path}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 401, "anonymous {path}");
    }
    let join = serde_json::json!({
        "name": "intruder",
        "peer_url": "http://127.0.0.1:1",
        "client_url": "http://127.0.0.1:2",
    });
    let answer = http()
        .post(format!("{url}/v1/members"))
        .json(&join)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status().as_u16(),
        401,
        "an anonymous join of a member nobody added"
    );

    // etcd's JSON gateway: a token from `Authenticate`, in the `Authorization` header; the same
    // token works on raftkv's own API as a bearer token.
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let login = serde_json::json!({"name": "alice", "password": "alicepw"});
    let answer: serde_json::Value = http()
        .post(format!("{url}/v3/auth/authenticate"))
        .json(&login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = answer["token"].as_str().expect("a token").to_string();
    for (key, expected) in [("/app/gw", 200), ("/other", 403)] {
        let put = serde_json::json!({"key": b64(key), "value": b64("v")});
        let answer = http()
            .post(format!("{url}/v3/kv/put"))
            .header("Authorization", &token)
            .json(&put)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap();
        assert_eq!(status, expected, "gateway put {key}: {body}");
    }
    let answer = http()
        .get(format!("{url}/v1/kv/%2Fapp%2Fgw?raw"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.text().await.unwrap(), "v");
    // Consul's clients carry the token in their own header, or in the query.
    let urlencode =
        |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let consul_header = http()
        .get(format!("{url}/v1/kv/%2Fapp%2Fgw?raw"))
        .header("X-Consul-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(consul_header.status().as_u16(), 200);
    let in_query = format!("{url}/v1/kv/%2Fother?token={}", urlencode(&token));
    let refused = http().get(in_query).send().await.unwrap();
    assert_eq!(
        refused.status().as_u16(),
        403,
        "alice's token, outside her prefix"
    );
    let in_query = format!("{url}/v1/kv/%2Fapp%2Fgw?raw&token={}", urlencode(&token));
    let answer = http().get(in_query).send().await.unwrap();
    assert_eq!(answer.text().await.unwrap(), "v");
    let written = http()
        .put(format!("{url}/v1/kv/%2Fapp%2Fconsul"))
        .header("X-Consul-Token", &token)
        .body("c")
        .send()
        .await
        .unwrap();
    let status = written.status().as_u16();
    let body = written.text().await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "true"),
        "a write forwarded to the leader keeps the token"
    );
    let anonymous = http()
        .get(format!("{url}/v1/kv/%2Fapp%2Fgw?raw&token="))
        .header("X-Consul-Token", "")
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status().as_u16(),
        403,
        "an empty token is no token (and Consul's endpoints refuse with a 403)"
    );
    let body = anonymous.text().await.unwrap();
    assert!(body.contains("user name is empty"), "{body}");
    // Consul's transactions are checked key by key.
    for (key, expected) in [("/app/txn", 200), ("/other", 403)] {
        let txn = serde_json::json!([{"KV": {"Verb": "set", "Key": key, "Value": b64("t")}}]);
        let answer = http()
            .put(format!("{url}/v1/txn"))
            .header("Authorization", format!("Bearer {token}"))
            .json(&txn)
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status().as_u16(),
            expected,
            "a transaction setting {key}"
        );
    }
    // A write to a key the caller may not read answers without its entry (as Consul filters).
    let txn = serde_json::json!([{"KV": {"Verb": "set", "Key": "/drop/x", "Value": b64("t")}}]);
    let answer: serde_json::Value = http()
        .put(format!("{url}/v1/txn"))
        .header("Authorization", format!("Bearer {token}"))
        .json(&txn)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["Results"], serde_json::json!([]), "{answer}");
    // Ending a session releases its locks: only a caller that may write them may end it.
    let root_auth = format!("Basic {}", b64("root:rootpw"));
    let created: serde_json::Value = http()
        .put(format!("{url}/v1/session/create"))
        .header("Authorization", &root_auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = created["ID"].as_str().expect("a session id").to_string();
    let acquired = http()
        .put(format!("{url}/v1/kv/%2Fother-lock?acquire={session}"))
        .header("Authorization", &root_auth)
        .send()
        .await
        .unwrap();
    assert_eq!(acquired.text().await.unwrap(), "true");
    let destroyed = http()
        .put(format!("{url}/v1/session/destroy/{session}"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        destroyed.status().as_u16(),
        403,
        "alice may not release root's lock"
    );
    let answer = http()
        .get(format!("{url}/v1/kv/%2Fapp%2Fgw?raw"))
        .header("Authorization", "Bearer not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status().as_u16(),
        403,
        "a forged token, on Consul's endpoint: Consul's 403"
    );
    let answer = http()
        .post(format!("{url}/v1/lease?ttl=10"))
        .header("Authorization", "Bearer not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401, "a forged token elsewhere");

    // Over HTTP with a password: alice's prefix only; root everything.
    let (ok, out, err) = raftkv_at(&["get", "/app/x"], &url, &["--user", "alice:alicepw"]);
    assert!(ok && out.trim() == "1", "{out}{err}");
    let (ok, _, err) = raftkv_at(&["put", "/other", "x"], &url, &["--user", "alice:alicepw"]);
    assert!(!ok && err.contains("permission denied"), "{err}");
    // Over etcd's API (--etcd): the password is exchanged for a token first.
    let etcd_alice = ["--etcd", "--user", "alice:alicepw"];
    let (ok, out, err) = raftkv_at(&["get", "/app/x"], &url, &etcd_alice);
    assert!(ok && out.trim() == "1", "{out}{err}");
    let (ok, _, err) = raftkv_at(&["put", "/other", "x"], &url, &etcd_alice);
    assert!(
        !ok && err.contains("etcdserver: permission denied"),
        "{err}"
    );
    let wrong = ["--etcd", "--user", "alice:wrong"];
    let (ok, _, err) = raftkv_at(&["get", "/app/x"], &url, &wrong);
    assert!(!ok && err.contains("authentication failed"), "{err}");
    let (ok, out, err) = raftkv_at(&["member", "list"], &url, &["--user", "root:rootpw"]);
    assert!(ok && out.contains("u1"), "{out}{err}");
    let listed = etcdctl(&follower, &["--user=root:rootpw", "member", "list"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");

    // The members still talk to each other (forwarding, publishing, corruption checks), so the
    // cluster keeps serving; and once root disables auth, anyone may again.
    etcdctl(&follower, &["--user=root:rootpw", "put", "/root-key", "r"]);
    etcdctl(&follower, &["--user=root:rootpw", "auth", "disable"]);
    assert_eq!(
        etcdctl(&follower, &["get", "/root-key", "--print-value-only"]).trim(),
        "r"
    );
}
