//! The peer wire format: Raft messages as protobuf (prost, derived by hand: no `protoc`), batched
//! into frames.
//!
//! A frame on a peer connection is `len: u32 LE | crc32c(payload): u32 LE | payload`, where the
//! payload is an encoded [`WireFrame`]. The length is checked against [`FRAME_BYTES_MAX`] before
//! anything is allocated, the checksum before anything is decoded, and every decoded message is
//! converted back into the core's types with full validation: a peer that sends garbage gets its
//! connection closed, never a panic and never a half-understood message.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message as _;
use raftkv_raft::{
    AppendEntries, AppendEntriesResponse, ConfState, ConflictHint, Entry, EntryKind, Heartbeat,
    HeartbeatResponse, InstallSnapshot, InstallSnapshotResponse, Message, MessageBody, ReadIndex,
    ReadIndexResponse, RequestVote, RequestVoteResponse, SnapshotMetadata,
};

use crate::error::{Result, ServerError};

/// Largest frame payload accepted or sent. Above the core's largest message (entries are bounded
/// by `Config::msg_bytes_max`, snapshot chunks by `snapshot_chunk_bytes_max`) with room to spare.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Bytes before each frame payload: length and checksum.
pub const FRAME_HEADER_BYTES: usize = 8;

/// One frame: a batch of messages for one peer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireFrame {
    /// The messages, in the order they were sent.
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<WireMessage>,
}

/// A Raft message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireMessage {
    /// Sender.
    #[prost(uint64, tag = "1")]
    pub from: u64,
    /// Receiver.
    #[prost(uint64, tag = "2")]
    pub to: u64,
    /// Sender's term.
    #[prost(uint64, tag = "3")]
    pub term: u64,
    /// What it says.
    #[prost(oneof = "WireBody", tags = "4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14")]
    pub body: Option<WireBody>,
}

/// The message kinds.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum WireBody {
    #[prost(message, tag = "4")]
    RequestVote(WireRequestVote),
    #[prost(message, tag = "5")]
    RequestVoteResponse(WireRequestVoteResponse),
    #[prost(message, tag = "6")]
    AppendEntries(WireAppendEntries),
    #[prost(message, tag = "7")]
    AppendEntriesResponse(WireAppendEntriesResponse),
    #[prost(message, tag = "8")]
    Heartbeat(WireHeartbeat),
    #[prost(message, tag = "9")]
    HeartbeatResponse(WireHeartbeatResponse),
    #[prost(message, tag = "10")]
    InstallSnapshot(WireInstallSnapshot),
    #[prost(message, tag = "11")]
    InstallSnapshotResponse(WireInstallSnapshotResponse),
    #[prost(message, tag = "12")]
    ReadIndex(WireReadIndex),
    #[prost(message, tag = "13")]
    ReadIndexResponse(WireReadIndexResponse),
    #[prost(message, tag = "14")]
    TimeoutNow(WireEmpty),
}

/// RequestVote / PreVote.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireRequestVote {
    #[prost(bool, tag = "1")]
    pub pre_vote: bool,
    #[prost(bool, tag = "2")]
    pub leader_transfer: bool,
    #[prost(uint64, tag = "3")]
    pub last_log_index: u64,
    #[prost(uint64, tag = "4")]
    pub last_log_term: u64,
}

/// A vote.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireRequestVoteResponse {
    #[prost(bool, tag = "1")]
    pub pre_vote: bool,
    #[prost(bool, tag = "2")]
    pub granted: bool,
}

/// AppendEntries.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireAppendEntries {
    #[prost(uint64, tag = "1")]
    pub prev_log_index: u64,
    #[prost(uint64, tag = "2")]
    pub prev_log_term: u64,
    #[prost(message, repeated, tag = "3")]
    pub entries: Vec<WireEntry>,
    #[prost(uint64, tag = "4")]
    pub leader_commit: u64,
}

/// The answer to AppendEntries: accepted (`rejected` false, `index` = match index) or rejected
/// at `index` with a conflict hint.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireAppendEntriesResponse {
    #[prost(bool, tag = "1")]
    pub rejected: bool,
    #[prost(uint64, tag = "2")]
    pub index: u64,
    #[prost(uint64, optional, tag = "3")]
    pub hint_term: Option<u64>,
    #[prost(uint64, tag = "4")]
    pub hint_first_index: u64,
}

/// A heartbeat.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireHeartbeat {
    #[prost(uint64, tag = "1")]
    pub commit: u64,
    #[prost(uint64, tag = "2")]
    pub round: u64,
}

/// A heartbeat's answer.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireHeartbeatResponse {
    #[prost(uint64, tag = "1")]
    pub round: u64,
}

/// One chunk of a snapshot.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireInstallSnapshot {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<WireSnapshotMetadata>,
    #[prost(uint64, tag = "2")]
    pub total_bytes: u64,
    #[prost(uint64, tag = "3")]
    pub offset: u64,
    #[prost(bytes = "bytes", tag = "4")]
    pub data: Bytes,
}

/// The answer to a snapshot chunk.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireInstallSnapshotResponse {
    #[prost(uint64, tag = "1")]
    pub index: u64,
    #[prost(uint64, tag = "2")]
    pub next_offset: u64,
}

/// A follower's request for a read index.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReadIndex {
    #[prost(uint64, tag = "1")]
    pub context: u64,
}

/// The leader's read index.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReadIndexResponse {
    #[prost(uint64, tag = "1")]
    pub context: u64,
    #[prost(uint64, tag = "2")]
    pub index: u64,
}

/// No fields (TimeoutNow).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireEmpty {}

/// A log entry; `conf` is present exactly for configuration entries.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireEntry {
    #[prost(uint64, tag = "1")]
    pub index: u64,
    #[prost(uint64, tag = "2")]
    pub term: u64,
    #[prost(message, optional, tag = "3")]
    pub conf: Option<WireConfState>,
    #[prost(bytes = "bytes", tag = "4")]
    pub data: Bytes,
}

/// A membership configuration.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireConfState {
    #[prost(uint64, repeated, tag = "1")]
    pub voters: Vec<u64>,
    #[prost(uint64, repeated, tag = "2")]
    pub voters_outgoing: Vec<u64>,
    #[prost(uint64, repeated, tag = "3")]
    pub learners: Vec<u64>,
}

/// What a snapshot covers.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireSnapshotMetadata {
    #[prost(uint64, tag = "1")]
    pub index: u64,
    #[prost(uint64, tag = "2")]
    pub term: u64,
    #[prost(message, optional, tag = "3")]
    pub conf: Option<WireConfState>,
}

fn conf_to_wire(conf: &ConfState) -> WireConfState {
    WireConfState {
        voters: conf.voters.iter().copied().collect(),
        voters_outgoing: conf.voters_outgoing.iter().copied().collect(),
        learners: conf.learners.iter().copied().collect(),
    }
}

fn conf_from_wire(conf: WireConfState) -> ConfState {
    ConfState {
        voters: conf.voters.into_iter().collect(),
        voters_outgoing: conf.voters_outgoing.into_iter().collect(),
        learners: conf.learners.into_iter().collect(),
    }
}

fn entry_to_wire(entry: &Entry) -> WireEntry {
    WireEntry {
        index: entry.index,
        term: entry.term,
        conf: match &entry.kind {
            EntryKind::Normal => None,
            EntryKind::ConfChange(conf) => Some(conf_to_wire(conf)),
        },
        data: entry.data.clone(),
    }
}

fn entry_from_wire(entry: WireEntry) -> Entry {
    Entry {
        index: entry.index,
        term: entry.term,
        kind: match entry.conf {
            None => EntryKind::Normal,
            Some(conf) => EntryKind::ConfChange(Box::new(conf_from_wire(conf))),
        },
        data: entry.data,
    }
}

fn metadata_to_wire(metadata: &SnapshotMetadata) -> WireSnapshotMetadata {
    WireSnapshotMetadata {
        index: metadata.index,
        term: metadata.term,
        conf: Some(conf_to_wire(&metadata.conf_state)),
    }
}

/// The wire form of a core message.
pub fn message_to_wire(message: &Message) -> WireMessage {
    let body = match &message.body {
        MessageBody::RequestVote(r) => WireBody::RequestVote(WireRequestVote {
            pre_vote: r.pre_vote,
            leader_transfer: r.leader_transfer,
            last_log_index: r.last_log_index,
            last_log_term: r.last_log_term,
        }),
        MessageBody::RequestVoteResponse(r) => {
            WireBody::RequestVoteResponse(WireRequestVoteResponse {
                pre_vote: r.pre_vote,
                granted: r.granted,
            })
        }
        MessageBody::AppendEntries(a) => WireBody::AppendEntries(WireAppendEntries {
            prev_log_index: a.prev_log_index,
            prev_log_term: a.prev_log_term,
            entries: a.entries.iter().map(entry_to_wire).collect(),
            leader_commit: a.leader_commit,
        }),
        MessageBody::AppendEntriesResponse(r) => WireBody::AppendEntriesResponse(match *r {
            AppendEntriesResponse::Accepted { match_index } => WireAppendEntriesResponse {
                rejected: false,
                index: match_index,
                hint_term: None,
                hint_first_index: 0,
            },
            AppendEntriesResponse::Rejected {
                rejected_index,
                hint,
            } => WireAppendEntriesResponse {
                rejected: true,
                index: rejected_index,
                hint_term: hint.term,
                hint_first_index: hint.first_index,
            },
        }),
        MessageBody::Heartbeat(h) => WireBody::Heartbeat(WireHeartbeat {
            commit: h.commit,
            round: h.round,
        }),
        MessageBody::HeartbeatResponse(h) => {
            WireBody::HeartbeatResponse(WireHeartbeatResponse { round: h.round })
        }
        MessageBody::InstallSnapshot(s) => WireBody::InstallSnapshot(WireInstallSnapshot {
            metadata: Some(metadata_to_wire(&s.metadata)),
            total_bytes: s.total_bytes,
            offset: s.offset,
            data: s.data.clone(),
        }),
        MessageBody::InstallSnapshotResponse(r) => {
            WireBody::InstallSnapshotResponse(WireInstallSnapshotResponse {
                index: r.index,
                next_offset: r.next_offset,
            })
        }
        MessageBody::ReadIndex(r) => WireBody::ReadIndex(WireReadIndex { context: r.context }),
        MessageBody::ReadIndexResponse(r) => WireBody::ReadIndexResponse(WireReadIndexResponse {
            context: r.context,
            index: r.index,
        }),
        MessageBody::TimeoutNow => WireBody::TimeoutNow(WireEmpty {}),
    };
    WireMessage {
        from: message.from,
        to: message.to,
        term: message.term,
        body: Some(body),
    }
}

/// The core message a wire message stands for. The core validates the values themselves
/// (`RawNode::step` refuses impossible terms and indexes); this checks the shape.
pub fn message_from_wire(message: WireMessage) -> Result<Message> {
    let malformed = |what: &str| ServerError::Malformed(what.to_string());
    let body = match message
        .body
        .ok_or_else(|| malformed("message without a body"))?
    {
        WireBody::RequestVote(r) => MessageBody::RequestVote(RequestVote {
            pre_vote: r.pre_vote,
            leader_transfer: r.leader_transfer,
            last_log_index: r.last_log_index,
            last_log_term: r.last_log_term,
        }),
        WireBody::RequestVoteResponse(r) => MessageBody::RequestVoteResponse(RequestVoteResponse {
            pre_vote: r.pre_vote,
            granted: r.granted,
        }),
        WireBody::AppendEntries(a) => MessageBody::AppendEntries(AppendEntries {
            prev_log_index: a.prev_log_index,
            prev_log_term: a.prev_log_term,
            entries: a.entries.into_iter().map(entry_from_wire).collect(),
            leader_commit: a.leader_commit,
        }),
        WireBody::AppendEntriesResponse(r) => MessageBody::AppendEntriesResponse(if r.rejected {
            AppendEntriesResponse::Rejected {
                rejected_index: r.index,
                hint: ConflictHint {
                    term: r.hint_term,
                    first_index: r.hint_first_index,
                },
            }
        } else {
            AppendEntriesResponse::Accepted {
                match_index: r.index,
            }
        }),
        WireBody::Heartbeat(h) => MessageBody::Heartbeat(Heartbeat {
            commit: h.commit,
            round: h.round,
        }),
        WireBody::HeartbeatResponse(h) => {
            MessageBody::HeartbeatResponse(HeartbeatResponse { round: h.round })
        }
        WireBody::InstallSnapshot(s) => {
            let metadata = s
                .metadata
                .ok_or_else(|| malformed("snapshot chunk without metadata"))?;
            let conf = metadata
                .conf
                .ok_or_else(|| malformed("snapshot metadata without a configuration"))?;
            MessageBody::InstallSnapshot(Box::new(InstallSnapshot {
                metadata: SnapshotMetadata {
                    index: metadata.index,
                    term: metadata.term,
                    conf_state: conf_from_wire(conf),
                },
                total_bytes: s.total_bytes,
                offset: s.offset,
                data: s.data,
            }))
        }
        WireBody::InstallSnapshotResponse(r) => {
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
                index: r.index,
                next_offset: r.next_offset,
            })
        }
        WireBody::ReadIndex(r) => MessageBody::ReadIndex(ReadIndex { context: r.context }),
        WireBody::ReadIndexResponse(r) => MessageBody::ReadIndexResponse(ReadIndexResponse {
            context: r.context,
            index: r.index,
        }),
        WireBody::TimeoutNow(_) => MessageBody::TimeoutNow,
    };
    Ok(Message {
        from: message.from,
        to: message.to,
        term: message.term,
        body,
    })
}

/// Appends one frame carrying `messages` to `out`.
pub fn encode_frame(messages: &[Message], out: &mut BytesMut) {
    let frame = WireFrame {
        messages: messages.iter().map(message_to_wire).collect(),
    };
    let len = frame.encoded_len();
    out.reserve(FRAME_HEADER_BYTES + len);
    out.put_u32_le(len as u32);
    let checksum_at = out.len();
    out.put_u32_le(0);
    let payload_at = out.len();
    // Encoding into a BytesMut with reserved room cannot fail.
    frame
        .encode(out)
        .expect("BytesMut grows to fit the payload");
    let checksum = crc32c::crc32c(&out[payload_at..]);
    out[checksum_at..payload_at].copy_from_slice(&checksum.to_le_bytes());
}

/// Takes one whole frame off the front of `buf`: `Ok(None)` if more bytes are needed.
/// An oversized length, a checksum mismatch or an undecodable payload is an error, after which
/// the connection must be closed (the stream can no longer be trusted).
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Vec<Message>>> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(ServerError::Malformed(format!(
            "frame of {len} bytes exceeds the limit of {FRAME_BYTES_MAX}"
        )));
    }
    if buf.len() < FRAME_HEADER_BYTES + len {
        buf.reserve(FRAME_HEADER_BYTES + len - buf.len());
        return Ok(None);
    }
    let checksum = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    buf.advance(FRAME_HEADER_BYTES);
    let payload = buf.split_to(len).freeze();
    if crc32c::crc32c(&payload) != checksum {
        return Err(ServerError::Malformed(
            "frame checksum mismatch".to_string(),
        ));
    }
    let frame = WireFrame::decode(payload)
        .map_err(|e| ServerError::Malformed(format!("undecodable frame: {e}")))?;
    frame
        .messages
        .into_iter()
        .map(message_from_wire)
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftkv_raft::MemberChange;

    fn sample_messages() -> Vec<Message> {
        let conf = ConfState::from_voters([1, 2, 3])
            .enter_joint(&[MemberChange::AddLearner(4)])
            .unwrap();
        let bodies = vec![
            MessageBody::RequestVote(RequestVote {
                pre_vote: true,
                leader_transfer: false,
                last_log_index: 7,
                last_log_term: 2,
            }),
            MessageBody::RequestVoteResponse(RequestVoteResponse {
                pre_vote: false,
                granted: true,
            }),
            MessageBody::AppendEntries(AppendEntries {
                prev_log_index: 3,
                prev_log_term: 1,
                entries: vec![
                    Entry::new(4, 2, Bytes::from_static(b"put a 1")),
                    Entry {
                        index: 5,
                        term: 2,
                        kind: EntryKind::ConfChange(Box::new(conf.clone())),
                        data: Bytes::new(),
                    },
                ],
                leader_commit: 3,
            }),
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted { match_index: 5 }),
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Rejected {
                rejected_index: 9,
                hint: ConflictHint {
                    term: Some(1),
                    first_index: 4,
                },
            }),
            MessageBody::Heartbeat(Heartbeat {
                commit: 5,
                round: 11,
            }),
            MessageBody::HeartbeatResponse(HeartbeatResponse { round: 11 }),
            MessageBody::InstallSnapshot(Box::new(InstallSnapshot {
                metadata: SnapshotMetadata {
                    index: 100,
                    term: 3,
                    conf_state: conf,
                },
                total_bytes: 10,
                offset: 4,
                data: Bytes::from_static(b"abcdef"),
            })),
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
                index: 100,
                next_offset: 10,
            }),
            MessageBody::ReadIndex(ReadIndex { context: 42 }),
            MessageBody::ReadIndexResponse(ReadIndexResponse {
                context: 42,
                index: 99,
            }),
            MessageBody::TimeoutNow,
        ];
        bodies
            .into_iter()
            .map(|body| Message {
                from: 1,
                to: 2,
                term: 3,
                body,
            })
            .collect()
    }

    #[test]
    fn every_message_kind_round_trips_through_a_frame() {
        let messages = sample_messages();
        let mut buf = BytesMut::new();
        encode_frame(&messages, &mut buf);
        encode_frame(&messages[..2], &mut buf);
        assert_eq!(decode_frame(&mut buf).unwrap(), Some(messages.clone()));
        assert_eq!(
            decode_frame(&mut buf).unwrap(),
            Some(messages[..2].to_vec())
        );
        assert_eq!(decode_frame(&mut buf).unwrap(), None);
    }

    #[test]
    fn a_partial_frame_waits_for_more_bytes() {
        let mut whole = BytesMut::new();
        encode_frame(&sample_messages(), &mut whole);
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(decode_frame(&mut part).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_allocating() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(u32::MAX);
        buf.put_u32_le(0);
        assert!(decode_frame(&mut buf).is_err());
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_checksum() {
        let mut whole = BytesMut::new();
        encode_frame(&sample_messages(), &mut whole);
        for i in FRAME_HEADER_BYTES..whole.len() {
            let mut bad = whole.clone();
            bad[i] ^= 0x10;
            assert!(decode_frame(&mut bad).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 7u64;
        for _ in 0..2000 {
            let len = (raftkv_raft::splitmix64(&mut state) % 64) as usize;
            let mut bytes = Vec::with_capacity(len + 8);
            // A valid header over random payloads exercises the decoder, not just the checksum.
            let payload: Vec<u8> = (0..len)
                .map(|_| (raftkv_raft::splitmix64(&mut state) & 0xff) as u8)
                .collect();
            bytes.extend_from_slice(&(len as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
            bytes.extend_from_slice(&payload);
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = decode_frame(&mut buf);
        }
    }
}
