//! The replicated state machine: a key-value register store, and the commands clients put in
//! log entries to drive it.
//!
//! A command is tagged with the client's id and a request id. The state machine remembers the last
//! request id and result of each client session, so a retried command that commits twice takes
//! effect once (at its first application) and both copies answer with the same result.
//!
//! Invariant: applying the same sequence of entries from an empty store always yields the same
//! store and the same results; entries that are not commands (a leader's empty entry) are skipped.

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
#[derive(Clone, Debug, Default)]
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
}
