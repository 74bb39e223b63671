//! The operations a [`super::Request`] carries, as prost messages with builders.
//!
//! Field conventions follow etcd: `key`/`range_end` name keys (see `key_range`), revision 0 means
//! "current", lease 0 means "no lease". Tags are part of the format: never reuse or renumber one.

use bytes::Bytes;

use crate::key_range::prefix_end;
use crate::{LeaseId, Revision};

/// Read keys: one key, a range or a prefix, now or at a past revision.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RangeRequest {
    /// First key (or the only key when `range_end` is empty).
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// End of the range (exclusive); empty for one key, `"\0"` for every key from `key` on.
    #[prost(bytes = "bytes", tag = "2")]
    pub range_end: Bytes,
    /// Most keys returned (0: no limit). `more` tells whether more keys matched.
    #[prost(uint64, tag = "3")]
    pub limit: u64,
    /// Read the state as of this revision (0: the current revision).
    #[prost(int64, tag = "4")]
    pub revision: Revision,
    /// Return keys and metadata without values.
    #[prost(bool, tag = "5")]
    pub keys_only: bool,
    /// Return only the count of matching keys.
    #[prost(bool, tag = "6")]
    pub count_only: bool,
    /// Order of the keys returned ([`SortOrder`] as `i32`; none: key order).
    #[prost(enumeration = "SortOrder", tag = "7")]
    pub sort_order: i32,
    /// What the keys are sorted by ([`SortTarget`] as `i32`); a target other than the key
    /// without an order sorts ascending, as etcd does.
    #[prost(enumeration = "SortTarget", tag = "8")]
    pub sort_target: i32,
    /// Only keys last modified at or after this revision (0: no bound).
    #[prost(int64, tag = "9")]
    pub min_mod_revision: Revision,
    /// Only keys last modified at or before this revision (0: no bound).
    #[prost(int64, tag = "10")]
    pub max_mod_revision: Revision,
    /// Only keys created at or after this revision (0: no bound).
    #[prost(int64, tag = "11")]
    pub min_create_revision: Revision,
    /// Only keys created at or before this revision (0: no bound).
    #[prost(int64, tag = "12")]
    pub max_create_revision: Revision,
}

/// The order of a sorted range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SortOrder {
    /// Key order, unsorted otherwise.
    None = 0,
    /// Smallest first.
    Ascend = 1,
    /// Largest first.
    Descend = 2,
}

/// What a sorted range is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SortTarget {
    /// The key.
    Key = 0,
    /// The key's version.
    Version = 1,
    /// The key's create revision.
    Create = 2,
    /// The key's mod revision.
    Mod = 3,
    /// The value.
    Value = 4,
}

impl RangeRequest {
    /// Reads one key.
    pub fn key(key: impl Into<Bytes>) -> Self {
        RangeRequest {
            key: key.into(),
            ..Default::default()
        }
    }

    /// Reads `[key, range_end)`.
    pub fn range(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> Self {
        RangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..Default::default()
        }
    }

    /// Reads every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        RangeRequest {
            key,
            range_end,
            ..Default::default()
        }
    }

    /// Sets `limit`.
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Sets `revision`.
    pub fn at_revision(mut self, revision: Revision) -> Self {
        self.revision = revision;
        self
    }

    /// Sets `keys_only`.
    pub fn keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }

    /// Sets `count_only`.
    pub fn count_only(mut self) -> Self {
        self.count_only = true;
        self
    }

    /// Sorts the answer by `target` in `order`.
    pub fn sorted(mut self, target: SortTarget, order: SortOrder) -> Self {
        self.sort_target = target as i32;
        self.sort_order = order as i32;
        self
    }

    /// The order the answer is sorted in, if any (etcd's rule: a target other than the key
    /// without an order sorts ascending).
    pub(crate) fn effective_order(&self) -> Option<(SortTarget, SortOrder)> {
        let target = SortTarget::try_from(self.sort_target).unwrap_or(SortTarget::Key);
        match SortOrder::try_from(self.sort_order).unwrap_or(SortOrder::None) {
            SortOrder::None if target == SortTarget::Key => None,
            SortOrder::None => Some((target, SortOrder::Ascend)),
            order => Some((target, order)),
        }
    }

    /// Whether a key last modified at `mod_revision` and created at `create_revision` passes the
    /// revision filters.
    pub(crate) fn keeps(&self, mod_revision: Revision, create_revision: Revision) -> bool {
        (self.min_mod_revision == 0 || mod_revision >= self.min_mod_revision)
            && (self.max_mod_revision == 0 || mod_revision <= self.max_mod_revision)
            && (self.min_create_revision == 0 || create_revision >= self.min_create_revision)
            && (self.max_create_revision == 0 || create_revision <= self.max_create_revision)
    }
}

/// Write one key.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PutRequest {
    /// The key (non-empty).
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// The value.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
    /// Attach the key to this lease (0: none). The lease must exist. A put without a lease
    /// detaches the key from any lease it had.
    #[prost(int64, tag = "3")]
    pub lease: LeaseId,
    /// Return the previous key-value, if the key existed.
    #[prost(bool, tag = "4")]
    pub prev_kv: bool,
    /// Keep the key's current value (`value` must be empty; the key must exist).
    #[prost(bool, tag = "5")]
    pub ignore_value: bool,
    /// Keep the key's current lease (`lease` must be 0; the key must exist).
    #[prost(bool, tag = "6")]
    pub ignore_lease: bool,
    /// Consul's `Flags`: an opaque number stored with this version of the key (0 unless set).
    #[prost(uint64, tag = "7")]
    pub flags: u64,
}

impl PutRequest {
    /// Puts `value` at `key`.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }
    }

    /// Attaches the key to `lease`.
    pub fn with_lease(mut self, lease: LeaseId) -> Self {
        self.lease = lease;
        self
    }

    /// Asks for the previous key-value.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
}

/// Delete one key, a range or a prefix.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DeleteRangeRequest {
    /// First key (or the only key when `range_end` is empty).
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// End of the range (exclusive); empty for one key, `"\0"` for every key from `key` on.
    #[prost(bytes = "bytes", tag = "2")]
    pub range_end: Bytes,
    /// Return the deleted key-values.
    #[prost(bool, tag = "3")]
    pub prev_kv: bool,
}

impl DeleteRangeRequest {
    /// Deletes one key.
    pub fn key(key: impl Into<Bytes>) -> Self {
        DeleteRangeRequest {
            key: key.into(),
            ..Default::default()
        }
    }

    /// Deletes `[key, range_end)`.
    pub fn range(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> Self {
        DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            prev_kv: false,
        }
    }

    /// Deletes every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv: false,
        }
    }

    /// Asks for the deleted key-values.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
}

/// How a [`Compare`] compares the key's field with its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CompareOp {
    /// field == target
    Equal = 0,
    /// field > target
    Greater = 1,
    /// field < target
    Less = 2,
    /// field != target
    NotEqual = 3,
}

/// What a [`Compare`] looks at, and the value it compares with.
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum CompareTarget {
    /// The key's version (0 if it does not exist).
    #[prost(int64, tag = "4")]
    Version(i64),
    /// The key's create revision (0 if it does not exist).
    #[prost(int64, tag = "5")]
    CreateRevision(Revision),
    /// The key's mod revision (0 if it does not exist).
    #[prost(int64, tag = "6")]
    ModRevision(Revision),
    /// The key's value (a missing key never compares true).
    #[prost(bytes = "bytes", tag = "7")]
    Value(Bytes),
    /// The key's lease (0 if none or if it does not exist).
    #[prost(int64, tag = "8")]
    Lease(LeaseId),
    /// The lock session holding the key (0 if none or if it does not exist).
    #[prost(uint64, tag = "9")]
    Session(u64),
}

/// One condition of a transaction, over one key or every key of a range (all must satisfy it;
/// an empty range compares as one missing key).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Compare {
    /// The key (or first key of the range).
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// End of the range (exclusive); empty for one key.
    #[prost(bytes = "bytes", tag = "2")]
    pub range_end: Bytes,
    /// The comparison ([`CompareOp`] as `i32`).
    #[prost(enumeration = "CompareOp", tag = "3")]
    pub op: i32,
    /// Field and value compared with (required).
    #[prost(oneof = "CompareTarget", tags = "4, 5, 6, 7, 8, 9")]
    pub target: Option<CompareTarget>,
}

impl Compare {
    /// `key`'s field `op` `target`.
    pub fn new(key: impl Into<Bytes>, op: CompareOp, target: CompareTarget) -> Self {
        Compare {
            key: key.into(),
            range_end: Bytes::new(),
            op: op as i32,
            target: Some(target),
        }
    }

    /// Compares every key of `[key, range_end)` instead of one key.
    pub fn with_range_end(mut self, range_end: impl Into<Bytes>) -> Self {
        self.range_end = range_end.into();
        self
    }
}

/// One operation of a transaction branch.
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum TxnOp {
    /// Read.
    #[prost(message, tag = "1")]
    Range(RangeRequest),
    /// Write one key.
    #[prost(message, tag = "2")]
    Put(PutRequest),
    /// Delete keys.
    #[prost(message, tag = "3")]
    DeleteRange(DeleteRangeRequest),
    /// A nested transaction (at most [`crate::TXN_NESTING_MAX`] deep): its compares are
    /// evaluated, with every other compare, before the outer transaction writes anything.
    #[prost(message, tag = "4")]
    Txn(TxnRequest),
    /// Acquire or release a key for a lock session; if the lock is held by another session (or,
    /// for a release, not by this one) the whole transaction fails with
    /// [`crate::KvError::LockRefused`] and changes nothing.
    #[prost(message, tag = "5")]
    Lock(LockRequest),
}

/// A [`TxnOp`] in a message (a repeated field cannot hold a oneof directly).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RequestOp {
    /// The operation (required).
    #[prost(oneof = "TxnOp", tags = "1, 2, 3, 4, 5")]
    pub op: Option<TxnOp>,
}

impl From<TxnOp> for RequestOp {
    fn from(op: TxnOp) -> Self {
        RequestOp { op: Some(op) }
    }
}

impl From<PutRequest> for RequestOp {
    fn from(put: PutRequest) -> Self {
        TxnOp::Put(put).into()
    }
}

impl From<RangeRequest> for RequestOp {
    fn from(range: RangeRequest) -> Self {
        TxnOp::Range(range).into()
    }
}

impl From<DeleteRangeRequest> for RequestOp {
    fn from(delete: DeleteRangeRequest) -> Self {
        TxnOp::DeleteRange(delete).into()
    }
}

impl From<TxnRequest> for RequestOp {
    fn from(txn: TxnRequest) -> Self {
        TxnOp::Txn(txn).into()
    }
}

/// If every compare holds, run `success`, else `failure`; atomically, as one revision (if
/// anything changes). Operations run in order and later ones see earlier writes. A branch may
/// not write one key twice (two puts, or a put inside a deleted range).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TxnRequest {
    /// The conditions (all must hold).
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    /// Operations run when all compares hold.
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
    /// Operations run otherwise.
    #[prost(message, repeated, tag = "3")]
    pub failure: Vec<RequestOp>,
}

impl TxnRequest {
    /// Compare-and-swap: put `value` at `key` only if the key's mod revision is
    /// `expected_mod_revision` (0: only if the key does not exist). On failure the transaction
    /// reads the key, so the caller sees its current state.
    pub fn cas(
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        expected_mod_revision: Revision,
    ) -> Self {
        let key = key.into();
        TxnRequest {
            compare: vec![Compare::new(
                key.clone(),
                CompareOp::Equal,
                CompareTarget::ModRevision(expected_mod_revision),
            )],
            success: vec![PutRequest::new(key.clone(), value).into()],
            failure: vec![RangeRequest::key(key).into()],
        }
    }
}

/// Drop history below a revision.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CompactRequest {
    /// Reads below this revision fail with `Compacted` afterwards; reads at it still work.
    #[prost(int64, tag = "1")]
    pub revision: Revision,
}

/// Create a lease.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseGrantRequest {
    /// The lease id (0: the store picks one, the log index of this command or the next free id).
    #[prost(int64, tag = "1")]
    pub id: LeaseId,
    /// Time to live, in milliseconds (at least 1).
    #[prost(uint64, tag = "2")]
    pub ttl_ms: u64,
}

/// Delete a lease and all its keys, in one revision. The leader proposes this for expired leases.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseRevokeRequest {
    /// The lease.
    #[prost(int64, tag = "1")]
    pub id: LeaseId,
}

/// Most leases one [`LeaseExpireRequest`] revokes.
pub const LEASE_EXPIRE_IDS_MAX: usize = 1_000;

/// Revoke leases that expired: each one still there is deleted with its keys, all in one
/// revision; leases already gone are skipped. The leader proposes this in batches, so many
/// leases expiring together cost a few entries, not one each.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LeaseExpireRequest {
    /// The leases (1 to [`LEASE_EXPIRE_IDS_MAX`]).
    #[prost(int64, repeated, tag = "1")]
    pub ids: Vec<LeaseId>,
}

/// Open a client session for exactly-once writes. Its client id is the log index of this command.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SessionOpenRequest {}

/// Close (expire) a client session: a client that is done, or a leader's expiry policy.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SessionExpireRequest {
    /// The session's client id.
    #[prost(uint64, tag = "1")]
    pub client_id: u64,
}

/// Create a lock session (Consul's session; see `locks`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LockSessionCreateRequest {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The node it belongs to.
    #[prost(string, tag = "2")]
    pub node: String,
    /// What happens to its keys when it ends: `locks::RELEASE` or `locks::DELETE`.
    #[prost(int32, tag = "3")]
    pub behavior: i32,
    /// How long its keys may not be acquired after it ends, in milliseconds.
    #[prost(uint64, tag = "4")]
    pub lock_delay_ms: u64,
    /// Time to live in milliseconds, kept by a lease of its own (0: until destroyed).
    #[prost(uint64, tag = "5")]
    pub ttl_ms: u64,
}

/// End a lock session: its keys are released or deleted, as its behavior says.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LockSessionDestroyRequest {
    /// The session.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

/// Acquire a key for a lock session, or release it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LockRequest {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// The value written with the acquisition or release.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
    /// Consul's flags written with it.
    #[prost(uint64, tag = "3")]
    pub flags: u64,
    /// The lock session.
    #[prost(uint64, tag = "4")]
    pub session: u64,
    /// Release (else acquire).
    #[prost(bool, tag = "5")]
    pub release: bool,
}
