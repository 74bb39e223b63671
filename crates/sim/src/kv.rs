//! The replicated state machine: a key-value register store, and the commands clients put in
//! log entries to drive it.
//!
//! A command is tagged with the client's id and a request id. The state machine remembers the last
//! request id and result of each client session, so a retried command that commits twice takes
//! effect once (at its first application) and both copies answer with the same result.
//!
//! The store serializes whole (`snapshot`) and comes back from those bytes (`restore`): what a
//! Raft snapshot carries. `digest` fingerprints the whole state, so checkers can compare the state
//! two nodes reached at one index, and a restored snapshot with the state it claims to be.
//!
//! Invariant: applying the same sequence of entries from an empty store always yields the same
//! store and the same results; entries that are not commands (a leader's empty entry) are skipped;
//! `restore(snapshot())` is the same store.

use std::collections::BTreeMap;
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A client's identity.
pub type ClientId = u32;
/// A request's number within its client's session; increases by one per new operation.
pub type RequestId = u64;
/// A register's name.
pub type Key = u32;
/// A register's value.
pub type Value = u64;

/// An operation on one register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Write `value` into `key`.
    Put {
        /// Register written.
        key: Key,
        /// Value written.
        value: Value,
    },
    /// Read `key` (through the log, so the read is linearizable).
    Get {
        /// Register read.
        key: Key,
    },
}

impl Op {
    /// The register the operation touches.
    pub fn key(&self) -> Key {
        match *self {
            Op::Put { key, .. } | Op::Get { key } => key,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put { key, value } => write!(f, "put k{key}={value}"),
            Op::Get { key } => write!(f, "get k{key}"),
        }
    }
}

/// What an operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpResult {
    /// A put took effect.
    Written,
    /// A get saw this value (`None`: never written).
    Read(Option<Value>),
}

impl fmt::Display for OpResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpResult::Written => write!(f, "ok"),
            OpResult::Read(Some(v)) => write!(f, "{v}"),
            OpResult::Read(None) => write!(f, "nil"),
        }
    }
}

/// One client command as it travels in a log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Command {
    /// The session it belongs to.
    pub client: ClientId,
    /// Its number in that session.
    pub request: RequestId,
    /// What to do.
    pub op: Op,
}

const TAG_PUT: u8 = 1;
const TAG_GET: u8 = 2;
/// Bytes of an encoded command: tag, client, request, key, value.
const ENCODED_LEN: usize = 1 + 4 + 8 + 4 + 8;

impl Command {
    /// The entry payload for this command.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(ENCODED_LEN);
        let (tag, key, value) = match self.op {
            Op::Put { key, value } => (TAG_PUT, key, value),
            Op::Get { key } => (TAG_GET, key, 0),
        };
        buf.put_u8(tag);
        buf.put_u32(self.client);
        buf.put_u64(self.request);
        buf.put_u32(key);
        buf.put_u64(value);
        buf.freeze()
    }

    /// The command in an entry payload; `None` for anything else (an empty entry, garbage).
    pub fn decode(mut data: &[u8]) -> Option<Command> {
        if data.len() != ENCODED_LEN {
            return None;
        }
        let tag = data.get_u8();
        let client = data.get_u32();
        let request = data.get_u64();
        let key = data.get_u32();
        let value = data.get_u64();
        let op = match tag {
            TAG_PUT => Op::Put { key, value },
            TAG_GET => Op::Get { key },
            _ => return None,
        };
        Some(Command {
            client,
            request,
            op,
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}#{} {}", self.client, self.request, self.op)
    }
}

/// The key-value store one node applies committed entries to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    /// Register contents.
    data: BTreeMap<Key, Value>,
    /// Per client: the last request applied and its result (deduplicates retries).
    sessions: BTreeMap<ClientId, (RequestId, OpResult)>,
}

impl KvStore {
    /// Applies one committed entry's payload. Returns the command and its result when the entry is
    /// a command whose answer the client may still wait for: its first application, or a retried
    /// copy of the session's last request. Older duplicates and non-commands return `None`.
    pub fn apply(&mut self, data: &[u8]) -> Option<(Command, OpResult)> {
        let command = Command::decode(data)?;
        if let Some(&(last, result)) = self.sessions.get(&command.client) {
            if command.request < last {
                return None;
            }
            if command.request == last {
                return Some((command, result));
            }
        }
        let result = match command.op {
            Op::Put { key, value } => {
                self.data.insert(key, value);
                OpResult::Written
            }
            Op::Get { key } => OpResult::Read(self.data.get(&key).copied()),
        };
        self.sessions
            .insert(command.client, (command.request, result));
        Some((command, result))
    }

    /// The value of `key` now (for reads served outside the log).
    pub fn get(&self, key: Key) -> Option<Value> {
        self.data.get(&key).copied()
    }

    /// The whole store as bytes: registers, then sessions, in key order.
    pub fn snapshot(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u32(self.data.len() as u32);
        for (&key, &value) in &self.data {
            buf.put_u32(key);
            buf.put_u64(value);
        }
        buf.put_u32(self.sessions.len() as u32);
        for (&client, &(request, result)) in &self.sessions {
            buf.put_u32(client);
            buf.put_u64(request);
            match result {
                OpResult::Written => buf.put_u8(0),
                OpResult::Read(None) => buf.put_u8(1),
                OpResult::Read(Some(v)) => {
                    buf.put_u8(2);
                    buf.put_u64(v);
                }
            }
        }
        buf.freeze()
    }

    /// The store `snapshot` produced; `None` when the bytes are not one (truncated, garbage).
    pub fn restore(mut data: &[u8]) -> Option<KvStore> {
        let mut store = KvStore::default();
        let registers = read_u32(&mut data)?;
        for _ in 0..registers {
            let key = read_u32(&mut data)?;
            let value = read_u64(&mut data)?;
            store.data.insert(key, value);
        }
        let sessions = read_u32(&mut data)?;
        for _ in 0..sessions {
            let client = read_u32(&mut data)?;
            let request = read_u64(&mut data)?;
            let result = match read_u8(&mut data)? {
                0 => OpResult::Written,
                1 => OpResult::Read(None),
                2 => OpResult::Read(Some(read_u64(&mut data)?)),
                _ => return None,
            };
            store.sessions.insert(client, (request, result));
        }
        data.is_empty().then_some(store)
    }

    /// A fingerprint of the whole state (FNV-1a over `snapshot`): equal stores, equal digests.
    pub fn digest(&self) -> u64 {
        let mut hash = 0xCBF2_9CE4_8422_2325u64;
        for byte in self.snapshot() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
        }
        hash
    }
}

fn read_u8(data: &mut &[u8]) -> Option<u8> {
    (data.remaining() >= 1).then(|| data.get_u8())
}

fn read_u32(data: &mut &[u8]) -> Option<u32> {
    (data.remaining() >= 4).then(|| data.get_u32())
}

fn read_u64(data: &mut &[u8]) -> Option<u64> {
    (data.remaining() >= 8).then(|| data.get_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for op in [Op::Put { key: 3, value: 99 }, Op::Get { key: 7 }] {
            let c = Command {
                client: 2,
                request: 5,
                op,
            };
            assert_eq!(Command::decode(&c.encode()), Some(c));
        }
        assert_eq!(Command::decode(&[]), None);
    }

    #[test]
    fn retries_apply_once() {
        let mut kv = KvStore::default();
        let put = |request, value| Command {
            client: 1,
            request,
            op: Op::Put { key: 1, value },
        };
        let get = Command {
            client: 2,
            request: 1,
            op: Op::Get { key: 1 },
        };
        assert!(kv.apply(&put(1, 10).encode()).is_some());
        assert!(kv.apply(&put(2, 20).encode()).is_some());
        assert_eq!(kv.apply(&put(1, 10).encode()), None);
        assert_eq!(
            kv.apply(&get.encode()).map(|(_, r)| r),
            Some(OpResult::Read(Some(20)))
        );
    }

    #[test]
    fn snapshot_round_trips() {
        let mut kv = KvStore::default();
        assert_eq!(KvStore::restore(&kv.snapshot()), Some(kv.clone()));
        for (client, request, op) in [
            (1, 1, Op::Put { key: 1, value: 10 }),
            (2, 1, Op::Get { key: 1 }),
            (3, 4, Op::Get { key: 9 }),
        ] {
            kv.apply(
                &Command {
                    client,
                    request,
                    op,
                }
                .encode(),
            );
        }
        let restored = KvStore::restore(&kv.snapshot()).unwrap();
        assert_eq!(restored, kv);
        assert_eq!(restored.digest(), kv.digest());
        assert_eq!(restored.get(1), Some(10));
        assert_eq!(KvStore::restore(&kv.snapshot()[..5]), None);
    }
}
