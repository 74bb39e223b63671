//! Checks of requests: well-formedness (decoding) and limits (before proposing and at apply).
//!
//! Both are pure functions of the request and [`Limits`], so every node reaches the same verdict.

use bytes::Bytes;
use prost::Message;

use super::{
    COMMAND_VERSION, Compare, CompareOp, DeleteRangeRequest, LockRequest, LockSessionCreateRequest,
    Op, PutRequest, RangeRequest, Request, RequestOp, TxnOp, TxnRequest,
};
use crate::key_range::KeyRange;
use crate::{
    KvError, LEASE_EXPIRE_IDS_MAX, LOCK_SESSION_NAME_BYTES_MAX, Limits, Result, TXN_NESTING_MAX,
};

fn malformed(what: &str) -> KvError {
    KvError::Malformed(what.to_owned())
}

fn invalid(what: impl Into<String>) -> KvError {
    KvError::InvalidRequest(what.into())
}

impl Request {
    /// The structural checks [`Request::decode`] makes (module docs of `command`).
    pub(crate) fn check_well_formed(&self) -> Result<()> {
        if self.version != COMMAND_VERSION {
            return Err(KvError::UnsupportedVersion {
                version: self.version,
                supported: COMMAND_VERSION,
            });
        }
        if (self.client_id == 0) != (self.seq == 0) {
            return Err(malformed(
                "a client id needs a sequence number and vice versa",
            ));
        }
        match &self.op {
            None => Err(malformed("request without an operation")),
            Some(Op::Txn(txn)) => txn.check_well_formed(),
            Some(Op::SessionOpen(_)) if self.client_id != 0 => {
                Err(malformed("a session open cannot itself carry a session"))
            }
            Some(_) => Ok(()),
        }
    }

    /// Checks the request against the limits (and well-formedness): sizes, operation counts,
    /// arguments. The server calls this before proposing; apply calls it again, so a request that
    /// passes here can still fail at apply only for state-dependent reasons.
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        self.check_well_formed()?;
        let bytes = self.encoded_len() as u64;
        if bytes > limits.request_bytes_max {
            return Err(KvError::RequestTooLarge {
                bytes,
                max: limits.request_bytes_max,
            });
        }
        match self.op.as_ref().expect("checked by check_well_formed") {
            Op::Put(put) => put.validate(limits),
            Op::DeleteRange(delete) => delete.validate(limits),
            Op::Txn(txn) => txn.validate(limits),
            Op::Compact(compact) if compact.revision < 1 => Err(invalid(format!(
                "compaction revision {} must be at least 1",
                compact.revision
            ))),
            Op::LeaseGrant(grant) if grant.id < 0 => Err(invalid(format!(
                "lease id {} is negative; use 0 to let the store pick",
                grant.id
            ))),
            Op::LeaseGrant(grant)
                if grant.ttl_ms == 0 || grant.ttl_ms > limits.lease_ttl_ms_max =>
            {
                Err(invalid(format!(
                    "lease TTL of {} ms is outside 1..={} ms (lease_ttl_ms_max)",
                    grant.ttl_ms, limits.lease_ttl_ms_max
                )))
            }
            Op::LeaseRevoke(revoke) if revoke.id <= 0 => {
                Err(invalid(format!("lease id {} must be positive", revoke.id)))
            }
            Op::LeaseExpire(expire)
                if expire.ids.is_empty()
                    || expire.ids.len() > LEASE_EXPIRE_IDS_MAX
                    || expire.ids.iter().any(|&id| id <= 0) =>
            {
                Err(invalid(format!(
                    "a lease expiry lists 1 to {LEASE_EXPIRE_IDS_MAX} positive lease ids, not {}",
                    expire.ids.len()
                )))
            }
            Op::SessionExpire(expire) if expire.client_id == 0 => {
                Err(invalid("session expiry needs a client id"))
            }
            Op::LockSessionCreate(create) => create.validate(limits),
            Op::LockSessionDestroy(destroy) if destroy.id == 0 => {
                Err(invalid("a lock session's end needs its id"))
            }
            Op::Lock(lock) => lock.validate(limits),
            _ => Ok(()),
        }
    }
}

/// Checks a key or range start: size, and non-empty unless a range end makes it a range start.
pub(crate) fn check_key(key: &Bytes, range_end: &Bytes, limits: &Limits) -> Result<()> {
    if key.is_empty() && range_end.is_empty() {
        return Err(KvError::EmptyKey);
    }
    for k in [key, range_end] {
        if k.len() as u64 > limits.key_bytes_max {
            return Err(KvError::KeyTooLarge {
                bytes: k.len() as u64,
                max: limits.key_bytes_max,
            });
        }
    }
    Ok(())
}

fn check_value(value: &Bytes, limits: &Limits) -> Result<()> {
    if value.len() as u64 > limits.value_bytes_max {
        return Err(KvError::ValueTooLarge {
            bytes: value.len() as u64,
            max: limits.value_bytes_max,
        });
    }
    Ok(())
}

impl RangeRequest {
    /// Checks key sizes and the revision (not negative).
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        check_key(&self.key, &self.range_end, limits)?;
        if self.revision < 0 {
            return Err(invalid(format!(
                "revision {} is negative; use 0 for the current one",
                self.revision
            )));
        }
        Ok(())
    }
}

impl PutRequest {
    fn validate(&self, limits: &Limits) -> Result<()> {
        check_key(&self.key, &Bytes::new(), limits)?;
        check_value(&self.value, limits)?;
        if self.lease < 0 {
            return Err(invalid(format!("lease id {} is negative", self.lease)));
        }
        if self.ignore_value && !self.value.is_empty() {
            return Err(KvError::ValueProvided);
        }
        if self.ignore_lease && self.lease != 0 {
            return Err(KvError::LeaseProvided);
        }
        Ok(())
    }
}

impl LockSessionCreateRequest {
    fn validate(&self, limits: &Limits) -> Result<()> {
        if self.name.len() > LOCK_SESSION_NAME_BYTES_MAX
            || self.node.len() > LOCK_SESSION_NAME_BYTES_MAX
        {
            return Err(invalid(format!(
                "a lock session's name and node are at most {LOCK_SESSION_NAME_BYTES_MAX} bytes"
            )));
        }
        if self.behavior != crate::RELEASE && self.behavior != crate::DELETE {
            return Err(invalid(format!(
                "lock session behavior {} is neither release nor delete",
                self.behavior
            )));
        }
        if self.ttl_ms > limits.lease_ttl_ms_max {
            return Err(invalid(format!(
                "lock session TTL of {} ms is over {} ms (lease_ttl_ms_max)",
                self.ttl_ms, limits.lease_ttl_ms_max
            )));
        }
        Ok(())
    }
}

impl LockRequest {
    fn validate(&self, limits: &Limits) -> Result<()> {
        check_key(&self.key, &Bytes::new(), limits)?;
        check_value(&self.value, limits)?;
        if self.session == 0 {
            return Err(invalid("acquiring or releasing a key needs a lock session"));
        }
        Ok(())
    }
}

impl DeleteRangeRequest {
    fn validate(&self, limits: &Limits) -> Result<()> {
        check_key(&self.key, &self.range_end, limits)
    }
}

impl Compare {
    fn validate(&self, limits: &Limits) -> Result<()> {
        check_key(&self.key, &self.range_end, limits)?;
        if let Some(super::CompareTarget::Value(value)) = &self.target {
            check_value(value, limits)?;
        }
        Ok(())
    }
}

impl TxnRequest {
    fn check_well_formed(&self) -> Result<()> {
        self.check_well_formed_at(0)
    }

    fn check_well_formed_at(&self, depth: usize) -> Result<()> {
        if depth > TXN_NESTING_MAX {
            return Err(malformed(&format!(
                "transactions nested more than {TXN_NESTING_MAX} deep"
            )));
        }
        for compare in &self.compare {
            if compare.target.is_none() {
                return Err(malformed("compare without a target"));
            }
            if CompareOp::try_from(compare.op).is_err() {
                return Err(malformed(&format!(
                    "unknown compare operator {}",
                    compare.op
                )));
            }
        }
        for op in self.success.iter().chain(&self.failure) {
            match &op.op {
                None => return Err(malformed("transaction operation without an operation")),
                Some(TxnOp::Txn(nested)) => nested.check_well_formed_at(depth + 1)?,
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn validate(&self, limits: &Limits) -> Result<()> {
        self.writes(limits).map(|_| ())
    }

    /// Checks the transaction; what either of its branches may write.
    fn writes(&self, limits: &Limits) -> Result<Writes> {
        let lists = [
            ("compares", self.compare.len()),
            ("success operations", self.success.len()),
            ("failure operations", self.failure.len()),
        ];
        for (what, len) in lists {
            if len as u64 > limits.txn_ops_max {
                return Err(KvError::TooManyOps {
                    what: what.to_owned(),
                    ops: len as u64,
                    max: limits.txn_ops_max,
                });
            }
        }
        for compare in &self.compare {
            compare.validate(limits)?;
        }
        let mut writes = validate_branch(&self.success, limits)?;
        let failure = validate_branch(&self.failure, limits)?;
        // Only one branch runs: a key written by both is written once.
        writes.puts.extend(failure.puts);
        writes.puts.sort_unstable();
        writes.puts.dedup();
        writes.deletes.extend(failure.deletes);
        Ok(writes)
    }
}

/// What a transaction branch writes, nested transactions included.
struct Writes {
    /// Keys put.
    puts: Vec<Bytes>,
    /// Ranges deleted.
    deletes: Vec<KeyRange>,
}

/// Checks each operation, and that no key is written twice (two puts, or a put inside a deleted
/// range), counting what a nested transaction may write: every key changes at most once per
/// revision, which the MVCC index relies on. Deletes may overlap each other (a key already
/// deleted is not deleted again).
fn validate_branch(branch: &[RequestOp], limits: &Limits) -> Result<Writes> {
    let mut puts: Vec<Bytes> = Vec::new();
    let mut deletes: Vec<KeyRange> = Vec::new();
    for op in branch {
        match op.op.as_ref().expect("checked by check_well_formed") {
            TxnOp::Range(range) => range.validate(limits)?,
            TxnOp::Put(put) => {
                put.validate(limits)?;
                puts.push(put.key.clone());
            }
            TxnOp::DeleteRange(delete) => {
                delete.validate(limits)?;
                deletes.push(KeyRange::new(&delete.key, &delete.range_end));
            }
            TxnOp::Lock(lock) => {
                lock.validate(limits)?;
                puts.push(lock.key.clone());
            }
            TxnOp::Txn(nested) => {
                let writes = nested.writes(limits)?;
                puts.extend(writes.puts);
                deletes.extend(writes.deletes);
            }
        }
    }
    let mut sorted = puts.clone();
    sorted.sort_unstable();
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(invalid(format!("transaction puts key {:?} twice", pair[0])));
    }
    for key in &puts {
        if deletes.iter().any(|range| range.contains(key)) {
            return Err(invalid(format!(
                "transaction both puts and deletes key {key:?}"
            )));
        }
    }
    Ok(Writes { puts, deletes })
}
