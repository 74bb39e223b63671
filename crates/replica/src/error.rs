//! The engine's errors: why a client request did not succeed ([`RequestError`], which every front
//! end maps to its own statuses), and why the replica cannot go on ([`ReplicaError`]).

use raftkv_raft::{Index, NodeId};

/// Why a client request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// This node cannot serve it; the leader (if known) can.
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// No leader, no quorum, overloaded, or the node is stopping: retry shortly.
    #[error("unavailable: {0}; retry shortly")]
    Unavailable(String),
    /// The request certainly did not take effect (its entry was overwritten by a new leader).
    #[error("the write was not committed (leadership changed); it did not happen, retry it")]
    NotCommitted,
    /// The outcome is unknown: it may or may not have been applied.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The request is over a limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The request is malformed or refused by the store.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the cluster's current state (a membership change that is
    /// already in progress or would remove the last voter): it will not succeed by retrying.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A promotion of a node that is not a learner.
    #[error("node {0:x} is not a learner: only a learner can be promoted")]
    NotALearner(NodeId),
    /// A write refused while the `NOSPACE` alarm is raised (it did not happen).
    #[error(
        "etcdserver: mvcc: database space exceeded (the storage quota is used up: delete keys or \
         compact, then disarm the alarm with `raftkv alarm disarm`)"
    )]
    NoSpace,
    /// A write refused while the `CORRUPT` alarm is raised (it did not happen).
    #[error(
        "etcdserver: corrupt cluster (members' states differ: see `raftkv alarm list`, rebuild \
         the named member from a healthy one, then `raftkv alarm disarm`)"
    )]
    Corrupt,
    /// A promotion of a learner whose log has not caught up with the leader's yet.
    #[error("learner {0:x} has not caught up with the leader's log yet; promote it once it has")]
    LearnerBehind(NodeId),
}

impl From<raftkv_raft::Error> for RequestError {
    fn from(error: raftkv_raft::Error) -> Self {
        use raftkv_raft::Error;
        // Exhaustive on purpose: a new core error must be given its meaning for clients here.
        match error {
            Error::NotLeader { leader } => RequestError::NotLeader { leader },
            Error::Overloaded { .. }
            | Error::TransferInProgress
            | Error::ConfChangeTooEarly
            | Error::TooManyReads { .. }
            | Error::Storage(_) => RequestError::Unavailable(error.to_string()),
            Error::ConfChangeInProgress => RequestError::Conflict(error.to_string()),
            Error::NotAVoter(_)
            | Error::InvalidConfChange(_)
            | Error::SnapshotIndex { .. }
            | Error::InvalidConfig(_)
            | Error::MalformedMessage(_) => RequestError::Invalid(error.to_string()),
        }
    }
}

/// Why the replica cannot go on: the node stops and keeps its data for an operator to look at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// A snapshot (from the leader, or in this node's storage) cannot be turned back into a state.
    #[error(
        "cannot restore the snapshot at index {index}: {reason} \
         (the node stops and keeps its data; check that every node runs the same version)"
    )]
    Restore {
        /// The snapshot's index.
        index: Index,
        /// What is wrong with it.
        reason: String,
    },
    /// The Raft core refused the storage it was started on.
    #[error("cannot start the Raft node: {0}")]
    Start(#[from] raftkv_raft::Error),
}

#[cfg(test)]
mod tests {
    use raftkv_raft::{Error, StorageError};

    use super::*;

    /// Each core error becomes the request error its meaning calls for: retry shortly, give up,
    /// or fix the request.
    /// What a client does about a request error.
    #[derive(Debug, PartialEq)]
    enum Meaning {
        Retry,
        Invalid,
        Conflict,
    }

    fn meaning(error: &RequestError) -> Option<Meaning> {
        match error {
            RequestError::Unavailable(_) => Some(Meaning::Retry),
            RequestError::Invalid(_) => Some(Meaning::Invalid),
            RequestError::Conflict(_) => Some(Meaning::Conflict),
            _ => None,
        }
    }

    #[test]
    fn every_core_error_maps_to_a_deliberate_request_error() {
        use Meaning::{Conflict, Invalid, Retry};
        let table = [
            (
                Error::Overloaded {
                    uncommitted_bytes: 1,
                    limit: 1,
                },
                Retry,
            ),
            (Error::TransferInProgress, Retry),
            (Error::ConfChangeTooEarly, Retry),
            (Error::TooManyReads { limit: 1 }, Retry),
            (
                Error::Storage(StorageError::Compacted {
                    index: 1,
                    first_index: 2,
                }),
                Retry,
            ),
            (Error::ConfChangeInProgress, Conflict),
            (Error::NotAVoter(3), Invalid),
            (Error::InvalidConfChange("no voters left"), Invalid),
            (
                Error::SnapshotIndex {
                    index: 1,
                    reason: "x",
                },
                Invalid,
            ),
            (Error::InvalidConfig("x"), Invalid),
            (Error::MalformedMessage("x"), Invalid),
        ];
        for (error, expected) in table {
            let shown = error.to_string();
            let mapped = RequestError::from(error);
            assert_eq!(
                meaning(&mapped),
                Some(expected),
                "{shown} became {mapped:?}"
            );
            assert!(mapped.to_string().contains(&shown), "{mapped}");
        }
        let leader = RequestError::from(Error::NotLeader { leader: Some(2) });
        assert_eq!(leader, RequestError::NotLeader { leader: Some(2) });
    }
}
