//! # raftkv-kv: the replicated key-value state machine
//!
//! An MVCC key-value store with revisions, ranges, transactions, leases, watches, exactly-once
//! client sessions and streaming snapshots, applied from the Raft log. Pure: no I/O (snapshots
//! go through any `std::io::Write`/`Read` the caller gives), no clocks (time enters only as
//! arguments), no threads; deterministic: the same log gives byte-for-byte the same state, and
//! the same [`KvStore::state_hash`], on every node.
//!
//! ## Using it
//!
//! ```
//! use raftkv_kv::{KvStore, Limits, RangeRequest, Reply, Request};
//!
//! let mut store = KvStore::new(Limits::default());
//! // The server validates before proposing, then applies each committed entry in order.
//! let put = Request::put("greeting", "hello");
//! put.validate(store.limits()).unwrap();
//! let response = store.apply(1, &put.encode_to_vec());
//! assert!(matches!(response.result, Ok(Reply::Put(_))));
//! assert_eq!(response.revision, 2);
//!
//! // Compare-and-swap is a transaction.
//! let cas = Request::cas("greeting", "hi", 2);
//! let Ok(Reply::Txn(txn)) = store.apply(2, &cas.encode_to_vec()).result else { panic!() };
//! assert!(txn.succeeded);
//!
//! let read = store.range(&RangeRequest::prefix("greet")).unwrap();
//! assert_eq!(read.kvs[0].value, "hi");
//! assert_eq!(store.range(&RangeRequest::key("greeting").at_revision(2)).unwrap().kvs[0].value, "hello");
//! ```
//!
//! ## The server's side
//!
//! | when | call |
//! |---|---|
//! | a client request arrives | [`Request::validate`], then propose [`Request::encode_to_vec`] |
//! | before applying a batch | [`KvStore::set_clock`]`(now_ms)` |
//! | each committed entry | [`KvStore::apply`]`(index, payload)` → [`Response`] (empty payload for no-ops and entries that are not commands) |
//! | a read | after the read index is applied: [`KvStore::range`] |
//! | keep-alive on the leader | [`KvStore::lease_keep_alive`]`(id, now_ms)` (not through the log) |
//! | this node became leader | [`KvStore::lease_promote`]`(now_ms, election_timeout_ms)` |
//! | leader tick | [`KvStore::expired_leases`]`(now_ms, max)` → propose [`Request::lease_revoke`] for each |
//! | watches | [`KvStore::watch_create`], [`KvStore::watch_poll_ready`] (after applying), [`KvStore::watch_poll`], [`KvStore::watch_cancel`] |
//! | exactly-once writes | propose [`Request::session_open`]; tag writes with [`Request::with_session`]; [`Request::session_expire`] to close |
//! | snapshot | [`KvStore::snapshot_view`] (one short step), then [`SnapshotView::write_to`] (any thread); [`KvStore::restore`] (+ [`KvStore::adopt_watches`]) |
//! | simulator | [`KvStore::state_hash`] |
//!
//! ## Codemap
//!
//! | module | owns |
//! |---|---|
//! | `store` | [`KvStore`]: the state, accessors, leases/watches/sessions entry points, state hash |
//! | `apply` | applying entries: decode, limits, sessions, executing each operation as one revision |
//! | `mvcc` | the revision index: key histories, revisions, changelog, compaction, write batches |
//! | `txn` | transaction compares |
//! | `lease` | leases: replicated id/TTL/keys, node-local deadlines |
//! | `session` | client sessions: exactly-once writes, deterministic expiry |
//! | `locks` | lock sessions (Consul's sessions) and the keys they hold |
//! | `lock_apply` | applying lock-session commands: create, acquire, release, end |
//! | `watch` | watches: ordered, exactly-once, gap-checkable, bounded |
//! | `command` | the versioned protobuf encoding of requests and responses, validation |
//! | `snapshot` | the chunked, checksummed snapshot stream |
//! | `limits`, `error`, `key_range`, `hash` | settings, [`KvError`], etcd's key ranges, the state hash function |
//!
//! Architecture invariant: nothing in this crate touches files, sockets, clocks, threads or
//! randomness (checked by `tests/tidy.rs`), and all iteration is over ordered maps.

mod apply;
pub mod command;
mod error;
mod hash;
mod key_range;
mod lease;
mod limits;
mod lock_apply;
mod locks;
mod mvcc;
mod session;
mod snapshot;
mod store;
mod txn;
pub mod watch;

pub use command::{
    COMMAND_VERSION, CompactRequest, CompactResponse, Compare, CompareOp, CompareTarget,
    DeleteRangeRequest, DeleteRangeResponse, KeyValue, LEASE_EXPIRE_IDS_MAX, LeaseExpireRequest,
    LeaseExpireResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LockRequest, LockResponse, LockSessionCreateRequest,
    LockSessionCreateResponse, LockSessionDestroyRequest, LockSessionDestroyResponse, NoopResponse,
    Op, PutRequest, PutResponse, RangeRequest, RangeResponse, Reply, Request, RequestOp, Response,
    ResponseOp, SessionExpireRequest, SessionExpireResponse, SessionOpenRequest,
    SessionOpenResponse, SortOrder, SortTarget, TxnOp, TxnOpResponse, TxnRequest, TxnResponse,
};
pub use error::{KvError, Result};
pub use key_range::prefix_end;
pub use lease::LeaseStatus;
pub use limits::*;
pub use locks::{DELETE, LockSession, LockSessionId, RELEASE};
pub use snapshot::{
    SNAPSHOT_CHUNK_BYTES, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_RECORD_BYTES_MAX, SnapshotView,
};
pub use store::KvStore;
pub use watch::{
    Event, EventKind, WatchDelivery, WatchId, WatchProgress, WatchRequest, WatchResponse,
};

/// A store revision: [`INITIAL_REVISION`] before the first write, then increased by one by every
/// command that changes at least one key.
pub type Revision = i64;
/// The revision of an empty store. It is 1, as in etcd: etcd's clients treat revision 1 as "the
/// store before anything was written" (its election recipe waits for keys below a revision, and
/// a first write at 1 would leave nothing below it).
pub const INITIAL_REVISION: Revision = 1;
/// A lease id (positive; 0 means "no lease").
pub type LeaseId = i64;
/// A client session id: the log index of the command that opened it (0 means "no session").
pub type ClientId = u64;
