//! The state machine every node runs: the real `raftkv_kv::KvStore`, and a thin adapter between it
//! and the simulator's workload.
//!
//! Clients think in registers: `Op` names a register (`Key`) and values (`Value`, unique per
//! write, so a read tells exactly which write it saw), and `OpResult` is what the store's answer
//! means for the register model of the linearizability checker. `Command::request` turns an
//! operation into the `raftkv_kv::Request` a log entry carries (a put, a delete, a
//! compare-and-swap transaction, a read-only transaction for reads through the log, a lease grant
//! or a session open), tagged with the client's session and sequence number so a retried write
//! takes effect once. `StateMachine` wraps the store: it applies entries (`Applied` tells what the
//! entry did: its answer, the lease it granted or revoked with the keys the revoke deleted, the
//! value it wrote), serves reads, writes and restores snapshots, and hashes the replicated state
//! (`KvStore::state_hash`) for State Machine Safety.
//!
//! Time: the store's lease clock is in milliseconds; one unit of virtual time is `MS_PER_TIME`
//! milliseconds (a tick is 100 ms, the core's default tick).
//!
//! Invariant: the same entries applied from the same snapshot give the same `state_hash`, the same
//! answers and the same `Applied` on every node; nothing here iterates a hash map or draws
//! randomness.

use std::fmt;

use bytes::Bytes;
use raftkv_kv::{
    Compare, CompareOp, CompareTarget, KvError, PutRequest, RangeRequest, Reply, Request,
    TxnOpResponse, TxnRequest,
};
use raftkv_raft::EntryKind;
use raftkv_replica::{ApplyRecord, State};

use crate::network::Time;

pub use raftkv_kv::LeaseId;

/// A simulated client's number (1, 2, ...), which routes answers back to it.
pub type ClientId = u32;
/// An operation's number within its client: increases by one per new operation, and is also the
/// sequence number of its write in the client's session.
pub type RequestId = u64;
/// A client session in the store: the log index of the command that opened it (0: none).
pub type SessionId = u64;
/// A register's name.
pub type Key = u32;
/// A register's value.
pub type Value = u64;

/// Milliseconds of the store's lease clock per unit of virtual time.
pub const MS_PER_TIME: u64 = 10;

/// Virtual time in the store's milliseconds.
pub fn ms(time: Time) -> u64 {
    time * MS_PER_TIME
}

/// An operation of a client (or, for `Revoke`, of the system).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Write `value` into `key`, attached to `lease` (0: none).
    Put {
        /// Register written.
        key: Key,
        /// Value written.
        value: Value,
        /// Lease the key is attached to (0: none).
        lease: LeaseId,
    },
    /// Delete `key`.
    Delete {
        /// Register deleted.
        key: Key,
    },
    /// Write `value` into `key` if it holds `expected` now (`None`: if it does not exist).
    Cas {
        /// Register.
        key: Key,
        /// The value it must hold.
        expected: Option<Value>,
        /// The value written if so.
        value: Value,
    },
    /// Read `key` (through the log, or outside it after a read barrier).
    Get {
        /// Register read.
        key: Key,
    },
    /// Grant a lease of `ttl_ms` milliseconds.
    LeaseGrant {
        /// Time to live.
        ttl_ms: u64,
    },
    /// Open a session for exactly-once writes.
    SessionOpen,
    /// The system's revocation of an expired lease, as seen by one of its keys: a delete of `key`
    /// (never issued by a client; recorded when the revoke is first applied).
    Revoke {
        /// The key deleted.
        key: Key,
        /// The lease revoked.
        lease: LeaseId,
    },
}

impl Op {
    /// The register the operation touches, if any.
    pub fn key(&self) -> Option<Key> {
        match *self {
            Op::Put { key, .. }
            | Op::Delete { key }
            | Op::Cas { key, .. }
            | Op::Get { key }
            | Op::Revoke { key, .. } => Some(key),
            Op::LeaseGrant { .. } | Op::SessionOpen => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put {
                key,
                value,
                lease: 0,
            } => write!(f, "put k{key}={value:x}"),
            Op::Put { key, value, lease } => write!(f, "put k{key}={value:x} lease {lease}"),
            Op::Delete { key } => write!(f, "delete k{key}"),
            Op::Cas {
                key,
                expected: Some(old),
                value,
            } => write!(f, "cas k{key} {old:x}->{value:x}"),
            Op::Cas {
                key,
                expected: None,
                value,
            } => write!(f, "cas k{key} nil->{value:x}"),
            Op::Get { key } => write!(f, "get k{key}"),
            Op::LeaseGrant { ttl_ms } => write!(f, "grant ttl {ttl_ms}ms"),
            Op::SessionOpen => write!(f, "open session"),
            Op::Revoke { key, lease } => write!(f, "revoke lease {lease}: delete k{key}"),
        }
    }
}

/// What an operation returned, as the register model reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpResult {
    /// A put took effect.
    Written,
    /// A delete took effect; whether the key existed.
    Deleted(bool),
    /// A compare-and-swap found the expected value and wrote.
    Swapped,
    /// A compare-and-swap found this instead (`None`: no key) and wrote nothing.
    NotSwapped(Option<Value>),
    /// A get saw this value (`None`: no key).
    Read(Option<Value>),
    /// A lease was granted with this id.
    Granted(LeaseId),
    /// A session was opened with this id.
    Opened(SessionId),
    /// A put was refused because its lease does not exist (it changed nothing).
    NoLease,
    /// The store refused the command for another reason (it changed nothing); a live client's
    /// command is never refused, so this is reported.
    Refused,
}

impl fmt::Display for OpResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpResult::Written => write!(f, "ok"),
            OpResult::Deleted(existed) => write!(f, "deleted (existed: {existed})"),
            OpResult::Swapped => write!(f, "swapped"),
            OpResult::NotSwapped(Some(v)) => write!(f, "not swapped (found {v:x})"),
            OpResult::NotSwapped(None) => write!(f, "not swapped (found nil)"),
            OpResult::Read(Some(v)) => write!(f, "{v:x}"),
            OpResult::Read(None) => write!(f, "nil"),
            OpResult::Granted(id) => write!(f, "lease {id}"),
            OpResult::Opened(id) => write!(f, "session {id}"),
            OpResult::NoLease => write!(f, "refused: no such lease"),
            OpResult::Refused => write!(f, "refused"),
        }
    }
}

/// One client command: who sent it, in which session, and what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Command {
    /// The client.
    pub client: ClientId,
    /// Its session in the store (0: none; a session open never has one).
    pub session: SessionId,
    /// Its number in the client (and sequence number in the session).
    pub request: RequestId,
    /// What to do.
    pub op: Op,
}

/// The store key of register `key`.
pub fn key_bytes(key: Key) -> Bytes {
    Bytes::from(format!("k{key}"))
}

/// The register a store key names (`None` for any other key).
fn register(key: &[u8]) -> Option<Key> {
    std::str::from_utf8(key.strip_prefix(b"k")?)
        .ok()?
        .parse()
        .ok()
}

/// The stored bytes of `value`.
fn value_bytes(value: Value) -> Bytes {
    Bytes::copy_from_slice(&value.to_be_bytes())
}

/// The value stored bytes hold (a value no client wrote when they are not 8 bytes).
fn value_of(bytes: &[u8]) -> Value {
    bytes.try_into().map_or(Value::MAX, Value::from_be_bytes)
}

impl Command {
    /// The store request this command proposes.
    pub fn request(&self) -> Request {
        let request = match self.op {
            Op::Put { key, value, lease } => Request::new(raftkv_kv::Op::Put(
                PutRequest::new(key_bytes(key), value_bytes(value)).with_lease(lease),
            )),
            Op::Delete { key } | Op::Revoke { key, .. } => Request::delete(key_bytes(key)),
            Op::Cas {
                key,
                expected,
                value,
            } => {
                // On value, not mod revision: values are unique per write, so "holds `expected`"
                // is "the last write was the one that wrote `expected`", and the register model
                // needs no revisions. A missing key never compares equal on value; it has
                // version 0.
                let compare = match expected {
                    Some(old) => Compare::new(
                        key_bytes(key),
                        CompareOp::Equal,
                        CompareTarget::Value(value_bytes(old)),
                    ),
                    None => {
                        Compare::new(key_bytes(key), CompareOp::Equal, CompareTarget::Version(0))
                    }
                };
                Request::txn(TxnRequest {
                    compare: vec![compare],
                    success: vec![PutRequest::new(key_bytes(key), value_bytes(value)).into()],
                    failure: vec![RangeRequest::key(key_bytes(key)).into()],
                })
            }
            Op::Get { key } => Request::txn(TxnRequest {
                compare: Vec::new(),
                success: vec![RangeRequest::key(key_bytes(key)).into()],
                failure: Vec::new(),
            }),
            Op::LeaseGrant { ttl_ms } => Request::lease_grant(0, ttl_ms),
            Op::SessionOpen => return Request::session_open(),
        };
        if self.session == 0 {
            request
        } else {
            request.with_session(self.session, self.request)
        }
    }

    /// The entry payload for this command: the store request in the server's command envelope.
    pub fn encode(&self) -> Bytes {
        raftkv_replica::Command::kv(Bytes::from(self.request().encode_to_vec()))
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}#{} {}", self.client, self.request, self.op)
    }
}

/// What applying one entry did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The answer, as the register model reads it (`None`: a no-op, a membership entry, or a
    /// command no client waits for, such as a revoke).
    pub result: Option<OpResult>,
    /// The store's error, when it refused the command.
    pub error: Option<String>,
    /// The command was a retry of its session's last write, answered from the session table.
    pub retry: bool,
    /// A lease this entry granted, with its TTL in milliseconds.
    pub granted: Option<(LeaseId, u64)>,
    /// The leases this entry revoked, each with the registers the revoke deleted.
    pub revoked: Vec<(LeaseId, Vec<Key>)>,
    /// The value this entry wrote into a register (the store's revision went up and the key's
    /// last change is this revision).
    pub wrote: Option<(Key, Value)>,
}

/// What the store's answer to `op` means for the register model (`None`: the entry was not a
/// key-value request, which no client command ever is).
pub fn op_result(op: &Op, applied: &raftkv_replica::Applied) -> Option<OpResult> {
    let raftkv_replica::Applied::Kv(response) = applied else {
        return None;
    };
    let reply = match &response.result {
        Ok(reply) => reply,
        Err(KvError::LeaseNotFound { .. }) => return Some(OpResult::NoLease),
        Err(_) => return Some(OpResult::Refused),
    };
    Some(match (reply, op) {
        (Reply::Put(_), _) => OpResult::Written,
        (Reply::DeleteRange(delete), _) => OpResult::Deleted(delete.deleted > 0),
        (Reply::Txn(txn), Op::Get { .. }) => OpResult::Read(first_value(txn.responses.first())),
        (Reply::Txn(txn), _) if txn.succeeded => OpResult::Swapped,
        (Reply::Txn(txn), _) => OpResult::NotSwapped(first_value(txn.responses.first())),
        (Reply::LeaseGrant(grant), _) => OpResult::Granted(grant.id),
        (Reply::SessionOpen(open), _) => OpResult::Opened(open.client_id),
        _ => OpResult::Refused,
    })
}

/// What one applied entry did, as the checkers read it, from the engine's record of it.
pub fn effect(record: &ApplyRecord) -> Applied {
    let mut applied = Applied {
        retry: record.retry,
        ..Applied::default()
    };
    let raftkv_replica::Applied::Kv(response) = &record.applied else {
        return applied;
    };
    let request = match &record.entry.kind {
        EntryKind::Normal => raftkv_replica::Command::kv_request(&record.entry.data)
            .and_then(|bytes| Request::decode(&bytes).ok()),
        EntryKind::ConfChange(_) => None,
    };
    let Some(op) = request.and_then(|r| r.op) else {
        return applied;
    };
    let bumped = response.revision > record.revision_before;
    let reply = match &response.result {
        Ok(reply) => reply,
        Err(error) => {
            applied.result = Some(match error {
                KvError::LeaseNotFound { .. } => OpResult::NoLease,
                _ => OpResult::Refused,
            });
            applied.error = Some(error.to_string());
            return applied;
        }
    };
    let written = |put: &PutRequest| {
        register(&put.key)
            .filter(|_| bumped)
            .map(|key| (key, value_of(&put.value)))
    };
    applied.result = match (reply, &op) {
        (Reply::Put(_), raftkv_kv::Op::Put(put)) => {
            applied.wrote = written(put);
            Some(OpResult::Written)
        }
        (Reply::DeleteRange(delete), _) => Some(OpResult::Deleted(delete.deleted > 0)),
        (Reply::Txn(txn), raftkv_kv::Op::Txn(request)) if request.compare.is_empty() => {
            Some(OpResult::Read(first_value(txn.responses.first())))
        }
        (Reply::Txn(txn), raftkv_kv::Op::Txn(request)) => {
            if txn.succeeded {
                applied.wrote = request.success.iter().find_map(|op| match &op.op {
                    Some(raftkv_kv::TxnOp::Put(put)) => written(put),
                    _ => None,
                });
                Some(OpResult::Swapped)
            } else {
                Some(OpResult::NotSwapped(first_value(txn.responses.first())))
            }
        }
        (Reply::LeaseGrant(grant), _) => {
            if !record.retry {
                applied.granted = Some((grant.id, grant.ttl_ms));
            }
            Some(OpResult::Granted(grant.id))
        }
        (Reply::LeaseRevoke(_), raftkv_kv::Op::LeaseRevoke(_))
        | (Reply::LeaseExpire(_), raftkv_kv::Op::LeaseExpire(_)) => {
            applied.revoked = record
                .lease_keys
                .iter()
                .map(|(lease, keys)| (*lease, keys.iter().filter_map(|k| register(k)).collect()))
                .collect();
            None
        }
        (Reply::SessionOpen(open), _) => Some(OpResult::Opened(open.client_id)),
        _ => None,
    };
    applied
}

/// The value of `key` in `state` now (a read outside the log, once the read index is applied).
pub fn get(state: &State, key: Key) -> Option<Value> {
    let read = state.kv.range(&RangeRequest::key(key_bytes(key))).ok()?;
    read.kvs.first().map(|kv| value_of(&kv.value))
}

/// The value of the first key a transaction's range answered (`None`: no key).
fn first_value(response: Option<&raftkv_kv::ResponseOp>) -> Option<Value> {
    match response.and_then(|r| r.op.as_ref()) {
        Some(TxnOpResponse::Range(range)) => range.kvs.first().map(|kv| value_of(&kv.value)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use raftkv_raft::{Config, MemStorage};
    use raftkv_replica::{Output, Replica, Settings};

    use super::*;

    /// A one-node replica over `MemStorage`, every write durable at once.
    struct One {
        engine: Replica<MemStorage>,
        next: u64,
    }

    impl One {
        fn new() -> One {
            let settings = Settings {
                record_applies: true,
                snapshot_entries: 0,
                history_compact_interval_ticks: 0,
                ..Settings::default()
            };
            let engine = Replica::new(&Config::new(1, vec![1]), MemStorage::new(), settings, 0)
                .expect("a fresh replica starts");
            let mut one = One { engine, next: 1 };
            one.run(0);
            one
        }

        /// Carries out the engine's output until none is left; the effects of key-value entries.
        fn run(&mut self, now_ms: u64) -> Vec<Applied> {
            let mut effects = Vec::new();
            loop {
                let Output {
                    persist, events, ..
                } = self.engine.take_output(now_ms);
                if persist.is_empty() && events.is_empty() {
                    return effects;
                }
                for event in events {
                    if let raftkv_replica::Event::Applied(record) = event
                        && raftkv_replica::Command::kv_request(&record.entry.data).is_some()
                    {
                        effects.push(effect(&record));
                    }
                }
                for write in persist {
                    let storage = self.engine.storage_mut();
                    if let Some(hs) = write.hard_state {
                        storage.set_hard_state(hs);
                    }
                    storage.append(&write.entries);
                    self.engine
                        .persisted(now_ms, write.seq, None)
                        .expect("nothing to restore");
                }
            }
        }

        fn apply_at(&mut self, command: &Command, now_ms: u64) -> Applied {
            self.engine.propose(self.next, command.encode());
            self.next += 1;
            self.run(now_ms).pop().expect("the command was applied")
        }

        fn apply(&mut self, command: &Command) -> Applied {
            self.apply_at(command, 0)
        }

        fn get(&self, key: Key) -> Option<Value> {
            get(&self.engine.state(), key)
        }
    }

    fn command(session: SessionId, request: RequestId, op: Op) -> Command {
        Command {
            client: 1,
            session,
            request,
            op,
        }
    }

    #[test]
    fn operations_mean_what_the_register_model_says() {
        let mut sm = One::new();
        let open = sm.apply(&command(0, 1, Op::SessionOpen));
        let Some(OpResult::Opened(session)) = open.result else {
            panic!("no session: {open:?}");
        };
        let put = Op::Put {
            key: 3,
            value: 7,
            lease: 0,
        };
        let applied = sm.apply(&command(session, 2, put));
        assert_eq!(applied.result, Some(OpResult::Written));
        assert_eq!(applied.wrote, Some((3, 7)));
        // The retry of the same write is answered from the session and writes nothing.
        let again = sm.apply(&command(session, 2, put));
        assert_eq!(again.result, Some(OpResult::Written));
        assert_eq!(again.wrote, None);
        assert!(again.retry && !applied.retry);
        let cas = |expected, value| Op::Cas {
            key: 3,
            expected,
            value,
        };
        let swapped = sm.apply(&command(session, 3, cas(Some(7), 8)));
        assert_eq!(swapped.result, Some(OpResult::Swapped));
        assert_eq!(swapped.wrote, Some((3, 8)));
        let missed = sm.apply(&command(session, 4, cas(Some(7), 9)));
        assert_eq!(missed.result, Some(OpResult::NotSwapped(Some(8))));
        let get = sm.apply(&command(session, 5, Op::Get { key: 3 }));
        assert_eq!(get.result, Some(OpResult::Read(Some(8))));
        assert_eq!(sm.get(3), Some(8));
        let delete = sm.apply(&command(session, 6, Op::Delete { key: 3 }));
        assert_eq!(delete.result, Some(OpResult::Deleted(true)));
        let created = sm.apply(&command(session, 7, cas(None, 10)));
        assert_eq!(created.result, Some(OpResult::Swapped));
        assert_eq!(sm.get(3), Some(10));
    }

    #[test]
    fn leases_grant_attach_and_revoke() {
        let mut sm = One::new();
        let grant = sm.apply(&command(0, 1, Op::LeaseGrant { ttl_ms: 500 }));
        let Some((lease, 500)) = grant.granted else {
            panic!("no grant: {grant:?}");
        };
        let put = |key, lease| Op::Put {
            key,
            value: u64::from(key),
            lease,
        };
        assert_eq!(
            sm.apply(&command(0, 2, put(4, lease))).result,
            Some(OpResult::Written)
        );
        assert_eq!(
            sm.apply(&command(0, 3, put(5, lease + 100))).result,
            Some(OpResult::NoLease)
        );
        // The leader proposes the revoke once the lease's deadline passed.
        sm.engine.tick(499);
        assert!(sm.run(499).is_empty());
        sm.engine.tick(10_000);
        let revoked = sm.run(10_000);
        assert_eq!(revoked.len(), 1, "{revoked:?}");
        assert_eq!(revoked[0].revoked, vec![(lease, vec![4])]);
        assert_eq!(sm.get(4), None);
    }
}
