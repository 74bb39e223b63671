//! Watches: streams of changes to a key or range, served per node from the applied state, in a
//! pull model (`watch_create`, `watch_poll`, `watch_cancel` on [`crate::KvStore`]).
//!
//! ## Guarantees
//!
//! - **Ordered, exactly once, gap-checkable.** Each [`WatchResponse`] covers the revisions
//!   `from_revision..=to_revision` and holds every matching event in them, in revision order (and
//!   key order within a revision). The next response starts at `to_revision + 1`, so a client
//!   checks there is no gap by comparing the two. Events are never repeated.
//! - **Atomic per revision.** A response never splits a revision: `max_events` is a soft cap
//!   that a single large revision may exceed.
//! - **Resumable.** A watch may start at any revision not yet compacted (`start_revision`), so a
//!   client that lost its stream re-creates the watch from the last `to_revision + 1` it saw, on
//!   any node.
//! - **Compaction reported.** Starting at or below the compacted revision fails with
//!   [`KvError::Compacted`]; so does a poll of a catching-up watch that compaction overtook.
//! - **Bounded.** Events queued for a watch beyond [`crate::Limits::watch_pending_events_max`] or
//!   [`crate::Limits::watch_pending_bytes_max`] cancel it; its next poll returns
//!   [`KvError::WatchTooSlow`] (with the revision to resume from) and the watch is gone.
//!
//! ## How
//!
//! A watch is *synced* when every change up to the current revision has been queued for it:
//! applying a revision then queues the matching events (`notify`). A watch started in the past is
//! *catching up*: polls read the events straight from the MVCC changelog and history (no
//! buffering), at most [`crate::Limits::watch_catchup_revisions_max`] revisions per poll, and the
//! watch becomes synced when the scan reaches the current revision. Catching-up polls that scan
//! revisions without a matching event return a response without events (progress), so the next
//! `from_revision` still follows on.
//!
//! Watches are node-local: not replicated, not in snapshots or the state hash.
//! [`crate::KvStore::adopt_watches`] carries them over a snapshot restore.
//!
//! Invariants: queued events are in revision order, all `>= next_revision`; a synced watch has
//! `scan_revision == revision + 1` of the store when it was last notified; `ready` holds every
//! watch that has something to deliver (queued events, catching up, or cancelled).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::command::KeyValue;
use crate::command::validate::check_key;
use crate::key_range::{KeyRange, prefix_end};
use crate::mvcc::{KV_OVERHEAD_BYTES, KeyEntry, Mvcc};
use crate::{KvError, Limits, Result, Revision};

/// A watch's id, unique on this node.
pub type WatchId = u64;

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchRequest {
    /// The key (or first key of the range).
    pub key: Bytes,
    /// End of the range (exclusive): empty for one key, `"\0"` for every key from `key` on.
    pub range_end: Bytes,
    /// First revision to report (0: changes after the current revision only).
    pub start_revision: Revision,
    /// Include each key's previous value in events.
    pub prev_kv: bool,
}

impl WatchRequest {
    /// Watches one key.
    pub fn key(key: impl Into<Bytes>) -> Self {
        WatchRequest {
            key: key.into(),
            ..Default::default()
        }
    }

    /// Watches every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        WatchRequest {
            key,
            range_end,
            ..Default::default()
        }
    }

    /// Watches `[key, range_end)`.
    pub fn range(key: impl Into<Bytes>, range_end: impl Into<Bytes>) -> Self {
        WatchRequest {
            key: key.into(),
            range_end: range_end.into(),
            ..Default::default()
        }
    }

    /// Starts at `revision`.
    pub fn from_revision(mut self, revision: Revision) -> Self {
        self.start_revision = revision;
        self
    }

    /// Includes previous values.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
}

/// Whether an event is a put or a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was written.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change; for a delete only `key` and `mod_revision` (the deletion's
    /// revision) are set.
    pub kv: KeyValue,
    /// The key before the change, if asked for and it existed.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    fn bytes(&self) -> u64 {
        let kv_bytes =
            |kv: &KeyValue| kv.key.len() as u64 + kv.value.len() as u64 + KV_OVERHEAD_BYTES;
        kv_bytes(&self.kv) + self.prev_kv.as_ref().map_or(0, kv_bytes)
    }
}

/// What one poll of a watch delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchResponse {
    /// The watch.
    pub watch_id: WatchId,
    /// First revision covered (the previous response's `to_revision + 1`).
    pub from_revision: Revision,
    /// Last revision covered: every matching event of `from_revision..=to_revision` is in
    /// `events`.
    pub to_revision: Revision,
    /// The events, in revision order (key order within a revision); may be empty (progress).
    pub events: Vec<Event>,
}

/// One watch.
#[derive(Debug)]
struct Watcher {
    range: KeyRange,
    prev_kv: bool,
    /// First revision not yet delivered (`from_revision` of the next response).
    next_revision: Revision,
    /// First revision not yet scanned (catching up) or notified (synced).
    scan_revision: Revision,
    /// Whether apply queues events for it.
    synced: bool,
    pending: VecDeque<Event>,
    pending_bytes: u64,
}

/// All watches of this node (module docs).
#[derive(Debug, Default)]
pub(crate) struct Watches {
    watchers: BTreeMap<WatchId, Watcher>,
    /// Cancelled watches and why, reported by their next poll.
    cancelled: BTreeMap<WatchId, KvError>,
    ready: BTreeSet<WatchId>,
    last_id: WatchId,
}

fn event(key: &Bytes, entry: &KeyEntry, prev: Option<&KeyEntry>, with_prev: bool) -> Event {
    let (kind, kv) = if entry.is_tombstone() {
        let kv = KeyValue {
            key: key.clone(),
            mod_revision: entry.mod_revision,
            ..Default::default()
        };
        (EventKind::Delete, kv)
    } else {
        (EventKind::Put, entry.to_kv(key, false))
    };
    let prev_kv = prev
        .filter(|p| with_prev && !p.is_tombstone())
        .map(|p| p.to_kv(key, false));
    Event { kind, kv, prev_kv }
}

impl Watches {
    /// Number of watches (live and cancelled-but-unreported).
    pub(crate) fn len(&self) -> usize {
        self.watchers.len() + self.cancelled.len()
    }

    /// Watches with something to deliver.
    pub(crate) fn ready(&self) -> Vec<WatchId> {
        self.ready.iter().copied().collect()
    }

    pub(crate) fn create(
        &mut self,
        req: &WatchRequest,
        mvcc: &Mvcc,
        limits: &Limits,
    ) -> Result<WatchId> {
        check_key(&req.key, &req.range_end, limits)?;
        if self.len() as u64 >= limits.watches_max {
            return Err(KvError::WatchLimit {
                max: limits.watches_max,
            });
        }
        let current = mvcc.revision();
        let start = match req.start_revision {
            r if r < 0 => {
                return Err(KvError::InvalidRequest(format!(
                    "watch start revision {r} is negative"
                )));
            }
            0 => current + 1,
            r if r <= mvcc.compacted() => {
                return Err(KvError::Compacted {
                    revision: r,
                    compacted_revision: mvcc.compacted(),
                });
            }
            r => r,
        };
        let synced = start > current;
        self.last_id += 1;
        let id = self.last_id;
        self.watchers.insert(
            id,
            Watcher {
                range: KeyRange::new(&req.key, &req.range_end),
                prev_kv: req.prev_kv,
                next_revision: start,
                scan_revision: if synced { current + 1 } else { start },
                synced,
                pending: VecDeque::new(),
                pending_bytes: 0,
            },
        );
        if !synced {
            self.ready.insert(id);
        }
        Ok(id)
    }

    pub(crate) fn cancel(&mut self, id: WatchId) -> Result<()> {
        self.ready.remove(&id);
        if self.watchers.remove(&id).is_some() || self.cancelled.remove(&id).is_some() {
            Ok(())
        } else {
            Err(KvError::WatchNotFound { id })
        }
    }

    /// Queues the events of the just-committed `revision` for synced watches.
    pub(crate) fn notify(&mut self, revision: Revision, mvcc: &Mvcc, limits: &Limits) {
        let mut slow = Vec::new();
        for (id, w) in self.watchers.iter_mut().filter(|(_, w)| w.synced) {
            debug_assert_eq!(
                w.scan_revision, revision,
                "synced watches see every revision"
            );
            w.scan_revision = revision + 1;
            if revision < w.next_revision {
                continue; // starts in the future
            }
            let before = w.pending.len();
            for key in mvcc
                .changes_at(revision)
                .iter()
                .filter(|k| w.range.contains(k))
            {
                let (entry, prev) = mvcc
                    .history(key)
                    .and_then(|h| h.change_at(revision))
                    .expect("changelog is indexed");
                let e = event(key, entry, prev, w.prev_kv);
                w.pending_bytes += e.bytes();
                w.pending.push_back(e);
            }
            if w.pending.len() == before {
                continue;
            }
            self.ready.insert(*id);
            if w.pending.len() as u64 > limits.watch_pending_events_max
                || w.pending_bytes > limits.watch_pending_bytes_max
            {
                slow.push(*id);
            }
        }
        for id in slow {
            let w = self.watchers.remove(&id).expect("slow watch exists");
            let error = KvError::WatchTooSlow {
                id,
                events: w.pending.len() as u64,
                bytes: w.pending_bytes,
                events_max: limits.watch_pending_events_max,
                bytes_max: limits.watch_pending_bytes_max,
                resume_revision: w.next_revision,
            };
            self.cancelled.insert(id, error);
        }
    }

    pub(crate) fn poll(
        &mut self,
        id: WatchId,
        max_events: usize,
        mvcc: &Mvcc,
        limits: &Limits,
    ) -> Result<Option<WatchResponse>> {
        if let Some(error) = self.cancelled.remove(&id) {
            self.ready.remove(&id);
            return Err(error);
        }
        let w = self
            .watchers
            .get_mut(&id)
            .ok_or(KvError::WatchNotFound { id })?;
        let max_events = max_events.max(1);
        let from = w.next_revision;
        let mut events = Vec::new();
        // Queued events first, whole revisions at a time.
        while let Some(revision) = w.pending.front().map(Event::revision) {
            if events.len() >= max_events {
                break;
            }
            while w.pending.front().is_some_and(|e| e.revision() == revision) {
                let e = w.pending.pop_front().expect("front exists");
                w.pending_bytes -= e.bytes();
                events.push(e);
            }
        }
        if !w.synced && w.pending.is_empty() && events.len() < max_events {
            if w.scan_revision <= mvcc.compacted() {
                let error = KvError::Compacted {
                    revision: w.scan_revision,
                    compacted_revision: mvcc.compacted(),
                };
                self.watchers.remove(&id);
                self.ready.remove(&id);
                return Err(error);
            }
            let scan_end = w
                .scan_revision
                .saturating_add(limits.watch_catchup_revisions_max.max(1) as i64);
            while w.scan_revision <= mvcc.revision()
                && w.scan_revision < scan_end
                && events.len() < max_events
            {
                let revision = w.scan_revision;
                for key in mvcc
                    .changes_at(revision)
                    .iter()
                    .filter(|k| w.range.contains(k))
                {
                    let (entry, prev) = mvcc
                        .history(key)
                        .and_then(|h| h.change_at(revision))
                        .expect("changelog is indexed");
                    events.push(event(key, entry, prev, w.prev_kv));
                }
                w.scan_revision += 1;
            }
            w.synced = w.scan_revision > mvcc.revision();
        }
        let to = match w.pending.front() {
            Some(e) => e.revision() - 1,
            None => w.scan_revision - 1,
        };
        if w.pending.is_empty() && w.synced {
            self.ready.remove(&id);
        }
        if events.is_empty() && (w.synced || to < from) {
            return Ok(None); // nothing new; the next response still starts at `from`
        }
        w.next_revision = to + 1;
        Ok(Some(WatchResponse {
            watch_id: id,
            from_revision: from,
            to_revision: to,
            events,
        }))
    }

    /// Takes over `other`'s watches after this store was restored from a snapshot at a revision
    /// at or after `other`'s: events queued on `other` stay queued, the rest is read from this
    /// store's history (catching up from `other`'s revision + 1).
    pub(crate) fn adopt(&mut self, other: &mut Watches, other_revision: Revision, mvcc: &Mvcc) {
        for (id, mut w) in std::mem::take(&mut other.watchers) {
            if w.synced && w.next_revision <= other_revision + 1 {
                w.synced = other_revision + 1 > mvcc.revision();
                w.scan_revision = other_revision + 1;
            } else if w.synced {
                // Starts in the future: stays synced if still in the future here.
                w.synced = w.next_revision > mvcc.revision();
                w.scan_revision = if w.synced {
                    mvcc.revision() + 1
                } else {
                    w.next_revision
                };
            }
            if !w.synced || !w.pending.is_empty() {
                self.ready.insert(id);
            }
            self.watchers.insert(id, w);
        }
        for (id, error) in std::mem::take(&mut other.cancelled) {
            self.ready.insert(id);
            self.cancelled.insert(id, error);
        }
        other.ready.clear();
        self.last_id = self.last_id.max(other.last_id);
    }
}
