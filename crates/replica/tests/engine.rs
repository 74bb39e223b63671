//! The engine's node-loop rules on a one-node replica over `MemStorage`, driven the way both
//! drivers drive it: input, take the output, carry out every `Persist` in order, report it.

mod common;

use bytes::Bytes;
use common::Cluster;
use raftkv_kv::Request;
use raftkv_raft::{Config, MemStorage, ReadMode, Snapshot, SnapshotMetadata, Storage};
use raftkv_replica::{
    Answer, Command, Event, Output, Replica, ReplicaError, RequestError, Settings, SnapshotTask,
};

/// A one-node replica; `persist` writes everything handed to it at once.
struct One {
    engine: Replica<MemStorage>,
    now_ms: u64,
    /// Replies seen so far.
    replies: Vec<(u64, Result<Answer, RequestError>)>,
    /// Snapshot tasks handed out and not yet completed.
    tasks: Vec<SnapshotTask>,
    /// Compactions the engine asked for.
    compacted: Vec<u64>,
    events: Vec<Event>,
}

impl One {
    fn new(settings: Settings) -> One {
        let engine = Replica::new(&Config::new(1, vec![1]), MemStorage::new(), settings, 0)
            .expect("a fresh replica starts");
        let mut one = One {
            engine,
            now_ms: 0,
            replies: Vec::new(),
            tasks: Vec::new(),
            compacted: Vec::new(),
            events: Vec::new(),
        };
        one.run();
        one
    }

    fn run(&mut self) {
        loop {
            let output = self.engine.take_output(self.now_ms);
            if output.is_empty() {
                return;
            }
            let Output {
                persist,
                snapshot_tasks,
                compact,
                replies,
                events,
                ..
            } = output;
            self.replies.extend(replies);
            self.tasks.extend(snapshot_tasks);
            self.events.extend(events);
            for snapshot in compact {
                self.compacted.push(snapshot.metadata.index);
                self.engine.storage_mut().compact(snapshot);
            }
            for write in persist {
                let storage = self.engine.storage_mut();
                if let Some(hs) = write.hard_state {
                    storage.set_hard_state(hs);
                }
                storage.append(&write.entries);
                self.engine
                    .persisted(self.now_ms, write.seq, None)
                    .expect("nothing to restore");
            }
        }
    }

    fn put(&mut self, id: u64, key: &str) {
        let request = Request::put(Bytes::from(key.to_string()), Bytes::from_static(b"v"));
        self.engine
            .propose(id, Command::kv(request.encode_to_vec().into()));
        self.run();
    }

    fn reply(&self, id: u64) -> Option<&Result<Answer, RequestError>> {
        self.replies.iter().find(|(r, _)| *r == id).map(|(_, a)| a)
    }
}

fn settings() -> Settings {
    Settings {
        snapshot_entries: 0,
        history_compact_interval_ticks: 0,
        ..Settings::default()
    }
}

#[test]
fn a_write_is_answered_once_its_entry_is_applied() {
    let mut one = One::new(settings());
    one.put(7, "a");
    let Some(Ok(Answer::Applied { index, term, .. })) = one.reply(7) else {
        panic!("no answer: {:?}", one.replies);
    };
    assert_eq!(one.engine.state().applied(), *index);
    assert_eq!(one.engine.raft().term(), *term);
}

#[test]
fn a_read_is_released_once_its_read_index_is_applied() {
    let mut one = One::new(settings());
    one.put(1, "a");
    one.engine.read(2, ReadMode::ReadIndex);
    one.run();
    let Some(Ok(Answer::Read { applied })) = one.reply(2) else {
        panic!("no answer: {:?}", one.replies);
    };
    assert!(*applied >= 2, "the write before the read is visible");
}

#[test]
fn snapshots_are_produced_by_the_driver_and_compact_only_once_written() {
    let mut one = One::new(Settings {
        snapshot_entries: 5,
        ..settings()
    });
    for id in 0..6 {
        one.put(id, &format!("k{id}"));
    }
    assert_eq!(one.tasks.len(), 1, "one snapshot at a time");
    assert!(
        one.compacted.is_empty(),
        "no compaction before the file is written"
    );
    // The node keeps working while the snapshot is produced.
    one.put(100, "during");
    assert!(matches!(one.reply(100), Some(Ok(Answer::Applied { .. }))));
    let task = one.tasks.remove(0);
    let index = task.metadata.index;
    assert_eq!(task.view.applied(), index);
    one.engine.snapshot_written(task.encode());
    one.run();
    assert_eq!(one.compacted, vec![index]);
    assert_eq!(one.engine.snapshot_index(), index);
    assert_eq!(one.engine.storage().first_index(), index + 1);
}

#[test]
fn a_snapshot_written_after_a_newer_one_is_not_used() {
    let mut one = One::new(Settings {
        snapshot_entries: 3,
        ..settings()
    });
    for id in 0..4 {
        one.put(id, &format!("k{id}"));
    }
    let first = one.tasks.remove(0);
    one.engine
        .snapshot_failed(first.metadata.index, "disk full".into());
    for id in 10..14 {
        one.put(id, &format!("k{id}"));
    }
    let second = one.tasks.remove(0);
    one.engine.snapshot_written(second.encode());
    one.run();
    one.engine.snapshot_written(first.encode());
    one.run();
    assert_eq!(one.compacted, vec![second.metadata.index]);
    assert!(one.events.iter().any(
        |e| matches!(e, Event::SnapshotSkipped { index, .. } if *index == first.metadata.index)
    ));
}

#[test]
fn a_snapshot_that_cannot_be_restored_is_a_typed_fatal_error() {
    let mut storage = MemStorage::new();
    let metadata = SnapshotMetadata {
        index: 9,
        term: 2,
        conf_state: raftkv_raft::ConfState::from_voters([1]),
    };
    storage.apply_snapshot(Snapshot {
        metadata,
        data: Bytes::from_static(b"not a snapshot"),
    });
    let started = Replica::new(&Config::new(1, vec![1]), storage, settings(), 0);
    let Err(error) = started else {
        panic!("a replica started on a snapshot it cannot read");
    };
    assert!(
        matches!(error, ReplicaError::Restore { index: 9, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("index 9"), "{error}");
}

#[test]
fn a_follower_refuses_keep_alives_and_names_no_leader() {
    // Two voters, the other never answers: this node is not the leader.
    let engine = Replica::new(
        &Config::new(1, vec![1, 2]),
        MemStorage::new(),
        settings(),
        0,
    )
    .expect("starts");
    let mut one = One {
        engine,
        now_ms: 0,
        replies: Vec::new(),
        tasks: Vec::new(),
        compacted: Vec::new(),
        events: Vec::new(),
    };
    one.engine.keep_alive(0, 5, 1);
    one.run();
    assert!(
        matches!(
            one.reply(5),
            Some(Err(RequestError::NotLeader { leader: None }))
        ),
        "{:?}",
        one.replies
    );
}

#[test]
fn a_stopping_replica_refuses_writes() {
    let mut one = One::new(settings());
    one.engine.shutdown();
    one.put(3, "late");
    assert!(
        matches!(one.reply(3), Some(Err(RequestError::Unavailable(_)))),
        "{:?}",
        one.replies
    );
    assert!(!one.engine.is_stopped(), "it waits for a transfer first");
    for tick in 1..=10 {
        one.engine.tick(tick * 100);
    }
    assert!(
        one.engine.is_stopped(),
        "a lone voter has no one to hand over to"
    );
}

#[test]
fn committed_entries_are_applied_before_the_persist_that_carries_them_is_reported() {
    let mut one = One::new(settings());
    let request = Request::put(Bytes::from_static(b"k"), Bytes::from_static(b"v"));
    one.engine
        .propose(9, Command::kv(request.encode_to_vec().into()));
    // The entry's own write: durable once reported, and then committed (one voter).
    let output = one.engine.take_output(0);
    assert_eq!(output.persist.len(), 1);
    let write = &output.persist[0];
    one.engine.storage_mut().append(&write.entries);
    one.engine
        .persisted(0, write.seq, None)
        .expect("nothing to restore");
    // The next Ready carries the new commit index to persist and the entry to apply: it is
    // applied and answered now, while that Persist is still under way.
    let output = one.engine.take_output(0);
    assert!(
        output.persist.iter().any(|p| p.hard_state.is_some()),
        "the commit index is still to be persisted"
    );
    assert!(
        output
            .replies
            .iter()
            .any(|(id, r)| *id == 9 && matches!(r, Ok(Answer::Applied { .. }))),
        "{:?}",
        output.replies
    );
    assert_eq!(one.engine.persists_in_flight(), output.persist.len());
}

#[test]
fn a_leader_whose_disk_stalls_hands_leadership_to_an_up_to_date_voter() {
    let mut three = Cluster::new(3, settings());
    three.nodes[0].campaign();
    three.run();
    assert_eq!(three.leader(), Some(1));
    let target = three.nodes[0]
        .disk_stalled()
        .expect("a leader with up-to-date voters hands over");
    three.run();
    assert_eq!(three.leader(), Some(target));
    assert_ne!(target, 1);
    assert_eq!(
        three.nodes[0].disk_stalled(),
        None,
        "a follower has nothing to hand over"
    );
}

#[test]
fn a_snapshot_waits_until_the_log_since_the_last_one_pays_for_it() {
    let mut one = One::new(Settings {
        snapshot_entries: 5,
        snapshot_log_fraction: 1,
        ..settings()
    });
    // A store of 40 keys of 1 KiB, then the first snapshot (nothing to compare it with).
    let big = |id: u64| {
        let value = Bytes::from(vec![b'v'; 1024]);
        Request::put(Bytes::from(format!("big{id}")), value)
    };
    for id in 0..40 {
        one.engine
            .propose(id, Command::kv(big(id).encode_to_vec().into()));
    }
    one.run();
    assert_eq!(one.tasks.len(), 1);
    let task = one.tasks.remove(0);
    let snapshot_bytes = task.encode().data.len();
    assert!(snapshot_bytes > 40 * 1024, "{snapshot_bytes}");
    one.engine.snapshot_written(task.encode());
    one.run();
    // Twenty small puts are well past `snapshot_entries` but far from the snapshot's size.
    for id in 100..120 {
        one.put(id, &format!("k{id}"));
    }
    assert!(one.tasks.is_empty(), "a snapshot asked for too early");
    // Rewriting the big keys applies as many bytes as the snapshot holds: now it is due.
    for id in 0..40 {
        one.engine
            .propose(200 + id, Command::kv(big(id).encode_to_vec().into()));
    }
    one.run();
    assert_eq!(one.tasks.len(), 1, "the snapshot is due");
}
