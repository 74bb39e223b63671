//! etcd's membership commands through `etcdctl` against a real 3-process cluster: `member add
//! --learner` of an unstarted member, the node started with `raftkv serve --join` taking it
//! over, held a learner until `member promote`, then `member remove`; and their errors, as etcd
//! words them. Every command goes to a follower (the change is forwarded to the leader).

mod common;

use common::etcd::*;
use common::*;
use serde_json::Value;

/// The member `id` as `etcdctl member list -w json` shows it, if listed.
fn listed(endpoint: &str, id: u64) -> Option<Value> {
    let list = etcdctl_json(endpoint, &["member", "list"]);
    list["members"]
        .as_array()?
        .iter()
        .find(|m| m["ID"].as_u64() == Some(id))
        .cloned()
}

/// The error line `etcdctl args` fails with.
fn failure(endpoint: &str, args: &[&str]) -> String {
    let (ok, out, err) = etcdctl_with(endpoint, args, "");
    assert!(!ok, "etcdctl {args:?} succeeded: {out}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_member_add_learner_join_promote_and_remove() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let follower = endpoints[(leader + 1) % 3].clone();
    let mut d = Node::new(root.path(), "d");
    let peer_url = format!("http://{}", d.peer);
    let peer_flag = format!("--peer-urls={peer_url}");

    let added = etcdctl(&follower, &["member", "add", "d", &peer_flag, "--learner"]);
    let hex = added.split_whitespace().nth(1).unwrap().to_string();
    let id = u64::from_str_radix(&hex, 16).unwrap();
    // etcdctl prints ids with Go's `%16x`: padded with spaces to 16 characters.
    let printed = format!("{id:16x}");
    assert!(
        added.starts_with(&format!("Member {printed} added to cluster ")),
        "{added}"
    );
    assert!(added.contains("ETCD_NAME=\"d\""), "{added}");
    assert!(added.contains(&format!("d={peer_url}")), "{added}");
    let unstarted = listed(&follower, id).unwrap();
    assert_eq!(unstarted["peerURLs"], serde_json::json!([peer_url]));
    assert_eq!(unstarted["isLearner"], true);
    assert!(unstarted.get("name").is_none(), "{unstarted}");
    assert!(unstarted.get("clientURLs").is_none(), "{unstarted}");

    let again = failure(&follower, &["member", "add", "d2", &peer_flag]);
    assert!(
        again.contains("etcdserver: Peer URLs already exists"),
        "{again}"
    );
    let early = failure(&follower, &["member", "promote", &hex]);
    assert!(
        early
            .contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{early}"
    );

    d.start(&["--join".to_string(), format!("http://{follower}")]);
    eventually("d to publish its name and client URL", || async {
        let member = listed(&follower, id)?;
        (member["name"] == "d").then_some(())
    })
    .await;
    etcdctl(&endpoints[leader], &["put", "after-join", "1"]);
    eventually("d to catch up", || async {
        let (ok, out, _) = etcdctl_with(
            &d.client,
            &["get", "after-join", "--consistency=s", "--print-value-only"],
            "",
        );
        (ok && out.trim() == "1").then_some(())
    })
    .await;
    // Caught up, yet held: a learner added as one stays one until promoted.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let held = listed(&follower, id).unwrap();
    assert_eq!(held["isLearner"], true, "{held}");
    assert_eq!(held["clientURLs"], serde_json::json!([d.url()]));

    let promoted = etcdctl(&follower, &["member", "promote", &hex]);
    assert!(
        promoted.starts_with(&format!("Member {printed} promoted in cluster ")),
        "{promoted}"
    );
    let voter = listed(&follower, id).unwrap();
    assert!(voter.get("isLearner").is_none(), "{voter}");
    let twice = failure(&follower, &["member", "promote", &hex]);
    assert!(
        twice.contains("etcdserver: can only promote a learner member"),
        "{twice}"
    );

    let removed = etcdctl(&follower, &["member", "remove", &hex]);
    assert!(
        removed.starts_with(&format!("Member {printed} removed from cluster ")),
        "{removed}"
    );
    assert!(listed(&follower, id).is_none());
    let gone = failure(&follower, &["member", "remove", &hex]);
    assert!(gone.contains("etcdserver: member not found"), "{gone}");
    let unknown = failure(&follower, &["member", "promote", "1234"]);
    assert!(
        unknown.contains("etcdserver: member not found"),
        "{unknown}"
    );
}
