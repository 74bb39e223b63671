//! Snapshots: the whole replicated state as a stream of checksummed records, and its restore.
//!
//! ## Format (version [`SNAPSHOT_FORMAT_VERSION`])
//!
//! ```text
//! snapshot := MAGIC record*                       MAGIC = "RKVSNAP\0"
//! record   := len: u32 LE | kind: u8 | payload (len bytes) | crc32c(kind ‖ payload): u32 LE
//! ```
//!
//! Records come in this order: one `Header` (format version, applied index, revision, compacted
//! revision), `Keys` chunks (key histories in key order; a long history may continue in the next
//! record under the same key), `Leases` chunks (id, TTL), `Sessions` chunks (id, last sequence,
//! last activity, last answer), `LockSessions` chunks (kind 6: Consul's sessions, each whole),
//! one `End` (counts and the state hash), then end of stream.
//! Payloads are prost messages. Chunks aim at [`SNAPSHOT_CHUNK_BYTES`], so neither writing nor
//! reading holds more than about one chunk besides the state itself.
//!
//! What is left out, because it is derived or node-local: the changelog (rebuilt from histories),
//! lease key sets (rebuilt from the keys' current entries), lease deadlines (restore sets none;
//! see `lease`), watches, the clock.
//!
//! ## Checks on restore
//!
//! Every record's CRC; the record order; every MVCC invariant (`mvcc` and `mvcc::history` docs);
//! leases referenced by live keys exist; ids strictly increasing; each lock session's behavior
//! known and lease present and its own; each held key's lock session present; the counts; and
//! finally that the
//! restored state hashes to the `End` record's hash. Anything else is
//! [`KvError::CorruptSnapshot`]; a failed read is [`KvError::SnapshotIo`].

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use bytes::Bytes;
use prost::Message;

use crate::command::Response;
use crate::lease::Leases;
use crate::locks::{LockSession, LockSessions};
use crate::mvcc::{KeyEntry, KeyHistory, KeyIndex, KeyMeta, Mvcc};
use crate::session::{Session, Sessions};
use crate::{KvError, KvStore, LeaseId, Limits, Result, Revision};

/// The snapshot format this code writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// Payload size a writer aims at per record, in bytes.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest record payload a reader accepts, in bytes (a chunk plus one history entry of the
/// largest allowed key and value fits many times over).
pub const SNAPSHOT_RECORD_BYTES_MAX: u32 = 64 * 1024 * 1024;

const MAGIC: &[u8; 8] = b"RKVSNAP\0";
const KIND_HEADER: u8 = 1;
const KIND_KEYS: u8 = 2;
const KIND_LEASES: u8 = 3;
const KIND_SESSIONS: u8 = 4;
const KIND_END: u8 = 5;
const KIND_LOCK_SESSIONS: u8 = 6;

/// Where a record kind comes in the stream (lock sessions, added later, before the end).
fn rank(kind: u8) -> Option<u8> {
    match kind {
        KIND_HEADER | KIND_KEYS | KIND_LEASES | KIND_SESSIONS => Some(kind),
        KIND_LOCK_SESSIONS => Some(5),
        KIND_END => Some(6),
        _ => None,
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct HeaderRecord {
    #[prost(uint32, tag = "1")]
    format_version: u32,
    #[prost(uint64, tag = "2")]
    applied_index: u64,
    #[prost(int64, tag = "3")]
    revision: i64,
    #[prost(int64, tag = "4")]
    compacted_revision: i64,
    /// The lock sessions index (`KvStore::lock_sessions_index`; 0 in snapshots written before it
    /// was carried: a client blocked on a later index is answered at once, as after any reset).
    #[prost(uint64, tag = "5")]
    lock_sessions_index: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EntryRecord {
    #[prost(bytes = "bytes", tag = "1")]
    value: Bytes,
    #[prost(int64, tag = "2")]
    create_revision: i64,
    #[prost(int64, tag = "3")]
    mod_revision: i64,
    #[prost(int64, tag = "4")]
    version: i64,
    #[prost(int64, tag = "5")]
    lease: i64,
    #[prost(uint64, tag = "6")]
    flags: u64,
    #[prost(uint64, tag = "7")]
    lock_index: u64,
    #[prost(uint64, tag = "8")]
    session: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeyRecord {
    #[prost(bytes = "bytes", tag = "1")]
    key: Bytes,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<EntryRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeysChunk {
    #[prost(message, repeated, tag = "1")]
    keys: Vec<KeyRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LeaseRecord {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(uint64, tag = "2")]
    ttl_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LeasesChunk {
    #[prost(message, repeated, tag = "1")]
    leases: Vec<LeaseRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SessionRecord {
    #[prost(uint64, tag = "1")]
    client_id: u64,
    #[prost(uint64, tag = "2")]
    last_seq: u64,
    #[prost(uint64, tag = "3")]
    last_active_index: u64,
    #[prost(bytes = "vec", optional, tag = "4")]
    last_response: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SessionsChunk {
    #[prost(message, repeated, tag = "1")]
    sessions: Vec<SessionRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LockSessionsChunk {
    #[prost(message, repeated, tag = "1")]
    sessions: Vec<LockSession>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EndRecord {
    #[prost(uint64, tag = "1")]
    keys: u64,
    #[prost(uint64, tag = "2")]
    entries: u64,
    #[prost(uint64, tag = "3")]
    leases: u64,
    #[prost(uint64, tag = "4")]
    sessions: u64,
    #[prost(fixed64, tag = "5")]
    state_hash: u64,
}

fn write_record(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).expect("records are chunked far below 4 GiB");
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&[kind])?;
    w.write_all(payload)?;
    w.write_all(&crc.to_le_bytes())
}

/// Collects items into records of about [`SNAPSHOT_CHUNK_BYTES`].
struct Chunker<'w, W: Write, M: Message + Default> {
    w: &'w mut W,
    kind: u8,
    chunk: M,
}

impl<'w, W: Write, M: Message + Default> Chunker<'w, W, M> {
    fn new(w: &'w mut W, kind: u8) -> Self {
        Chunker {
            w,
            kind,
            chunk: M::default(),
        }
    }

    fn full(&self, adding: usize) -> bool {
        self.chunk.encoded_len() + adding > SNAPSHOT_CHUNK_BYTES
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.chunk.encoded_len() > 0 {
            write_record(
                self.w,
                self.kind,
                &std::mem::take(&mut self.chunk).encode_to_vec(),
            )?;
        }
        Ok(())
    }
}

/// A consistent copy of the replicated state ([`KvStore::snapshot_view`]), taken in one short
/// step and written as a snapshot stream later, on any thread, while the store moves on. The key
/// index is shared copy-on-write with the store (see `mvcc::index`); leases and sessions are
/// copied (they are bounded by [`Limits::leases_max`] and [`Limits::sessions_max`]).
#[derive(Debug, Clone)]
pub struct SnapshotView {
    /// The applied index of the state.
    applied_index: u64,
    /// Its revision.
    revision: Revision,
    /// Its compacted revision.
    compacted: Revision,
    /// Every key's history.
    keys: KeyIndex,
    /// Every lease's id and TTL, in id order.
    leases: Vec<(LeaseId, u64)>,
    /// The session table.
    sessions: Sessions,
    /// The lock sessions, in id order.
    lock_sessions: Vec<LockSession>,
    /// The lock sessions index (an index of the log, not state: not hashed).
    lock_sessions_index: u64,
}

impl KvStore {
    /// A consistent copy of the replicated state to write a snapshot from (cheap: the key index
    /// is shared, not copied).
    pub fn snapshot_view(&self) -> SnapshotView {
        SnapshotView {
            applied_index: self.applied_index,
            revision: self.mvcc.revision(),
            compacted: self.mvcc.compacted(),
            keys: self.mvcc.key_index(),
            leases: self.leases.iter().map(|(id, l)| (*id, l.ttl_ms)).collect(),
            sessions: self.sessions.clone(),
            lock_sessions: self.lock_sessions.iter().cloned().collect(),
            lock_sessions_index: self.lock_sessions.changed_index(),
        }
    }

    /// Writes the replicated state as a snapshot stream (module docs), in chunks.
    pub fn write_snapshot(&self, w: &mut impl Write) -> io::Result<()> {
        self.snapshot_view().write_to(w)
    }
}

impl SnapshotView {
    /// The applied index of the state this view holds.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The state hash of the state this view holds ([`KvStore::state_hash`]).
    pub fn state_hash(&self) -> u64 {
        crate::hash::state_hash(
            self.applied_index,
            self.revision,
            self.compacted,
            self.keys.len(),
            self.keys.iter(),
            self.leases.iter().copied(),
            self.leases.len(),
            &self.sessions,
            self.lock_sessions.iter(),
        )
    }

    /// Writes the state as a snapshot stream (module docs), in chunks.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(MAGIC)?;
        let header = HeaderRecord {
            format_version: SNAPSHOT_FORMAT_VERSION,
            applied_index: self.applied_index,
            revision: self.revision,
            compacted_revision: self.compacted,
            lock_sessions_index: self.lock_sessions_index,
        };
        write_record(w, KIND_HEADER, &header.encode_to_vec())?;
        let mut entries = 0;
        let mut keys = Chunker::<_, KeysChunk>::new(w, KIND_KEYS);
        // Approximate sizes are enough to aim at the chunk size; the encoder is exact.
        let mut chunk_bytes = 0;
        for (key, history) in self.keys.iter() {
            let mut record = KeyRecord {
                key: key.clone(),
                entries: Vec::new(),
            };
            for e in history.entries() {
                let entry = EntryRecord {
                    value: e.value.clone(),
                    create_revision: e.create_revision,
                    mod_revision: e.mod_revision,
                    version: e.version,
                    lease: e.lease,
                    flags: e.meta().flags,
                    lock_index: e.meta().lock_index,
                    session: e.meta().session,
                };
                let size = entry.encoded_len() + key.len() + 16;
                if chunk_bytes + size > SNAPSHOT_CHUNK_BYTES && chunk_bytes > 0 {
                    if !record.entries.is_empty() {
                        let part = KeyRecord {
                            key: key.clone(),
                            entries: std::mem::take(&mut record.entries),
                        };
                        keys.chunk.keys.push(part);
                    }
                    keys.flush()?;
                    chunk_bytes = 0;
                }
                chunk_bytes += size;
                entries += 1;
                record.entries.push(entry);
            }
            keys.chunk.keys.push(record);
        }
        keys.flush()?;
        let mut leases = Chunker::<_, LeasesChunk>::new(w, KIND_LEASES);
        for &(id, ttl_ms) in &self.leases {
            if leases.full(32) {
                leases.flush()?;
            }
            leases.chunk.leases.push(LeaseRecord { id, ttl_ms });
        }
        leases.flush()?;
        let mut sessions = Chunker::<_, SessionsChunk>::new(w, KIND_SESSIONS);
        for (client_id, session) in self.sessions.iter() {
            let record = SessionRecord {
                client_id: *client_id,
                last_seq: session.last_seq,
                last_active_index: session.last_active_index,
                last_response: session.last_response.as_ref().map(Response::encode_to_vec),
            };
            if sessions.full(record.encoded_len() + 8) {
                sessions.flush()?;
            }
            sessions.chunk.sessions.push(record);
        }
        sessions.flush()?;
        let mut lock_sessions = Chunker::<_, LockSessionsChunk>::new(w, KIND_LOCK_SESSIONS);
        for session in &self.lock_sessions {
            if lock_sessions.full(session.encoded_len() + 8) {
                lock_sessions.flush()?;
            }
            lock_sessions.chunk.sessions.push(session.clone());
        }
        lock_sessions.flush()?;
        let end = EndRecord {
            keys: self.keys.len() as u64,
            entries,
            leases: self.leases.len() as u64,
            sessions: self.sessions.len() as u64,
            state_hash: self.state_hash(),
        };
        write_record(w, KIND_END, &end.encode_to_vec())
    }
}

impl KvStore {
    /// Restores a store from a snapshot stream, checking it completely (module docs). The new
    /// store has no watches (see [`KvStore::adopt_watches`]) and no lease deadlines (call
    /// [`KvStore::lease_promote`] on becoming leader).
    pub fn restore(r: &mut impl Read, limits: Limits) -> Result<KvStore> {
        Restorer::default().run(r, limits)
    }
}

fn corrupt(what: impl Into<String>) -> KvError {
    KvError::CorruptSnapshot(what.into())
}

fn io_error(e: io::Error) -> KvError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        corrupt("truncated stream")
    } else {
        KvError::SnapshotIo(e.to_string())
    }
}

/// Reads one record; `None` at a clean end of stream.
fn read_record(r: &mut impl Read) -> Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let n = read_full(r, &mut head)?;
    if n == 0 {
        return Ok(None);
    }
    if n < head.len() {
        return Err(corrupt("truncated record header"));
    }
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    if len > SNAPSHOT_RECORD_BYTES_MAX {
        return Err(corrupt(format!(
            "record of {len} bytes exceeds {SNAPSHOT_RECORD_BYTES_MAX}"
        )));
    }
    let mut payload = Vec::new();
    r.take(u64::from(len) + 4)
        .read_to_end(&mut payload)
        .map_err(io_error)?;
    if payload.len() != len as usize + 4 {
        return Err(corrupt("truncated record"));
    }
    let stored = u32::from_le_bytes(payload[len as usize..].try_into().expect("4 bytes"));
    payload.truncate(len as usize);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[4..]), &payload);
    if crc != stored {
        return Err(corrupt(format!(
            "record checksum mismatch (kind {})",
            head[4]
        )));
    }
    Ok(Some((head[4], payload)))
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    Ok(n)
}

fn decode<M: Message + Default>(payload: &[u8]) -> Result<M> {
    M::decode(payload).map_err(|e| corrupt(format!("undecodable record: {e}")))
}

#[derive(Default)]
struct Restorer {
    header: Option<HeaderRecord>,
    keys: BTreeMap<Bytes, KeyHistory>,
    last_key: Option<Bytes>,
    entries: u64,
    leases: Vec<LeaseRecord>,
    sessions: Vec<SessionRecord>,
    lock_sessions: Vec<LockSession>,
}

impl Restorer {
    fn run(mut self, r: &mut impl Read, limits: Limits) -> Result<KvStore> {
        let mut magic = [0u8; 8];
        if read_full(r, &mut magic)? != magic.len() || &magic != MAGIC {
            return Err(corrupt("not a raftkv snapshot (bad magic)"));
        }
        let mut last_kind = 0;
        let end = loop {
            let Some((kind, payload)) = read_record(r)? else {
                return Err(corrupt("stream ends before the end record"));
            };
            let Some(this) = rank(kind) else {
                return Err(corrupt(format!("unknown record kind {kind}")));
            };
            let in_order = match rank(last_kind) {
                None => kind == KIND_HEADER,
                Some(last) => last <= this && last_kind != KIND_END && kind != KIND_HEADER,
            };
            if !in_order {
                return Err(corrupt(format!(
                    "record kind {kind} after kind {last_kind}"
                )));
            }
            last_kind = kind;
            match kind {
                KIND_HEADER => self.header(decode(&payload)?)?,
                KIND_KEYS => self.keys(decode(&payload)?)?,
                KIND_LEASES => self.leases.extend(decode::<LeasesChunk>(&payload)?.leases),
                KIND_SESSIONS => self
                    .sessions
                    .extend(decode::<SessionsChunk>(&payload)?.sessions),
                KIND_LOCK_SESSIONS => self
                    .lock_sessions
                    .extend(decode::<LockSessionsChunk>(&payload)?.sessions),
                _ => break decode::<EndRecord>(&payload)?,
            }
        };
        if read_full(r, &mut [0u8; 1])? != 0 {
            return Err(corrupt("data after the end record"));
        }
        self.build(end, limits)
    }

    fn header(&mut self, header: HeaderRecord) -> Result<()> {
        if header.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(corrupt(format!(
                "snapshot format version {} (this node reads version {SNAPSHOT_FORMAT_VERSION})",
                header.format_version
            )));
        }
        self.header = Some(header);
        Ok(())
    }

    fn keys(&mut self, chunk: KeysChunk) -> Result<()> {
        for record in chunk.keys {
            if record.entries.is_empty() {
                return Err(corrupt(format!("key {:?} without entries", record.key)));
            }
            let mut entries = record.entries.into_iter().map(|e| KeyEntry {
                value: e.value,
                create_revision: e.create_revision,
                mod_revision: e.mod_revision,
                version: e.version,
                lease: e.lease,
                meta: KeyMeta {
                    flags: e.flags,
                    lock_index: e.lock_index,
                    session: e.session,
                }
                .boxed(),
            });
            self.entries += entries.len() as u64;
            let continues = self.last_key.as_ref() == Some(&record.key);
            if !continues
                && self
                    .last_key
                    .as_ref()
                    .is_some_and(|last| *last >= record.key)
            {
                return Err(corrupt(format!("key {:?} out of order", record.key)));
            }
            let history = if continues {
                self.keys.get_mut(&record.key).expect("last key is present")
            } else {
                let first = entries.next().expect("not empty");
                if !first.may_follow(None) {
                    return Err(corrupt(format!(
                        "key {:?}: bad first entry {first:?}",
                        record.key
                    )));
                }
                self.last_key = Some(record.key.clone());
                self.keys
                    .entry(record.key.clone())
                    .or_insert(KeyHistory::new(first))
            };
            for entry in entries {
                if !entry.may_follow(Some(history.current())) {
                    return Err(corrupt(format!(
                        "key {:?}: bad entry {entry:?}",
                        record.key
                    )));
                }
                history.push(entry);
            }
        }
        Ok(())
    }

    fn build(self, end: EndRecord, limits: Limits) -> Result<KvStore> {
        let header = self.header.expect("the record order puts the header first");
        let counts = [
            ("keys", self.keys.len() as u64, end.keys),
            ("entries", self.entries, end.entries),
            ("leases", self.leases.len() as u64, end.leases),
            ("sessions", self.sessions.len() as u64, end.sessions),
        ];
        for (what, have, want) in counts {
            if have != want {
                return Err(corrupt(format!(
                    "{have} {what}, the end record says {want}"
                )));
            }
        }
        let mvcc = Mvcc::from_histories(self.keys, header.revision, header.compacted_revision)
            .map_err(corrupt)?;
        let mut leases = Leases::default();
        let mut last_id = 0;
        for lease in self.leases {
            if lease.id <= last_id || lease.ttl_ms == 0 {
                return Err(corrupt(format!(
                    "bad lease {} (ttl {} ms) after {last_id}",
                    lease.id, lease.ttl_ms
                )));
            }
            last_id = lease.id;
            leases.grant(lease.id, lease.ttl_ms, None);
        }
        for (key, history) in mvcc.histories() {
            match history.live() {
                Some(entry) if entry.lease != 0 => {
                    if !leases.contains(entry.lease) {
                        return Err(corrupt(format!(
                            "key {key:?} attached to missing lease {}",
                            entry.lease
                        )));
                    }
                    leases.attach(entry.lease, key.clone());
                }
                _ => {}
            }
        }
        let mut sessions = Sessions::default();
        let mut last_client = 0;
        for s in self.sessions {
            if s.client_id <= last_client || s.last_active_index > header.applied_index {
                return Err(corrupt(format!(
                    "bad session {} after {last_client}",
                    s.client_id
                )));
            }
            last_client = s.client_id;
            let last_response = s
                .last_response
                .as_deref()
                .map(Response::decode)
                .transpose()
                .map_err(|e| corrupt(format!("session {}: bad answer: {e}", s.client_id)))?;
            if last_response.is_some() != (s.last_seq > 0) {
                return Err(corrupt(format!(
                    "session {}: answer and sequence disagree",
                    s.client_id
                )));
            }
            sessions.insert(
                s.client_id,
                Session {
                    last_seq: s.last_seq,
                    last_active_index: s.last_active_index,
                    last_response,
                },
            );
        }
        let mut store = KvStore::new(limits);
        store.applied_index = header.applied_index;
        store.mvcc = mvcc;
        store.leases = leases;
        store.sessions = sessions;
        store.lock_sessions = lock_sessions(self.lock_sessions, &store)?;
        if header.lock_sessions_index > header.applied_index {
            return Err(corrupt(format!(
                "lock sessions index {} is past the applied index {}",
                header.lock_sessions_index, header.applied_index
            )));
        }
        store.lock_sessions.changed(header.lock_sessions_index);
        let hash = store.state_hash();
        if hash != end.state_hash {
            return Err(corrupt(format!(
                "state hash {hash:#018x}, the end record says {:#018x}",
                end.state_hash
            )));
        }
        Ok(store)
    }
}

/// The lock sessions of a snapshot, checked against the restored store: ids strictly
/// increasing, each session's lease present, each held key's session present.
fn lock_sessions(records: Vec<LockSession>, store: &KvStore) -> Result<LockSessions> {
    let mut sessions = LockSessions::default();
    let mut last_id = 0;
    for session in records {
        let lease_ok = session.lease == 0
            || (store.leases.contains(session.lease) && sessions.by_lease(session.lease).is_none());
        let behavior_ok = session.behavior == crate::RELEASE || session.behavior == crate::DELETE;
        if session.id <= last_id || !lease_ok || !behavior_ok {
            return Err(corrupt(format!(
                "bad lock session {} (lease {}) after {last_id}",
                session.id, session.lease
            )));
        }
        last_id = session.id;
        sessions.insert(session);
    }
    for (key, history) in store.mvcc.histories() {
        let holder = history.live().map_or(0, |e| e.meta().session);
        if holder != 0 {
            if sessions.get(holder).is_none() {
                return Err(corrupt(format!(
                    "key {key:?} held by missing lock session {holder}"
                )));
            }
            sessions.moved(key, 0, holder);
        }
    }
    Ok(sessions)
}
