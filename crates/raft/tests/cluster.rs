//! Whole clusters in memory: one leader, many proposals, the same entries applied in the same
//! order everywhere (State Machine Safety on the happy path).

mod common;

use bytes::Bytes;
use common::Cluster;

fn replicate_many(ids: &[u64], proposals: usize) {
    let mut c = Cluster::new(ids);
    c.campaign(1);
    assert_eq!(c.leaders(), vec![1], "exactly one leader");
    let mut next = 0;
    while next < proposals {
        // Propose in batches, as a server would between two Ready rounds.
        for _ in 0..100.min(proposals - next) {
            c.node_mut(1)
                .propose(Bytes::from(format!("cmd-{next}")))
                .unwrap();
            next += 1;
        }
        c.stabilize();
    }
    c.tick_all(1); // a heartbeat carries the final commit index to everyone
    let reference: Vec<_> = c.applied[&1]
        .iter()
        .map(|e| (e.index, e.term, e.data.clone()))
        .collect();
    let commands = reference.iter().filter(|(_, _, d)| !d.is_empty()).count();
    assert_eq!(commands, proposals);
    for id in ids {
        let applied: Vec<_> = c.applied[id]
            .iter()
            .map(|e| (e.index, e.term, e.data.clone()))
            .collect();
        assert_eq!(applied, reference, "node {id} applied a different sequence");
    }
    assert_eq!(c.leaders(), vec![1]);
}

#[test]
fn three_nodes_replicate_and_apply_10000_proposals_in_order() {
    replicate_many(&[1, 2, 3], 10_000);
}

#[test]
fn five_nodes_replicate_and_apply_10000_proposals_in_order() {
    replicate_many(&[1, 2, 3, 4, 5], 10_000);
}

#[test]
fn single_node_cluster_commits_alone() {
    let mut c = Cluster::new(&[1]);
    c.campaign(1);
    c.node_mut(1).propose(Bytes::from_static(b"solo")).unwrap();
    c.stabilize();
    assert_eq!(c.applied[&1].last().unwrap().data, "solo");
}
