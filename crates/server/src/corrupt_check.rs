//! The corruption check (etcd's `corrupt-check`): members compare their state hashes at a common
//! index, and a member whose hash differs from the majority's gets a replicated `CORRUPT` alarm,
//! which stops writes until an operator disarms it.
//!
//! Every `corrupt_check_interval` the leader proposes a check point (`Command::hash_check`).
//! Each member applying it takes a view of its state as of that entry and hashes it off the
//! node loop (`State::digest`: the store, the registry, the alarms), keeping the last
//! [`HASH_CHECKPOINTS_KEPT`] hashes ([`Checkpoints`], served at `GET /v1/internal/hash`). The
//! next round, the leader gathers every member's hash at its own latest check point and raises
//! `CORRUPT` for each member outside the majority ([`verdict`]); a member that has not reached
//! that index yet is left for a later round.
//!
//! Invariant: equal replicated states hash equal on every member, so a healthy cluster never
//! raises `CORRUPT`; the hash is of the state *as of* the check point's entry, so members that
//! apply at different paces still compare the same thing.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use raftkv_raft::{Index, NodeId};
use raftkv_replica::state::StateView;
use serde::{Deserialize, Serialize};

/// Check-point hashes a member keeps (the leader compares its latest; older ones cover members
/// that lag by a round or two).
pub const HASH_CHECKPOINTS_KEPT: usize = 8;

/// A member's hash of its state as of a check point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The check point's index.
    pub index: Index,
    /// `State::digest` as of it.
    pub hash: u64,
}

/// This member's latest check-point hashes, oldest first.
#[derive(Debug, Default)]
pub struct Checkpoints(Mutex<VecDeque<Checkpoint>>);

impl Checkpoints {
    /// Records a hash, dropping the oldest past [`HASH_CHECKPOINTS_KEPT`].
    pub fn record(&self, checkpoint: Checkpoint) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.push_back(checkpoint);
        while kept.len() > HASH_CHECKPOINTS_KEPT {
            kept.pop_front();
        }
    }

    /// The kept hashes, oldest first.
    pub fn list(&self) -> Vec<Checkpoint> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().copied().collect()
    }

    /// The latest kept hash.
    pub fn latest(&self) -> Option<Checkpoint> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.back().copied()
    }
}

/// Hashes `view` (the state as of check point `index`) on a thread of its own, as it takes time
/// in proportion to the store, and records it in `checkpoints`. `diverge_file` is fault
/// injection for tests and drills: while it exists, the hash is altered as if this member's state
/// differed.
pub fn hash_in_background(
    index: Index,
    view: StateView,
    checkpoints: Arc<Checkpoints>,
    diverge_file: Option<PathBuf>,
) {
    let spawned = std::thread::Builder::new()
        .name("raftkv-hash".into())
        .spawn(move || {
            let mut hash = view.digest();
            if diverge_file.is_some_and(|file| file.exists()) {
                hash = !hash;
            }
            checkpoints.record(Checkpoint { index, hash });
        });
    if let Err(error) = spawned {
        tracing::warn!(index, %error, "cannot start the state hash of a corruption check");
    }
}

/// The members whose hash at one check point differs from the majority's (each member's hash
/// in `hashes`); with no strict majority, those that differ from `leader`'s hash.
pub fn verdict(hashes: &BTreeMap<NodeId, u64>, leader: NodeId) -> Vec<NodeId> {
    let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
    for hash in hashes.values() {
        *votes.entry(*hash).or_default() += 1;
    }
    let majority = votes
        .iter()
        .find(|&(_, &count)| count * 2 > hashes.len())
        .map(|(&hash, _)| hash)
        .or_else(|| hashes.get(&leader).copied());
    match majority {
        Some(good) => hashes
            .iter()
            .filter(|&(_, &hash)| hash != good)
            .map(|(&id, _)| id)
            .collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_outside_the_majority_is_named_corrupt() {
        let agree: BTreeMap<NodeId, u64> = [(1, 7), (2, 7), (3, 7)].into();
        assert!(verdict(&agree, 1).is_empty());
        let follower: BTreeMap<NodeId, u64> = [(1, 7), (2, 9), (3, 7)].into();
        assert_eq!(verdict(&follower, 1), vec![2]);
        let leader: BTreeMap<NodeId, u64> = [(1, 5), (2, 7), (3, 7)].into();
        assert_eq!(verdict(&leader, 1), vec![1]);
        // Two members: no majority, the leader's hash is taken as the reference.
        let pair: BTreeMap<NodeId, u64> = [(1, 5), (2, 7)].into();
        assert_eq!(verdict(&pair, 1), vec![2]);
    }

    #[test]
    fn only_the_latest_check_points_are_kept() {
        let checkpoints = Checkpoints::default();
        for index in 1..=(HASH_CHECKPOINTS_KEPT as u64 + 3) {
            checkpoints.record(Checkpoint { index, hash: index });
        }
        let kept = checkpoints.list();
        assert_eq!(kept.len(), HASH_CHECKPOINTS_KEPT);
        assert_eq!(kept[0].index, 4);
        assert_eq!(
            checkpoints.latest().map(|c| c.index),
            Some(HASH_CHECKPOINTS_KEPT as u64 + 3)
        );
    }
}
