//! Segment files: their names and how one is scanned back into records.
//!
//! A segment is named `{seq:016x}-{first_index:016x}.wal`: its sequence number (the order of
//! replay) and the index of the first entry written to it. Its records start with a preamble (the
//! segment header, the hard state and the snapshot mark current when it was created), so the
//! newest segment alone always knows the latest hard state and snapshot. The rest of the file is
//! preallocated zeros until written.
//!
//! Scanning tells three endings apart (see `record` for why the frame makes this possible):
//! - a zero tail: only zeros from the end of the last record on (the normal, preallocated end);
//! - a torn tail: a record cut by a crash, i.e. a prefix of a record followed by only zeros or the
//!   end of the file; allowed in the last segment only;
//! - corruption: anything else, such as a bad checksum with data after it.

use crate::record::{self, DecodeError, HEADER_BYTES, Record};

/// File-name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".wal";
/// File-name suffix of files being created (removed on open).
pub const TEMP_SUFFIX: &str = ".tmp";

/// The file name of segment `seq` whose first entry is `first_index`.
pub fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}")
}

/// `(seq, first_index)` of a segment file name.
pub fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    parse_pair(name.strip_suffix(SEGMENT_SUFFIX)?)
}

/// Parses `{a:016x}-{b:016x}`.
pub fn parse_pair(stem: &str) -> Option<(u64, u64)> {
    let (a, b) = stem.split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

/// A cut-off torn record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Torn {
    /// Where the torn record starts (the end of the valid data).
    pub offset: u64,
    /// Non-zero bytes that were cut off.
    pub bytes: u64,
}

/// What a segment holds.
#[derive(Debug, Default)]
pub struct Scan {
    /// Records with their byte offsets.
    pub records: Vec<(u64, Record)>,
    /// End of the last valid record: where writing resumes.
    pub end_offset: u64,
    /// The torn record cut off at the end, if any.
    pub torn: Option<Torn>,
}

/// Damage found by `scan`: where and what.
#[derive(Debug, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the damaged record.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// Reads every record of a segment's bytes. A torn tail is accepted only when `is_last`.
pub fn scan(buf: &[u8], is_last: bool) -> Result<Scan, Damage> {
    let nonzero_end = buf.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let mut scan = Scan::default();
    let mut offset = 0;
    while offset < nonzero_end {
        match record::decode(&buf[offset..]) {
            Ok((record, len)) => {
                scan.records.push((offset as u64, record));
                offset += len;
            }
            Err(error) => {
                if !is_torn(buf, offset, nonzero_end, &error) {
                    return Err(Damage {
                        offset: offset as u64,
                        reason: error.describe(),
                    });
                }
                if !is_last {
                    return Err(Damage {
                        offset: offset as u64,
                        reason: format!(
                            "{} in a segment that is not the last (it was synced whole before the \
                             next one was created)",
                            error.describe()
                        ),
                    });
                }
                scan.torn = Some(Torn {
                    offset: offset as u64,
                    bytes: (nonzero_end - offset) as u64,
                });
                break;
            }
        }
    }
    scan.end_offset = offset as u64;
    Ok(scan)
}

/// Whether the undecodable record at `offset` is a prefix of a record followed by nothing but
/// zeros (a torn write) rather than damage to a record written whole.
fn is_torn(buf: &[u8], offset: usize, nonzero_end: usize, error: &DecodeError) -> bool {
    match error {
        DecodeError::Short | DecodeError::Incomplete { .. } => true,
        DecodeError::HeaderCrc => nonzero_end <= offset + HEADER_BYTES,
        DecodeError::PayloadCrc { record_bytes } | DecodeError::Trailer { record_bytes, .. } => {
            let end = offset + record_bytes;
            buf[end - 1] == 0 && nonzero_end < end
        }
        DecodeError::TooLarge(_) | DecodeError::Malformed { .. } => false,
    }
}
