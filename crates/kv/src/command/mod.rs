//! Commands: what the server proposes to the Raft log ([`Request`]) and what applying one
//! answers ([`Response`]).
//!
//! The encoding is protobuf through prost derives on the hand-written structs of this module (no
//! protoc, no build script), so it is compact, deterministic (fields in tag order) and can grow
//! new optional fields. Every request carries [`Request::version`], which must equal
//! [`COMMAND_VERSION`]: an incompatible change bumps it, and an older node refuses the newer
//! commands with [`KvError::UnsupportedVersion`] instead of misreading them.
//!
//! Invariant: [`Request::decode`] never panics. It accepts exactly the well-formed requests
//! (known version, an operation present in every oneof, known enum values, a sequence number iff
//! a client id) in canonical encoding (what [`Request::encode_to_vec`] produces: no unknown,
//! repeated or default-valued fields), and reports anything else as [`KvError::Malformed`] or
//! [`KvError::UnsupportedVersion`]. So a change to what a command means always needs a new
//! version: older nodes refuse it instead of ignoring fields they do not know. Limits are checked
//! separately by [`Request::validate`], which the server calls before proposing and
//! [`crate::KvStore::apply`] calls again.

mod ops;
mod reply;
pub(crate) mod validate;
pub(crate) mod wire;

use bytes::Bytes;
use prost::Message;

pub use ops::{
    CompactRequest, Compare, CompareOp, CompareTarget, DeleteRangeRequest, LEASE_EXPIRE_IDS_MAX,
    LeaseExpireRequest, LeaseGrantRequest, LeaseRevokeRequest, LockRequest,
    LockSessionCreateRequest, LockSessionDestroyRequest, PutRequest, RangeRequest, RequestOp,
    SessionExpireRequest, SessionOpenRequest, SortOrder, SortTarget, TxnOp, TxnRequest,
};
pub use reply::{
    CompactResponse, DeleteRangeResponse, KeyValue, LeaseExpireResponse, LeaseGrantResponse,
    LeaseRevokeResponse, LockResponse, LockSessionCreateResponse, LockSessionDestroyResponse,
    NoopResponse, PutResponse, RangeResponse, Reply, Response, ResponseOp, SessionExpireResponse,
    SessionOpenResponse, TxnOpResponse, TxnResponse,
};

use crate::{ClientId, KvError, LeaseId, Revision};

/// The command format version this code writes and accepts.
pub const COMMAND_VERSION: u32 = 1;

/// The operation of a [`Request`].
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum Op {
    /// Write one key.
    #[prost(message, tag = "4")]
    Put(PutRequest),
    /// Delete a key, range or prefix.
    #[prost(message, tag = "5")]
    DeleteRange(DeleteRangeRequest),
    /// A transaction (compare, then a branch of operations).
    #[prost(message, tag = "6")]
    Txn(TxnRequest),
    /// Drop history below a revision.
    #[prost(message, tag = "7")]
    Compact(CompactRequest),
    /// Create a lease.
    #[prost(message, tag = "8")]
    LeaseGrant(LeaseGrantRequest),
    /// Revoke a lease, deleting its keys.
    #[prost(message, tag = "9")]
    LeaseRevoke(LeaseRevokeRequest),
    /// Open a client session.
    #[prost(message, tag = "10")]
    SessionOpen(SessionOpenRequest),
    /// Expire a client session.
    #[prost(message, tag = "11")]
    SessionExpire(SessionExpireRequest),
    /// Revoke expired leases, many at once.
    #[prost(message, tag = "12")]
    LeaseExpire(LeaseExpireRequest),
    /// Create a lock session.
    #[prost(message, tag = "13")]
    LockSessionCreate(LockSessionCreateRequest),
    /// End a lock session.
    #[prost(message, tag = "14")]
    LockSessionDestroy(LockSessionDestroyRequest),
    /// Acquire or release a key for a lock session.
    #[prost(message, tag = "15")]
    Lock(LockRequest),
}

impl Op {
    /// The operation's name (as metrics label it).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Put(_) => "put",
            Op::DeleteRange(_) => "delete_range",
            Op::Txn(_) => "txn",
            Op::Compact(_) => "compact",
            Op::LeaseGrant(_) => "lease_grant",
            Op::LeaseRevoke(_) => "lease_revoke",
            Op::SessionOpen(_) => "session_open",
            Op::SessionExpire(_) => "session_expire",
            Op::LeaseExpire(_) => "lease_expire",
            Op::LockSessionCreate(_) => "lock_session_create",
            Op::LockSessionDestroy(_) => "lock_session_destroy",
            Op::Lock(_) => "lock",
        }
    }
}

impl TxnRequest {
    /// Whether either branch (or a nested transaction) puts a key.
    fn puts(&self) -> bool {
        self.success
            .iter()
            .chain(&self.failure)
            .any(|op| match &op.op {
                Some(TxnOp::Put(_)) => true,
                Some(TxnOp::Lock(lock)) => !lock.release,
                Some(TxnOp::Txn(txn)) => txn.puts(),
                _ => false,
            })
    }
}

/// A command for the log: an optional client session header and one operation.
///
/// `client_id`/`seq` (both 0, or both non-zero) make a write exactly-once: the store remembers
/// each session's last sequence number and answer, so a retry of that number gets the original
/// answer without applying again (see `session`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Request {
    /// Format version; must be [`COMMAND_VERSION`].
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// The client session (0: none), from [`SessionOpenResponse::client_id`].
    #[prost(uint64, tag = "2")]
    pub client_id: ClientId,
    /// The client's sequence number for this write, increasing per session (0 iff no session).
    #[prost(uint64, tag = "3")]
    pub seq: u64,
    /// The operation (required).
    #[prost(oneof = "Op", tags = "4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15")]
    pub op: Option<Op>,
}

impl Request {
    /// A request of the current version, without a session.
    pub fn new(op: Op) -> Self {
        Request {
            version: COMMAND_VERSION,
            client_id: 0,
            seq: 0,
            op: Some(op),
        }
    }

    /// Whether the request may need more space: a put, a transaction that puts, a lease grant
    /// (what a storage quota refuses; deletes, compaction and revokes free space).
    pub fn needs_space(&self) -> bool {
        match &self.op {
            Some(Op::Put(_) | Op::LeaseGrant(_) | Op::LockSessionCreate(_)) => true,
            Some(Op::Lock(lock)) => !lock.release,
            Some(Op::Txn(txn)) => txn.puts(),
            _ => false,
        }
    }

    /// Puts `value` at `key`.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Request::new(Op::Put(PutRequest::new(key, value)))
    }

    /// Deletes one key.
    pub fn delete(key: impl Into<Bytes>) -> Self {
        Request::new(Op::DeleteRange(DeleteRangeRequest::key(key)))
    }

    /// Deletes every key starting with `prefix`.
    pub fn delete_prefix(prefix: impl Into<Bytes>) -> Self {
        Request::new(Op::DeleteRange(DeleteRangeRequest::prefix(prefix)))
    }

    /// A transaction.
    pub fn txn(txn: TxnRequest) -> Self {
        Request::new(Op::Txn(txn))
    }

    /// Compare-and-swap (a transaction, see [`TxnRequest::cas`]).
    pub fn cas(
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        expected_mod_revision: Revision,
    ) -> Self {
        Request::txn(TxnRequest::cas(key, value, expected_mod_revision))
    }

    /// Compacts history below `revision`.
    pub fn compact(revision: Revision) -> Self {
        Request::new(Op::Compact(CompactRequest { revision }))
    }

    /// Grants lease `id` (0: let the store pick) for `ttl_ms` milliseconds.
    pub fn lease_grant(id: LeaseId, ttl_ms: u64) -> Self {
        Request::new(Op::LeaseGrant(LeaseGrantRequest { id, ttl_ms }))
    }

    /// Revokes lease `id`, deleting its keys.
    pub fn lease_revoke(id: LeaseId) -> Self {
        Request::new(Op::LeaseRevoke(LeaseRevokeRequest { id }))
    }

    /// Revokes the leases `ids` that still exist (the leader's batch of expired leases).
    pub fn lease_expire(ids: Vec<LeaseId>) -> Self {
        Request::new(Op::LeaseExpire(LeaseExpireRequest { ids }))
    }

    /// Opens a client session.
    pub fn session_open() -> Self {
        Request::new(Op::SessionOpen(SessionOpenRequest {}))
    }

    /// Expires the session of `client_id`.
    pub fn session_expire(client_id: ClientId) -> Self {
        Request::new(Op::SessionExpire(SessionExpireRequest { client_id }))
    }

    /// Makes this request the write `seq` of session `client_id`.
    pub fn with_session(mut self, client_id: ClientId, seq: u64) -> Self {
        self.client_id = client_id;
        self.seq = seq;
        self
    }

    /// Encodes the request for the log (protobuf). The same as `prost::Message::encode_to_vec`,
    /// here so callers need not import the trait.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        Message::encode_to_vec(self)
    }

    /// Decodes and checks a command (see the module docs): never panics; anything but a
    /// well-formed request of [`COMMAND_VERSION`] is an error. (This shadows
    /// `prost::Message::decode`, which does not check.)
    pub fn decode(bytes: &[u8]) -> Result<Request, KvError> {
        let request =
            <Request as Message>::decode(bytes).map_err(|e| KvError::Malformed(e.to_string()))?;
        request.check_well_formed()?;
        // Our encoder is canonical (fields in tag order, defaults omitted, minimal varints), so a
        // payload of another length carries unknown, repeated or default-valued fields: refuse it
        // rather than silently apply part of what its writer meant.
        if request.encoded_len() != bytes.len() {
            return Err(KvError::Malformed(format!(
                "non-canonical encoding ({} bytes, {} when re-encoded): unknown, repeated or \
                 default-valued fields",
                bytes.len(),
                request.encoded_len()
            )));
        }
        Ok(request)
    }
}
