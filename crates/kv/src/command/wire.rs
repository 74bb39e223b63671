//! The encoding of a [`Response`] (and so of a [`KvError`]) as bytes: what sessions keep in
//! snapshots and what the server can send to clients.
//!
//! An error travels as a code, its numeric fields in declaration order, and its text field. The
//! codes are part of the format: never reuse or renumber one. Decoding validates everything: an
//! unknown code or a wrong number of fields is [`KvError::Malformed`].

use prost::Message;

use super::reply::{Reply, Response};
use crate::KvError;

/// A [`KvError`] on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WireError {
    /// Which variant (see `to_wire`).
    #[prost(uint32, tag = "1")]
    code: u32,
    /// Its numeric fields, in declaration order (unsigned ones bit-cast).
    #[prost(int64, repeated, tag = "2")]
    args: Vec<i64>,
    /// Its text field, if it has one.
    #[prost(string, tag = "3")]
    text: String,
}

/// A [`Response`] on the wire: exactly one of `reply` and `error`.
#[derive(Clone, PartialEq, prost::Message)]
struct WireResponse {
    #[prost(int64, tag = "1")]
    revision: i64,
    #[prost(oneof = "Reply", tags = "2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15")]
    reply: Option<Reply>,
    #[prost(message, optional, tag = "11")]
    error: Option<WireError>,
}

fn wire(code: u32, args: &[i64], text: &str) -> WireError {
    WireError {
        code,
        args: args.to_vec(),
        text: text.to_owned(),
    }
}

impl KvError {
    pub(crate) fn to_wire(&self) -> WireError {
        use KvError::*;
        let u = |v: u64| v as i64;
        match self {
            Compacted {
                revision,
                compacted_revision,
            } => wire(1, &[*revision, *compacted_revision], ""),
            FutureRevision {
                revision,
                current_revision,
            } => wire(2, &[*revision, *current_revision], ""),
            EmptyKey => wire(3, &[], ""),
            KeyTooLarge { bytes, max } => wire(4, &[u(*bytes), u(*max)], ""),
            ValueTooLarge { bytes, max } => wire(5, &[u(*bytes), u(*max)], ""),
            RequestTooLarge { bytes, max } => wire(6, &[u(*bytes), u(*max)], ""),
            TooManyOps { what, ops, max } => wire(7, &[u(*ops), u(*max)], what),
            RangeTooLarge { bytes, max } => wire(8, &[u(*bytes), u(*max)], ""),
            InvalidRequest(text) => wire(9, &[], text),
            LeaseNotFound { id } => wire(10, &[*id], ""),
            LeaseExists { id } => wire(11, &[*id], ""),
            LeaseLimit { max } => wire(12, &[u(*max)], ""),
            SessionNotFound { client_id } => wire(13, &[u(*client_id)], ""),
            SessionLimit { max } => wire(14, &[u(*max)], ""),
            StaleSequence {
                client_id,
                seq,
                last_seq,
            } => wire(15, &[u(*client_id), u(*seq), u(*last_seq)], ""),
            Malformed(text) => wire(16, &[], text),
            UnsupportedVersion { version, supported } => {
                wire(17, &[i64::from(*version), i64::from(*supported)], "")
            }
            CorruptSnapshot(text) => wire(18, &[], text),
            SnapshotIo(text) => wire(19, &[], text),
            WatchNotFound { id } => wire(20, &[u(*id)], ""),
            WatchLimit { max } => wire(21, &[u(*max)], ""),
            KeyNotFound => wire(22, &[], ""),
            ValueProvided => wire(23, &[], ""),
            LeaseProvided => wire(24, &[], ""),
            LockSessionNotFound { id } => wire(25, &[u(*id)], ""),
            LockSessionLimit { max } => wire(26, &[u(*max)], ""),
            LockRefused { key, release } => wire(27, &[i64::from(*release)], key),
        }
    }

    pub(crate) fn from_wire(w: WireError) -> Result<KvError, KvError> {
        use KvError::*;
        let a = &w.args;
        let u = |i: usize| a[i] as u64;
        let want = |n: usize| {
            if a.len() == n {
                Ok(())
            } else {
                Err(Malformed(format!(
                    "error code {} with {} fields, expected {n}",
                    w.code,
                    a.len()
                )))
            }
        };
        let version = |i: usize| {
            u32::try_from(a[i]).map_err(|_| Malformed("error version out of range".into()))
        };
        Ok(match w.code {
            1 => want(2).map(|()| Compacted {
                revision: a[0],
                compacted_revision: a[1],
            })?,
            2 => want(2).map(|()| FutureRevision {
                revision: a[0],
                current_revision: a[1],
            })?,
            3 => want(0).map(|()| EmptyKey)?,
            4 => want(2).map(|()| KeyTooLarge {
                bytes: u(0),
                max: u(1),
            })?,
            5 => want(2).map(|()| ValueTooLarge {
                bytes: u(0),
                max: u(1),
            })?,
            6 => want(2).map(|()| RequestTooLarge {
                bytes: u(0),
                max: u(1),
            })?,
            7 => want(2).map(|()| TooManyOps {
                what: w.text.clone(),
                ops: u(0),
                max: u(1),
            })?,
            8 => want(2).map(|()| RangeTooLarge {
                bytes: u(0),
                max: u(1),
            })?,
            9 => want(0).map(|()| InvalidRequest(w.text.clone()))?,
            10 => want(1).map(|()| LeaseNotFound { id: a[0] })?,
            11 => want(1).map(|()| LeaseExists { id: a[0] })?,
            12 => want(1).map(|()| LeaseLimit { max: u(0) })?,
            13 => want(1).map(|()| SessionNotFound { client_id: u(0) })?,
            14 => want(1).map(|()| SessionLimit { max: u(0) })?,
            15 => want(3).map(|()| StaleSequence {
                client_id: u(0),
                seq: u(1),
                last_seq: u(2),
            })?,
            16 => want(0).map(|()| Malformed(w.text.clone()))?,
            17 => {
                want(2)?;
                UnsupportedVersion {
                    version: version(0)?,
                    supported: version(1)?,
                }
            }
            18 => want(0).map(|()| CorruptSnapshot(w.text.clone()))?,
            19 => want(0).map(|()| SnapshotIo(w.text.clone()))?,
            20 => want(1).map(|()| WatchNotFound { id: u(0) })?,
            21 => want(1).map(|()| WatchLimit { max: u(0) })?,
            22 => want(0).map(|()| KeyNotFound)?,
            23 => want(0).map(|()| ValueProvided)?,
            24 => want(0).map(|()| LeaseProvided)?,
            25 => want(1).map(|()| LockSessionNotFound { id: u(0) })?,
            26 => want(1).map(|()| LockSessionLimit { max: u(0) })?,
            27 => want(1).map(|()| LockRefused {
                key: w.text.clone(),
                release: a[0] != 0,
            })?,
            code => return Err(Malformed(format!("unknown error code {code}"))),
        })
    }
}

impl Response {
    /// Encodes the response (protobuf; see the module docs).
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let (reply, error) = match &self.result {
            Ok(reply) => (Some(reply.clone()), None),
            Err(e) => (None, Some(e.to_wire())),
        };
        WireResponse {
            revision: self.revision,
            reply,
            error,
        }
        .encode_to_vec()
    }

    /// Decodes a response made by [`Response::encode_to_vec`], validating it.
    pub fn decode(bytes: &[u8]) -> Result<Response, KvError> {
        let w = WireResponse::decode(bytes).map_err(|e| KvError::Malformed(e.to_string()))?;
        let result = match (w.reply, w.error) {
            (Some(reply), None) => Ok(reply),
            (None, Some(error)) => Err(KvError::from_wire(error)?),
            _ => {
                return Err(KvError::Malformed(
                    "a response needs exactly one of reply and error".into(),
                ));
            }
        };
        Ok(Response {
            revision: w.revision,
            result,
        })
    }
}
