//! Applying committed log entries: decoding, limits, sessions, and the execution of each
//! operation as (at most) one revision.
//!
//! Every operation either fails without changing anything or commits all its writes as one
//! revision (none if nothing changed: a delete of nothing, a read-only transaction). Writes go
//! through an MVCC [`crate::mvcc::WriteBatch`]; state-dependent checks (leases exist, revisions
//! readable, lock sessions exist) run before the first write, and the failures that can only show
//! while executing (a transaction's ranges exceeding `range_bytes_max`, a lock in a transaction
//! held by another session) roll the batch back. After a commit,
//! lease key sets follow the keys' new entries and watches are notified.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::Revision;
use crate::command::{
    CompactResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseExpireResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeResponse, LockResponse, NoopResponse, Op,
    PutRequest, PutResponse, Reply, Request, RequestOp, Response, ResponseOp,
    SessionExpireResponse, SessionOpenResponse, TxnOp, TxnOpResponse, TxnRequest, TxnResponse,
};
use crate::key_range::KeyRange;
use crate::lock_apply::{end_lock_sessions_in, lock_in};
use crate::mvcc::{
    Committed, KeyEntry, KeyHistory, KeyMeta, LeaseMove, RangeBudget, SessionMove, WriteBatch,
};
use crate::session::SessionCheck;
use crate::txn::compare_holds;
use crate::{KvError, KvStore, LeaseId, LockSessionId, Result};

impl KvStore {
    /// Applies one committed log entry at `index` (which must exceed the last applied index:
    /// asserted). `payload` is an encoded [`Request`]; an empty payload (a Raft no-op, or any
    /// entry the store has no command for) only advances the applied index.
    ///
    /// Deterministic. A malformed, over-limit or failing command is an error *response* and
    /// changes nothing but the applied index (and session expiry); it never panics.
    pub fn apply(&mut self, index: u64, payload: &[u8]) -> Response {
        assert!(
            index > self.applied_index,
            "log index {index} applied after {}: entries must be applied once, in order",
            self.applied_index
        );
        self.applied_index = index;
        self.sessions
            .expire_idle(index, self.limits.session_idle_entries_max);
        if payload.is_empty() {
            return Response::ok(self.revision(), Reply::Noop(NoopResponse {}));
        }
        if payload.len() as u64 > self.limits.request_bytes_max {
            let error = KvError::RequestTooLarge {
                bytes: payload.len() as u64,
                max: self.limits.request_bytes_max,
            };
            return Response::error(self.revision(), error);
        }
        let request =
            match Request::decode(payload).and_then(|r| r.validate(&self.limits).map(|()| r)) {
                Ok(request) => request,
                Err(error) => return Response::error(self.revision(), error),
            };
        let op = request.op.expect("validated requests have an operation");
        if request.client_id == 0 {
            return self.execute(index, op);
        }
        match self.sessions.check(request.client_id, request.seq) {
            SessionCheck::Answer(response) => response,
            SessionCheck::Refuse(error) => Response::error(self.revision(), error),
            SessionCheck::Apply => {
                let response = self.execute(index, op);
                self.sessions
                    .record(request.client_id, request.seq, index, response.clone());
                response
            }
        }
    }

    fn execute(&mut self, index: u64, op: Op) -> Response {
        let result = match op {
            Op::Put(put) => self.execute_put(put).map(Reply::Put),
            Op::DeleteRange(delete) => self.execute_delete(&delete).map(Reply::DeleteRange),
            Op::Txn(txn) => self.execute_txn(&txn).map(Reply::Txn),
            Op::Compact(compact) => self
                .execute_compact(compact.revision)
                .map(|()| Reply::Compact(CompactResponse {})),
            Op::LeaseGrant(grant) => self
                .execute_lease_grant(index, grant)
                .map(Reply::LeaseGrant),
            Op::LeaseRevoke(revoke) => self.execute_lease_revoke(revoke.id).map(Reply::LeaseRevoke),
            Op::LeaseExpire(expire) => {
                Ok(Reply::LeaseExpire(self.execute_lease_expire(&expire.ids)))
            }
            Op::SessionOpen(_) => self
                .sessions
                .open(index, self.limits.sessions_max)
                .map(|()| Reply::SessionOpen(SessionOpenResponse { client_id: index })),
            Op::LockSessionCreate(create) => self
                .execute_lock_session_create(index, create)
                .map(Reply::LockSessionCreate),
            Op::LockSessionDestroy(destroy) => Ok(Reply::LockSessionDestroy(
                self.execute_lock_session_destroy(destroy.id),
            )),
            Op::Lock(lock) => self.execute_lock(&lock).map(Reply::Lock),
            Op::SessionExpire(expire) => {
                if self.sessions.expire(expire.client_id) {
                    Ok(Reply::SessionExpire(SessionExpireResponse {}))
                } else {
                    Err(KvError::SessionNotFound {
                        client_id: expire.client_id,
                    })
                }
            }
        };
        Response {
            revision: self.revision(),
            result,
        }
    }

    fn check_lease(&self, lease: LeaseId) -> Result<()> {
        if lease != 0 && !self.leases.contains(lease) {
            return Err(KvError::LeaseNotFound { id: lease });
        }
        Ok(())
    }

    /// Checks a put against the store before it applies: its lease exists, and a key whose value
    /// or lease it keeps exists.
    fn check_put(&self, put: &PutRequest) -> Result<()> {
        if (put.ignore_value || put.ignore_lease)
            && self
                .mvcc
                .history(&put.key)
                .and_then(KeyHistory::live)
                .is_none()
        {
            return Err(KvError::KeyNotFound);
        }
        self.check_lease(put.lease)
    }

    fn execute_put(&mut self, put: PutRequest) -> Result<PutResponse> {
        self.check_put(&put)?;
        let mut batch = self.mvcc.begin();
        let response = put_in(&mut batch, &put);
        let committed = batch.commit();
        self.after_commit(committed);
        Ok(response)
    }

    /// Compacts history up to `revision`, first reading out what watches behind it still need.
    fn execute_compact(&mut self, revision: Revision) -> Result<()> {
        if revision > self.mvcc.compacted() && revision <= self.mvcc.revision() {
            self.watches
                .before_compact(revision, &self.mvcc, &self.limits);
        }
        self.mvcc.compact(revision)
    }

    fn execute_delete(&mut self, delete: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let mut batch = self.mvcc.begin();
        let response = delete_in(&mut batch, delete);
        let committed = batch.commit();
        self.after_commit(committed);
        Ok(response)
    }

    fn execute_txn(&mut self, txn: &TxnRequest) -> Result<TxnResponse> {
        let path = self.txn_path(txn);
        self.check_txn(txn, &path)?;
        let mut budget = RangeBudget::new(self.limits.range_bytes_max);
        let mut batch = self.mvcc.begin();
        let mut response = match run_txn(&mut batch, txn, &path, &mut budget) {
            Ok(response) => response,
            Err(error) => {
                batch.rollback();
                return Err(error);
            }
        };
        let committed = batch.commit();
        // Ranges answered before the commit report the revision the transaction created.
        set_range_revisions(&mut response.responses, self.revision());
        self.after_commit(committed);
        Ok(response)
    }

    /// The branch `txn` and each transaction nested in it take, decided before anything is
    /// written: every compare, nested ones included, sees the state before the transaction
    /// (as etcd evaluates them).
    fn txn_path(&self, txn: &TxnRequest) -> TxnPath {
        let succeeded = txn.compare.iter().all(|c| compare_holds(&self.mvcc, c));
        let branch = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let nested = branch
            .iter()
            .filter_map(|op| match &op.op {
                Some(TxnOp::Txn(nested)) => Some(self.txn_path(nested)),
                _ => None,
            })
            .collect();
        TxnPath { succeeded, nested }
    }

    /// The state-dependent checks of the operations on `path`, before anything is written.
    fn check_txn(&self, txn: &TxnRequest, path: &TxnPath) -> Result<()> {
        let mut nested = path.nested.iter();
        for op in path.branch(txn) {
            match op.op.as_ref().expect("validated") {
                TxnOp::Put(put) => self.check_put(put)?,
                TxnOp::Range(range) if range.revision != 0 => {
                    self.mvcc.read_revision(range.revision)?;
                }
                TxnOp::Txn(txn) => {
                    self.check_txn(txn, nested.next().expect("a path per nested txn"))?;
                }
                TxnOp::Lock(lock) => self.check_lock(lock)?,
                TxnOp::Range(_) | TxnOp::DeleteRange(_) => {}
            }
        }
        Ok(())
    }

    pub(crate) fn execute_lease_grant(
        &mut self,
        index: u64,
        grant: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse> {
        if self.leases.len() as u64 >= self.limits.leases_max {
            return Err(KvError::LeaseLimit {
                max: self.limits.leases_max,
            });
        }
        let id = match grant.id {
            0 => self.leases.free_id(index),
            id if self.leases.contains(id) => return Err(KvError::LeaseExists { id }),
            id => id,
        };
        let deadline = self.clock_ms.saturating_add(grant.ttl_ms);
        self.leases.grant(id, grant.ttl_ms, Some(deadline));
        Ok(LeaseGrantResponse {
            id,
            ttl_ms: grant.ttl_ms,
        })
    }

    /// Deletes a lease's keys (one revision, if it has any) and the lease.
    fn execute_lease_revoke(&mut self, id: LeaseId) -> Result<LeaseRevokeResponse> {
        if !self.leases.contains(id) {
            return Err(KvError::LeaseNotFound { id });
        }
        let ended = self.end_leases(&[id], None);
        Ok(LeaseRevokeResponse {
            deleted: ended.deleted,
        })
    }

    /// Deletes the keys of every listed lease that still exists (one revision, if any has keys)
    /// and those leases.
    fn execute_lease_expire(&mut self, ids: &[LeaseId]) -> LeaseExpireResponse {
        let ended = self.end_leases(ids, None);
        LeaseExpireResponse {
            revoked: ended.leases,
            deleted: ended.deleted,
        }
    }

    /// Ends every listed lease that exists and lock session `session` (if given and it exists),
    /// in one revision (if anything changes): deletes the leases' keys, ends the lock sessions
    /// the leases keep alive with them, releases or deletes the keys the ended sessions hold,
    /// then forgets the leases and sessions.
    pub(crate) fn end_leases(
        &mut self,
        ids: &[LeaseId],
        session: Option<LockSessionId>,
    ) -> EndedLeases {
        let mut leases = Vec::new();
        let mut deleting: BTreeSet<Bytes> = BTreeSet::new();
        for &id in ids {
            if let Some(lease) = self.leases.get(id)
                && !leases.contains(&id)
            {
                deleting.extend(lease.keys.iter().cloned());
                leases.push(id);
            }
        }
        let mut sessions: Vec<LockSessionId> = session
            .filter(|&id| self.lock_sessions.get(id).is_some())
            .into_iter()
            .collect();
        for &id in &leases {
            if let Some(kept) = self.lock_sessions.by_lease(id)
                && !sessions.contains(&kept)
            {
                sessions.push(kept);
            }
        }
        let mut batch = self.mvcc.begin();
        for key in &deleting {
            batch.delete(key).expect("a lease's keys are live");
        }
        let ended = end_lock_sessions_in(&self.lock_sessions, &mut batch, &sessions, &deleting);
        let committed = batch.commit();
        self.after_commit(committed);
        for &id in &leases {
            self.leases.remove(id);
        }
        let released = ended.len() as u64;
        self.finish_lock_sessions(&sessions, ended);
        EndedLeases {
            leases,
            deleted: deleting.len() as u64,
            released,
        }
    }

    /// Moves keys between lease key sets after a commit.
    pub(crate) fn after_commit(&mut self, committed: Option<Committed>) {
        let Some(committed) = committed else {
            return;
        };
        for LeaseMove { key, from, to } in committed.lease_moves {
            if from != 0 {
                self.leases.detach(from, &key);
            }
            if to != 0 {
                self.leases.attach(to, key);
            }
        }
        for SessionMove { key, from, to } in committed.session_moves {
            self.lock_sessions.moved(&key, from, to);
        }
    }
}

/// What `KvStore::end_leases` ended.
pub(crate) struct EndedLeases {
    /// The leases that existed, in the order asked.
    pub(crate) leases: Vec<LeaseId>,
    /// Keys deleted with them.
    pub(crate) deleted: u64,
    /// Keys the ended lock sessions held (released, or deleted).
    pub(crate) released: u64,
}

/// Which branch a transaction takes, and the paths of the transactions nested in that branch,
/// in order.
struct TxnPath {
    succeeded: bool,
    nested: Vec<TxnPath>,
}

impl TxnPath {
    /// The operations `txn` runs on this path.
    fn branch<'a>(&self, txn: &'a TxnRequest) -> &'a [RequestOp] {
        if self.succeeded {
            &txn.success
        } else {
            &txn.failure
        }
    }
}

/// Runs the branch of `txn` that `path` takes, nested transactions included, in `batch`.
fn run_txn(
    batch: &mut WriteBatch<'_>,
    txn: &TxnRequest,
    path: &TxnPath,
    budget: &mut RangeBudget,
) -> Result<TxnResponse> {
    let branch = path.branch(txn);
    let mut nested = path.nested.iter();
    let mut responses = Vec::with_capacity(branch.len());
    for op in branch {
        let response = match op.op.as_ref().expect("validated") {
            TxnOp::Put(put) => TxnOpResponse::Put(put_in(batch, put)),
            TxnOp::DeleteRange(delete) => TxnOpResponse::DeleteRange(delete_in(batch, delete)),
            TxnOp::Range(range) => TxnOpResponse::Range(batch.mvcc().range(range, budget)?),
            TxnOp::Txn(txn) => {
                let path = nested.next().expect("a path per nested txn");
                TxnOpResponse::Txn(run_txn(batch, txn, path, budget)?)
            }
            TxnOp::Lock(lock) => match lock_in(batch, lock) {
                Some(kv) => TxnOpResponse::Lock(LockResponse {
                    succeeded: true,
                    kv: Some(kv),
                }),
                None => {
                    return Err(KvError::LockRefused {
                        key: String::from_utf8_lossy(&lock.key).into_owned(),
                        release: lock.release,
                    });
                }
            },
        };
        responses.push(ResponseOp { op: Some(response) });
    }
    Ok(TxnResponse {
        succeeded: path.succeeded,
        responses,
    })
}

/// Sets the revision of every range answer in `responses`, nested ones included.
fn set_range_revisions(responses: &mut [ResponseOp], revision: Revision) {
    for response in responses {
        match &mut response.op {
            Some(TxnOpResponse::Range(range)) => range.revision = revision,
            Some(TxnOpResponse::Txn(txn)) => set_range_revisions(&mut txn.responses, revision),
            _ => {}
        }
    }
}

/// Applies `put` (checked by `check_put`: a key whose value or lease it keeps exists).
fn put_in(batch: &mut WriteBatch<'_>, put: &PutRequest) -> PutResponse {
    let (mut value, mut lease) = (put.value.clone(), put.lease);
    let current = batch.mvcc().history(&put.key).and_then(KeyHistory::live);
    // A put keeps the key's lock (Consul's too); the flags come with the value.
    let mut meta = KeyMeta {
        flags: put.flags,
        ..current.map(KeyEntry::meta).unwrap_or_default()
    };
    if put.ignore_value || put.ignore_lease {
        let current = current.expect("checked: the key exists");
        if put.ignore_value {
            value = current.value.clone();
            meta.flags = current.meta().flags;
        }
        if put.ignore_lease {
            lease = current.lease;
        }
    }
    let prev = batch.put(&put.key, value, lease, meta);
    PutResponse {
        prev_kv: prev
            .filter(|_| put.prev_kv)
            .map(|p| p.to_kv(&put.key, false)),
    }
}

fn delete_in(batch: &mut WriteBatch<'_>, delete: &DeleteRangeRequest) -> DeleteRangeResponse {
    let deleted = batch.delete_range(&KeyRange::new(&delete.key, &delete.range_end));
    DeleteRangeResponse {
        deleted: deleted.len() as u64,
        prev_kvs: if delete.prev_kv {
            deleted
                .iter()
                .map(|(key, entry)| entry.to_kv(key, false))
                .collect()
        } else {
            Vec::new()
        },
    }
}
