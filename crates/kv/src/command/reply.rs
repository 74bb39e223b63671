//! What applying a command answers: [`Response`] (the store revision and a [`Reply`] or a
//! [`KvError`]) and the per-operation replies, as prost messages so the server can send them and
//! sessions can keep them.

use bytes::Bytes;

use crate::{ClientId, KvError, LeaseId, Revision};

/// A key's state at some revision.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct KeyValue {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// Revision of the put that created the key (its current generation); 0 in a delete event.
    #[prost(int64, tag = "2")]
    pub create_revision: Revision,
    /// Revision of the last change to the key.
    #[prost(int64, tag = "3")]
    pub mod_revision: Revision,
    /// Number of puts since the key was created (1 on creation); 0 in a delete event.
    #[prost(int64, tag = "4")]
    pub version: i64,
    /// The value (empty in keys-only reads and delete events).
    #[prost(bytes = "bytes", tag = "5")]
    pub value: Bytes,
    /// The lease the key is attached to (0: none).
    #[prost(int64, tag = "6")]
    pub lease: LeaseId,
    /// Consul's `Flags` of this version (0 unless a put set them).
    #[prost(uint64, tag = "7")]
    pub flags: u64,
    /// Consul's `LockIndex`: how many times a lock session acquired the key (this generation).
    #[prost(uint64, tag = "8")]
    pub lock_index: u64,
    /// Consul's `Session`: the lock session holding the key (0: none).
    #[prost(uint64, tag = "9")]
    pub session: u64,
}

/// Answer to a [`super::RangeRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RangeResponse {
    /// Matching keys in key order, at most `limit` (none when `count_only`).
    #[prost(message, repeated, tag = "1")]
    pub kvs: Vec<KeyValue>,
    /// Whether more keys matched than were returned.
    #[prost(bool, tag = "2")]
    pub more: bool,
    /// Number of matching keys (all of them, regardless of `limit`).
    #[prost(uint64, tag = "3")]
    pub count: u64,
    /// The store revision when the read was served.
    #[prost(int64, tag = "4")]
    pub revision: Revision,
}

/// Answer to a [`super::PutRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PutResponse {
    /// The previous key-value, when asked for and the key existed.
    #[prost(message, optional, tag = "1")]
    pub prev_kv: Option<KeyValue>,
}

/// Answer to a [`super::DeleteRangeRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DeleteRangeResponse {
    /// Number of keys deleted.
    #[prost(uint64, tag = "1")]
    pub deleted: u64,
    /// The deleted key-values, when asked for.
    #[prost(message, repeated, tag = "2")]
    pub prev_kvs: Vec<KeyValue>,
}

/// The answer to one operation of a transaction branch.
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum TxnOpResponse {
    /// Answer to a range.
    #[prost(message, tag = "1")]
    Range(RangeResponse),
    /// Answer to a put.
    #[prost(message, tag = "2")]
    Put(PutResponse),
    /// Answer to a delete.
    #[prost(message, tag = "3")]
    DeleteRange(DeleteRangeResponse),
    /// Answer to a nested transaction.
    #[prost(message, tag = "4")]
    Txn(TxnResponse),
    /// Answer to a lock acquisition or release (always a success: a refused one fails the
    /// transaction).
    #[prost(message, tag = "5")]
    Lock(LockResponse),
}

/// A [`TxnOpResponse`] in a message.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ResponseOp {
    /// The answer (always present in answers made by the store).
    #[prost(oneof = "TxnOpResponse", tags = "1, 2, 3, 4, 5")]
    pub op: Option<TxnOpResponse>,
}

/// Answer to a [`super::TxnRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TxnResponse {
    /// Whether all compares held (so `success` ran).
    #[prost(bool, tag = "1")]
    pub succeeded: bool,
    /// One answer per operation of the branch that ran, in order.
    #[prost(message, repeated, tag = "2")]
    pub responses: Vec<ResponseOp>,
}

/// Answer to a [`super::CompactRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CompactResponse {}

/// Answer to a [`super::LeaseGrantRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseGrantResponse {
    /// The lease id (the one asked for, or the one the store picked).
    #[prost(int64, tag = "1")]
    pub id: LeaseId,
    /// The TTL, in milliseconds.
    #[prost(uint64, tag = "2")]
    pub ttl_ms: u64,
}

/// Answer to a [`super::LeaseRevokeRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseRevokeResponse {
    /// Number of keys deleted with the lease.
    #[prost(uint64, tag = "1")]
    pub deleted: u64,
}

/// Answer to a [`super::LeaseExpireRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseExpireResponse {
    /// The leases revoked (those of the request that still existed), in request order.
    #[prost(int64, repeated, tag = "1")]
    pub revoked: Vec<LeaseId>,
    /// Number of keys deleted with them.
    #[prost(uint64, tag = "2")]
    pub deleted: u64,
}

/// Answer to a [`super::SessionOpenRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SessionOpenResponse {
    /// The new session's client id, to put in the header of the client's writes.
    #[prost(uint64, tag = "1")]
    pub client_id: ClientId,
}

/// Answer to a [`super::SessionExpireRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SessionExpireResponse {}

/// Answer to an empty payload (a Raft no-op entry).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NoopResponse {}

/// The successful answer to a command, one variant per [`super::Op`].
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum Reply {
    /// An empty payload.
    #[prost(message, tag = "2")]
    Noop(NoopResponse),
    /// A put.
    #[prost(message, tag = "3")]
    Put(PutResponse),
    /// A delete.
    #[prost(message, tag = "4")]
    DeleteRange(DeleteRangeResponse),
    /// A transaction.
    #[prost(message, tag = "5")]
    Txn(TxnResponse),
    /// A compaction.
    #[prost(message, tag = "6")]
    Compact(CompactResponse),
    /// A lease grant.
    #[prost(message, tag = "7")]
    LeaseGrant(LeaseGrantResponse),
    /// A lease revoke.
    #[prost(message, tag = "8")]
    LeaseRevoke(LeaseRevokeResponse),
    /// A session open.
    #[prost(message, tag = "9")]
    SessionOpen(SessionOpenResponse),
    /// A session expiry.
    #[prost(message, tag = "10")]
    SessionExpire(SessionExpireResponse),
    /// A batch of expired leases revoked (tag 11 is the wire response's error).
    #[prost(message, tag = "12")]
    LeaseExpire(LeaseExpireResponse),
    /// A lock session created.
    #[prost(message, tag = "13")]
    LockSessionCreate(LockSessionCreateResponse),
    /// A lock session ended.
    #[prost(message, tag = "14")]
    LockSessionDestroy(LockSessionDestroyResponse),
    /// A key acquired or released (or not).
    #[prost(message, tag = "15")]
    Lock(LockResponse),
}

/// Answer to a [`super::LockSessionCreateRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LockSessionCreateResponse {
    /// The session's id (the log index of its creation).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The lease that keeps it alive (0: it has no TTL).
    #[prost(int64, tag = "2")]
    pub lease: LeaseId,
}

/// Answer to a [`super::LockSessionDestroyRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LockSessionDestroyResponse {
    /// Keys released or deleted.
    #[prost(uint64, tag = "1")]
    pub ended: u64,
}

/// Answer to a [`super::LockRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LockResponse {
    /// Whether the key was acquired (released): false when another session holds it (when the
    /// session does not hold it).
    #[prost(bool, tag = "1")]
    pub succeeded: bool,
    /// The key as written, without its value (when it succeeded).
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
}

/// The answer to one applied log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The store revision after the command (unchanged by reads and failed commands). A retried
    /// write answered from its session carries the revision of its first application.
    pub revision: Revision,
    /// What the command answered, or why it failed (a failed command changed nothing).
    pub result: Result<Reply, KvError>,
}

impl Response {
    /// A successful answer.
    pub fn ok(revision: Revision, reply: Reply) -> Self {
        Response {
            revision,
            result: Ok(reply),
        }
    }

    /// A failed answer.
    pub fn error(revision: Revision, error: KvError) -> Self {
        Response {
            revision,
            result: Err(error),
        }
    }
}
