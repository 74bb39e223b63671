//! Records: how everything the WAL stores is framed and encoded.
//!
//! Frame (little-endian), `HEADER_BYTES + payload + TRAILER_BYTES` long:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | payload length, at most `RECORD_BYTES_MAX` |
//! | 4 | record type |
//! | 5..9 | CRC32C of type and payload |
//! | 9..13 | CRC32C of bytes 0..9 (so a damaged length is never trusted) |
//! | 13.. | payload |
//! | last | `TRAILER`, a non-zero byte |
//!
//! Why two checksums and a trailer: a crash tears the last write, leaving a prefix of it followed by
//! zeros (preallocated space) or the end of the file. A torn record therefore has a zero where its
//! trailer should be, or a header that does not check out with only zeros after it; a record that
//! was written whole and later damaged has its trailer (or non-zero bytes after its header). That is
//! what lets recovery tell a torn tail (cut it) from corruption (refuse to start).
//!
//! Invariants: decoding never panics and never allocates more than the buffer it is given; every
//! decoded value has been validated (non-zero indexes and terms, well-formed memberships, the whole
//! payload consumed).

use std::collections::BTreeSet;

use bytes::Bytes;
use raftkv_raft::{ConfState, Entry, EntryKind, HardState, Index, NodeId, Term};

use crate::error::{Result, WalError};

/// Bytes of a record's frame before its payload.
pub const HEADER_BYTES: usize = 13;
/// Bytes of a record's frame after its payload.
pub const TRAILER_BYTES: usize = 1;
/// The byte that ends every record. Non-zero, so a zero-filled (torn) end is told from a whole one.
pub const TRAILER: u8 = 0xA5;
/// Largest payload a record may have. A length field above it is damage, never an allocation.
pub const RECORD_BYTES_MAX: usize = 64 << 20;
/// Identifies a segment file's header record.
pub const SEGMENT_MAGIC: u32 = 0x5752_4B52; // "RKRW"
/// Version of the on-disk format this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;

const TYPE_SEGMENT_HEADER: u8 = 1;
const TYPE_ENTRY: u8 = 2;
const TYPE_HARD_STATE: u8 = 3;
const TYPE_SNAPSHOT_MARK: u8 = 4;
const KIND_NORMAL: u8 = 0;
const KIND_CONF_CHANGE: u8 = 1;
const MARK_COMPACT: u8 = 1;
const MARK_INSTALL: u8 = 2;

/// The first record of every segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version the segment was written with.
    pub version: u16,
    /// The cluster the data belongs to.
    pub cluster_id: u64,
    /// Sequence number of the segment, also in its file name.
    pub seq: u64,
    /// Index of the first entry written to the segment, also in its file name.
    pub first_index: Index,
}

/// How a snapshot changed the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    /// A snapshot this node took: entries after it stay.
    Compact,
    /// A snapshot from the leader: it replaces the whole log.
    Install,
}

/// Records that the log now starts after a snapshot (its file is durable before this is written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMark {
    /// Compaction or installation.
    pub kind: MarkKind,
    /// Last index the snapshot covers.
    pub index: Index,
    /// Term of that index.
    pub term: Term,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Segment header.
    Header(SegmentHeader),
    /// A log entry; an entry at or below the last index replaces the suffix from its index on.
    Entry(Entry),
    /// The hard state as of this point of the stream.
    HardState(HardState),
    /// A snapshot boundary.
    Snapshot(SnapshotMark),
}

/// Why bytes do not decode as a record. Variants with `record_bytes` had a header that checked out,
/// so the record's extent is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than `HEADER_BYTES` bytes.
    Short,
    /// The header's checksum does not match (or the header is all zeros).
    HeaderCrc,
    /// The header checks out but announces a payload above `RECORD_BYTES_MAX`.
    TooLarge(u64),
    /// The record runs past the end of the buffer.
    Incomplete {
        /// Length of the whole record.
        record_bytes: usize,
    },
    /// The payload's checksum does not match.
    PayloadCrc {
        /// Length of the whole record.
        record_bytes: usize,
    },
    /// The trailer byte is wrong.
    Trailer {
        /// Length of the whole record.
        record_bytes: usize,
        /// The byte found.
        byte: u8,
    },
    /// The checksums match but the content is impossible.
    Malformed {
        /// Length of the whole record.
        record_bytes: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

impl DecodeError {
    /// A description for error messages.
    pub fn describe(&self) -> String {
        match self {
            DecodeError::Short => "record header cut short".into(),
            DecodeError::HeaderCrc => "record header checksum mismatch".into(),
            DecodeError::TooLarge(n) => {
                format!("record length {n} exceeds the limit of {RECORD_BYTES_MAX}")
            }
            DecodeError::Incomplete { record_bytes } => {
                format!("record of {record_bytes} bytes runs past the end of the file")
            }
            DecodeError::PayloadCrc { record_bytes } => {
                format!("checksum mismatch in a record of {record_bytes} bytes")
            }
            DecodeError::Trailer { byte, .. } => format!("record trailer is {byte:#04x}"),
            DecodeError::Malformed { reason, .. } => format!("impossible record: {reason}"),
        }
    }
}

/// Bytes a record with `payload_bytes` of payload occupies.
pub fn framed_bytes(payload_bytes: usize) -> usize {
    HEADER_BYTES + payload_bytes + TRAILER_BYTES
}

/// Appends a record of type `kind` whose payload `write` produces; rolls back and fails if the
/// payload exceeds `RECORD_BYTES_MAX`.
fn frame(out: &mut Vec<u8>, kind: u8, write: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    write(out);
    let payload_bytes = out.len() - start - HEADER_BYTES;
    let Ok(len) = u32::try_from(payload_bytes) else {
        out.truncate(start);
        return Err(too_large(payload_bytes));
    };
    if payload_bytes > RECORD_BYTES_MAX {
        out.truncate(start);
        return Err(too_large(payload_bytes));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind]), &out[start + HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4] = kind;
    out[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&out[start..start + 9]);
    out[start + 9..start + 13].copy_from_slice(&header_crc.to_le_bytes());
    out.push(TRAILER);
    Ok(())
}

fn too_large(payload_bytes: usize) -> WalError {
    WalError::TooLarge {
        what: "a WAL record",
        size_bytes: payload_bytes as u64,
        limit_bytes: RECORD_BYTES_MAX as u64,
    }
}

/// Appends a segment header record.
pub fn encode_header(out: &mut Vec<u8>, header: &SegmentHeader) -> Result<()> {
    frame(out, TYPE_SEGMENT_HEADER, |out| {
        out.extend_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        out.extend_from_slice(&header.version.to_le_bytes());
        out.extend_from_slice(&header.cluster_id.to_le_bytes());
        out.extend_from_slice(&header.seq.to_le_bytes());
        out.extend_from_slice(&header.first_index.to_le_bytes());
    })
}

/// Appends an entry record.
pub fn encode_entry(out: &mut Vec<u8>, entry: &Entry) -> Result<()> {
    frame(out, TYPE_ENTRY, |out| {
        out.extend_from_slice(&entry.index.to_le_bytes());
        out.extend_from_slice(&entry.term.to_le_bytes());
        match &entry.kind {
            EntryKind::Normal => out.push(KIND_NORMAL),
            EntryKind::ConfChange(conf) => {
                out.push(KIND_CONF_CHANGE);
                put_conf(out, conf);
            }
        }
        out.extend_from_slice(&entry.data);
    })
}

/// Appends a hard-state record.
pub fn encode_hard_state(out: &mut Vec<u8>, hard_state: &HardState) -> Result<()> {
    frame(out, TYPE_HARD_STATE, |out| {
        out.extend_from_slice(&hard_state.term.to_le_bytes());
        out.extend_from_slice(&hard_state.vote.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&hard_state.commit.to_le_bytes());
    })
}

/// Appends a snapshot-mark record.
pub fn encode_snapshot_mark(out: &mut Vec<u8>, mark: &SnapshotMark) -> Result<()> {
    frame(out, TYPE_SNAPSHOT_MARK, |out| {
        out.push(match mark.kind {
            MarkKind::Compact => MARK_COMPACT,
            MarkKind::Install => MARK_INSTALL,
        });
        out.extend_from_slice(&mark.index.to_le_bytes());
        out.extend_from_slice(&mark.term.to_le_bytes());
    })
}

/// Appends a membership: three id sets, each a count and strictly increasing ids.
pub fn put_conf(out: &mut Vec<u8>, conf: &ConfState) {
    for set in [&conf.voters, &conf.voters_outgoing, &conf.learners] {
        out.extend_from_slice(&(set.len() as u32).to_le_bytes());
        for id in set {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
}

/// Decodes the record at the start of `buf`; returns it and its length in bytes.
pub fn decode(buf: &[u8]) -> Result<(Record, usize), DecodeError> {
    let header = buf.get(..HEADER_BYTES).ok_or(DecodeError::Short)?;
    let header_crc = u32::from_le_bytes([header[9], header[10], header[11], header[12]]);
    if header.iter().all(|&b| b == 0) || crc32c::crc32c(&header[..9]) != header_crc {
        return Err(DecodeError::HeaderCrc);
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > RECORD_BYTES_MAX {
        return Err(DecodeError::TooLarge(len as u64));
    }
    let record_bytes = framed_bytes(len);
    let Some(record) = buf.get(..record_bytes) else {
        return Err(DecodeError::Incomplete { record_bytes });
    };
    let kind = header[4];
    let payload = &record[HEADER_BYTES..HEADER_BYTES + len];
    let crc = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
    if crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload) != crc {
        return Err(DecodeError::PayloadCrc { record_bytes });
    }
    let byte = record[record_bytes - 1];
    if byte != TRAILER {
        return Err(DecodeError::Trailer { record_bytes, byte });
    }
    let decoded = decode_payload(kind, payload).map_err(|reason| DecodeError::Malformed {
        record_bytes,
        reason,
    })?;
    Ok((decoded, record_bytes))
}

fn decode_payload(kind: u8, payload: &[u8]) -> Result<Record, &'static str> {
    let mut r = Reader::new(payload);
    let record = match kind {
        TYPE_SEGMENT_HEADER => {
            if r.u32()? != SEGMENT_MAGIC {
                return Err("segment header with a wrong magic number");
            }
            Record::Header(SegmentHeader {
                version: r.u16()?,
                cluster_id: r.u64()?,
                seq: r.u64()?,
                first_index: r.u64()?,
            })
        }
        TYPE_ENTRY => Record::Entry(decode_entry(&mut r)?),
        TYPE_HARD_STATE => {
            let term = r.u64()?;
            let vote = r.u64()?;
            let commit = r.u64()?;
            Record::HardState(HardState {
                term,
                vote: (vote != 0).then_some(vote),
                commit,
            })
        }
        TYPE_SNAPSHOT_MARK => {
            let kind = match r.u8()? {
                MARK_COMPACT => MarkKind::Compact,
                MARK_INSTALL => MarkKind::Install,
                _ => return Err("unknown snapshot mark kind"),
            };
            let index = r.u64()?;
            let term = r.u64()?;
            if index > 0 && term == 0 {
                return Err("snapshot mark with term 0");
            }
            Record::Snapshot(SnapshotMark { kind, index, term })
        }
        _ => return Err("unknown record type"),
    };
    r.finish()?;
    Ok(record)
}

fn decode_entry(r: &mut Reader<'_>) -> Result<Entry, &'static str> {
    let index = r.u64()?;
    let term = r.u64()?;
    if index == 0 || term == 0 {
        return Err("entry with index or term 0");
    }
    let kind = match r.u8()? {
        KIND_NORMAL => EntryKind::Normal,
        KIND_CONF_CHANGE => EntryKind::ConfChange(get_conf(r)?.into()),
        _ => return Err("unknown entry kind"),
    };
    let data = Bytes::copy_from_slice(r.rest());
    Ok(Entry {
        index,
        term,
        kind,
        data,
    })
}

/// Decodes and validates a membership written by `put_conf`.
pub fn get_conf(r: &mut Reader<'_>) -> Result<ConfState, &'static str> {
    let voters = get_ids(r)?;
    let voters_outgoing = get_ids(r)?;
    let learners = get_ids(r)?;
    // While joint, a voter being demoted is an outgoing voter and already a learner; an incoming
    // voter is never a learner.
    if voters.iter().any(|id| learners.contains(id)) {
        return Err("a node is both a voter and a learner");
    }
    Ok(ConfState {
        voters,
        voters_outgoing,
        learners,
    })
}

fn get_ids(r: &mut Reader<'_>) -> Result<BTreeSet<NodeId>, &'static str> {
    let count = r.u32()? as usize;
    if count > r.remaining() / 8 {
        return Err("membership count larger than the record");
    }
    let mut ids = BTreeSet::new();
    let mut prev = 0;
    for _ in 0..count {
        let id = r.u64()?;
        if id <= prev {
            return Err("membership ids not strictly increasing or 0");
        }
        ids.insert(id);
        prev = id;
    }
    Ok(ids)
}

/// A bounds-checked little-endian cursor.
pub struct Reader<'a> {
    /// The bytes read from.
    buf: &'a [u8],
    /// Next byte to read.
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let out = self.buf.get(self.pos..end).ok_or("truncated record")?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), &'static str> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err("trailing bytes in record")
        }
    }
}
