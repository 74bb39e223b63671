//! Membership on real processes: a node joining as a learner and promoted, validation of
//! membership requests, removal by name and by id.

mod common;

use common::*;

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
    // d either applied its own removal (and is silent), or it went on talking: then the peers
    // cut it off, on a connection it had open as at a new one.
    eventually(
        "d to know it was removed, or a peer to refuse it",
        || async {
            let refused = nodes
                .iter()
                .any(|n| n.log_text().contains("was removed from the cluster"));
            let knows = match status(&d_url).await {
                Some(s) => !s["members"].as_array()?.iter().any(|m| m["name"] == "d"),
                None => false,
            };
            (refused || knows).then_some(())
        },
    )
    .await;
}

/// Membership requests are validated (bounded, well-formed names and URLs, a peer URL something
/// listens on: a clear 400), and a member can always be removed, by its id as well as by its
/// name.
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
        // Well formed, but nothing listens there.
        ("unreachable".to_string(), "http://127.0.0.1:1"),
    ] {
        let response = join(name, peer_url).await.unwrap();
        assert_eq!(response.status().as_u16(), 400);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "bad_request", "{body}");
    }
    // A joining node listens on its peer URL before it asks to join.
    let listening = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_url = format!("http://{}", listening.local_addr().unwrap());
    let response = join("learner".to_string(), &peer_url).await.unwrap();
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
