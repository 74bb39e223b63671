//! Errors as etcd's clients expect them: etcd's gRPC status codes and messages (its `rpctypes`),
//! which clients match on ("etcdserver: requested lease not found", ...). Where raftkv has a
//! limit etcd lacks, the code is the nearest etcd uses and the message raftkv's own.

use raftkv_kv::KvError;
use tonic::{Code, Status};

use crate::error::RequestError;

/// etcd's "no leader".
pub const NO_LEADER: &str = "etcdserver: no leader";
/// etcd's "leader changed" (a forwarded request met another change of leader).
pub const LEADER_CHANGED: &str = "etcdserver: leader changed";

/// A store error as etcd reports it.
pub fn kv(error: KvError) -> Status {
    let message = error.to_string();
    match error {
        KvError::Compacted { .. } => Status::new(
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        KvError::FutureRevision { .. } => Status::new(
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        KvError::EmptyKey => Status::new(Code::InvalidArgument, "etcdserver: key is not provided"),
        KvError::KeyTooLarge { .. }
        | KvError::ValueTooLarge { .. }
        | KvError::RequestTooLarge { .. } => {
            Status::new(Code::InvalidArgument, "etcdserver: request is too large")
        }
        KvError::TooManyOps { .. } => Status::new(
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        ),
        KvError::LeaseNotFound { .. } => {
            Status::new(Code::NotFound, "etcdserver: requested lease not found")
        }
        KvError::KeyNotFound => Status::new(Code::InvalidArgument, "etcdserver: key not found"),
        KvError::ValueProvided => {
            Status::new(Code::InvalidArgument, "etcdserver: value is provided")
        }
        KvError::LeaseProvided => {
            Status::new(Code::InvalidArgument, "etcdserver: lease is provided")
        }
        KvError::LeaseExists { .. } => {
            Status::new(Code::FailedPrecondition, "etcdserver: lease already exists")
        }
        KvError::LeaseLimit { .. }
        | KvError::SessionLimit { .. }
        | KvError::WatchLimit { .. }
        | KvError::RangeTooLarge { .. } => Status::new(Code::ResourceExhausted, message),
        _ => Status::new(Code::InvalidArgument, message),
    }
}

/// A request error as etcd reports it (`NotLeader` only when forwarding was impossible).
pub fn request(error: RequestError) -> Status {
    let message = error.to_string();
    match error {
        RequestError::NotLeader { leader: None } => Status::new(Code::Unavailable, NO_LEADER),
        RequestError::NotLeader { .. } => Status::new(Code::Unavailable, LEADER_CHANGED),
        RequestError::NotCommitted | RequestError::Unknown(_) => {
            Status::new(Code::Unavailable, "etcdserver: request timed out")
        }
        RequestError::Unavailable(_) => Status::new(Code::Unavailable, message),
        RequestError::TooLarge(_) => {
            Status::new(Code::InvalidArgument, "etcdserver: request is too large")
        }
        RequestError::Invalid(_) => Status::new(Code::InvalidArgument, message),
        RequestError::Conflict(_) => Status::new(Code::FailedPrecondition, message),
        RequestError::NotALearner(_) => Status::new(
            Code::FailedPrecondition,
            "etcdserver: can only promote a learner member",
        ),
        RequestError::NoSpace => Status::new(
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded",
        ),
        RequestError::Corrupt => Status::new(Code::DataLoss, "etcdserver: corrupt cluster"),
        RequestError::LearnerBehind(_) => Status::new(
            Code::FailedPrecondition,
            "etcdserver: can only promote a learner member which is in sync with leader",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_clients_match_on_have_etcds_codes_and_messages() {
        let cases = [
            (
                kv(KvError::Compacted {
                    revision: 1,
                    compacted_revision: 2,
                }),
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                kv(KvError::LeaseNotFound { id: 7 }),
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                kv(KvError::TooManyOps {
                    what: "compares".into(),
                    ops: 200,
                    max: 128,
                }),
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                kv(KvError::EmptyKey),
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                kv(KvError::KeyNotFound),
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
            (
                kv(KvError::ValueProvided),
                Code::InvalidArgument,
                "etcdserver: value is provided",
            ),
            (
                kv(KvError::LeaseProvided),
                Code::InvalidArgument,
                "etcdserver: lease is provided",
            ),
            (
                request(RequestError::NotLeader { leader: None }),
                Code::Unavailable,
                "etcdserver: no leader",
            ),
            (
                request(RequestError::NotALearner(1)),
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            (
                request(RequestError::LearnerBehind(1)),
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
        ];
        for (status, code, message) in cases {
            assert_eq!((status.code(), status.message()), (code, message));
        }
    }
}
