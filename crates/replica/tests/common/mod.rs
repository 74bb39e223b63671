//! A cluster of replica engines over `MemStorage` whose writes are durable at once and whose
//! messages arrive at once, driven the way both drivers drive the engine: take the output, send
//! the messages, carry out every `Persist` in order and report it, produce the snapshots asked
//! for and compact. Shared by the engine's tests and its benchmark.

#![allow(dead_code)]

use raftkv_raft::{Config, MemStorage, Role};
use raftkv_replica::{Answer, Replica, RequestError, Settings};

/// The replicas, node `i + 1` at index `i`.
pub struct Cluster {
    pub nodes: Vec<Replica<MemStorage>>,
    /// Replies seen so far, by node.
    pub replies: Vec<Vec<(u64, Result<Answer, RequestError>)>>,
}

impl Cluster {
    /// `size` voters, none leading yet.
    pub fn new(size: u64, settings: Settings) -> Cluster {
        let voters: Vec<u64> = (1..=size).collect();
        let nodes = voters
            .iter()
            .map(|&id| {
                Replica::new(
                    &Config::new(id, voters.clone()),
                    MemStorage::new(),
                    settings.clone(),
                    0,
                )
                .expect("a fresh replica starts")
            })
            .collect();
        Cluster {
            nodes,
            replies: (0..size).map(|_| Vec::new()).collect(),
        }
    }

    /// Runs until no replica has output left.
    pub fn run(&mut self) {
        loop {
            let mut messages = Vec::new();
            let mut produced = false;
            for (i, node) in self.nodes.iter_mut().enumerate() {
                let output = node.take_output(0);
                produced |= !output.is_empty();
                messages.extend(output.messages);
                self.replies[i].extend(output.replies);
                for task in output.snapshot_tasks {
                    node.snapshot_written(task.encode());
                }
                for snapshot in output.compact {
                    node.storage_mut().compact(snapshot);
                }
                for write in output.persist {
                    let storage = node.storage_mut();
                    if let Some(snapshot) = write.snapshot {
                        storage.apply_snapshot(snapshot);
                    }
                    if let Some(hs) = write.hard_state {
                        storage.set_hard_state(hs);
                    }
                    storage.append(&write.entries);
                    node.persisted(0, write.seq, None)
                        .expect("a snapshot that restores");
                }
            }
            if !produced {
                return;
            }
            for message in messages {
                let to = (message.to - 1) as usize;
                let _ = self.nodes[to].step(vec![message]);
            }
        }
    }

    /// The leader's id, if one leads.
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .find(|n| n.raft().role() == Role::Leader)
            .map(|n| n.raft().id())
    }
}
