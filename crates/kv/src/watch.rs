//! Watches: streams of changes to a key or range, served per node from the applied state, in a
//! pull model (`watch_create`, `watch_poll_ready`, `watch_cancel` on [`crate::KvStore`]).
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
//! - **Free for writers.** Applying a revision does no work per watch: a watch is a cursor into
//!   the store's history, read when it is polled. A watch that falls behind is never cancelled
//!   for it; it reads on from history.
//! - **Compaction reported, not suffered.** Starting at or below the compacted revision fails
//!   with [`KvError::Compacted`]. When a compaction would overtake a watch, the events it has not
//!   read yet are first copied out for it (at most [`crate::Limits::watch_pending_bytes_max`]
//!   bytes over at most [`crate::Limits::watch_catchup_revisions_max`] revisions); a watch too
//!   far behind for that ends with [`KvError::Compacted`], as etcd's do.
//! - **Shared.** [`crate::KvStore::watch_poll_ready`] reads the history once for all watches at
//!   the same revision, and watches of the same range at the same point share one response.
//!
//! ## How
//!
//! A watch has two cursors: `next_revision`, the first revision it has not delivered, and
//! `scan_revision`, the first revision it has not read from the changelog (revisions between the
//! two had no matching event, or their events wait in `pending`). A poll reads at most
//! [`crate::Limits::watch_catchup_revisions_max`] revisions per watch. A poll that reads
//! revisions without a matching event short of the current revision returns a response without
//! events (progress), so the next `from_revision` still follows on; one that reaches the current
//! revision with nothing to say returns nothing.
//!
//! Watches are node-local: not replicated, not in snapshots or the state hash.
//! [`crate::KvStore::adopt_watches`] carries them over a snapshot restore.
//!
//! Invariants: `next_revision <= scan_revision`; `pending` holds events of revisions in
//! `next_revision..scan_revision`, in order; a watch with nothing pending has
//! `scan_revision > compacted` (so its history is there to read).

mod progress;

pub use progress::WatchProgress;

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
    /// First revision covered (the previous response's `to_revision + 1`).
    pub from_revision: Revision,
    /// Last revision covered: every matching event of `from_revision..=to_revision` is in
    /// `events`.
    pub to_revision: Revision,
    /// The events, in revision order (key order within a revision); may be empty (progress).
    pub events: Vec<Event>,
}

/// One outcome of [`crate::KvStore::watch_poll_ready`], the same for every watch in
/// `watch_ids` (watches of the same range at the same point share one response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchDelivery {
    /// The watches it is for (at least one).
    pub watch_ids: Vec<WatchId>,
    /// Their next response, or why they ended (compaction overtook them, or they were cancelled);
    /// an ended watch is gone.
    pub result: Result<WatchResponse>,
}

/// One watch.
#[derive(Debug)]
struct Watcher {
    range: KeyRange,
    prev_kv: bool,
    /// First revision not yet delivered (`from_revision` of the next response).
    next_revision: Revision,
    /// First revision not yet read from the changelog, while lagging (a synced watch has read
    /// through `Watches::synced_through`).
    scan_revision: Revision,
    /// Whether it is in `Watches::synced` (else in `Watches::lagging`).
    synced: bool,
    /// Events read out of history ahead of a compaction, not yet delivered.
    pending: VecDeque<Event>,
    pending_bytes: u64,
}

/// All watches of this node (module docs).
#[derive(Debug, Default)]
pub(crate) struct Watches {
    watchers: BTreeMap<WatchId, Watcher>,
    /// Ended watches and why, reported by their next poll.
    cancelled: BTreeMap<WatchId, KvError>,
    /// Watches that have read history through `synced_through`, by range: a poll reads the new
    /// revisions once for all of them, finding single keys by key.
    synced: BTreeMap<KeyRange, BTreeSet<WatchId>>,
    synced_through: Revision,
    /// Watches reading history from their own `scan_revision` (started in the past, behind a
    /// full stream, or with events read ahead of a compaction).
    lagging: BTreeSet<WatchId>,
    last_id: WatchId,
}

/// Lagging watches that read the same history the same way, so one response serves them all:
/// ordered by `scan_revision` first, so watches reading from the same revision are adjacent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    scan_revision: Revision,
    range: KeyRange,
    prev_kv: bool,
    next_revision: Revision,
}

/// What a scan read for one range: its events and the last revision read.
struct Scanned {
    events: Vec<Event>,
    last_revision: Revision,
}

fn event(key: &Bytes, entry: &KeyEntry, prev: Option<&KeyEntry>) -> Event {
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
        .filter(|p| !p.is_tombstone())
        .map(|p| p.to_kv(key, false));
    Event { kind, kv, prev_kv }
}

/// `events` as a watch that does (not) want previous values sees them.
fn shaped(events: &[Event], prev_kv: bool) -> Vec<Event> {
    events
        .iter()
        .map(|e| Event {
            prev_kv: e.prev_kv.clone().filter(|_| prev_kv),
            ..e.clone()
        })
        .collect()
}

/// Reads revisions `from..=to` of the changelog once for all `ranges` (`matching` lists the
/// indexes of the ranges holding a key): each range gets its events (with previous values), and
/// stops at the first revision boundary where it holds `max_events` or more.
fn scan(
    mvcc: &Mvcc,
    from: Revision,
    to: Revision,
    ranges: usize,
    matching: impl Fn(&[u8], &mut Vec<usize>),
    max_events: usize,
) -> Vec<Scanned> {
    let mut scanned: Vec<Scanned> = (0..ranges)
        .map(|_| Scanned {
            events: Vec::new(),
            last_revision: to,
        })
        .collect();
    let mut closed = vec![false; ranges];
    let mut full: Vec<usize> = Vec::new();
    let mut matched = Vec::new();
    for revision in from..=to {
        for i in full.drain(..) {
            closed[i] = true;
            scanned[i].last_revision = revision - 1;
        }
        for key in mvcc.changes_at(revision) {
            matched.clear();
            matching(key, &mut matched);
            matched.retain(|&i| !closed[i]);
            if matched.is_empty() {
                continue;
            }
            let (entry, prev) = mvcc
                .history(key)
                .and_then(|h| h.change_at(revision))
                .expect("changelog is indexed");
            let e = event(key, entry, prev);
            for &i in &matched {
                scanned[i].events.push(e.clone());
                if scanned[i].events.len() == max_events {
                    full.push(i);
                }
            }
        }
    }
    scanned
}

/// The smallest interval range: every `KeyRange::Interval` sorts at or after it, every
/// `KeyRange::Single` before.
fn first_interval() -> KeyRange {
    KeyRange::Interval {
        start: Bytes::new(),
        end: None,
    }
}

impl Watches {
    /// Number of watches (live and ended-but-unreported).
    pub(crate) fn len(&self) -> usize {
        self.watchers.len() + self.cancelled.len()
    }

    /// Whether watch `id` exists (live, or ended and not yet reported).
    pub(crate) fn exists(&self, id: WatchId) -> bool {
        self.watchers.contains_key(&id) || self.cancelled.contains_key(&id)
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
        let start = match req.start_revision {
            r if r < 0 => {
                return Err(KvError::InvalidRequest(format!(
                    "watch start revision {r} is negative"
                )));
            }
            0 => mvcc.revision() + 1,
            r if r <= mvcc.compacted() => {
                return Err(KvError::Compacted {
                    revision: r,
                    compacted_revision: mvcc.compacted(),
                });
            }
            r => r,
        };
        if self.synced.is_empty() {
            self.synced_through = mvcc.revision();
        }
        self.last_id += 1;
        let id = self.last_id;
        self.watchers.insert(
            id,
            Watcher {
                range: KeyRange::new(&req.key, &req.range_end),
                prev_kv: req.prev_kv,
                next_revision: start,
                scan_revision: start,
                synced: false,
                pending: VecDeque::new(),
                pending_bytes: 0,
            },
        );
        self.lagging.insert(id);
        self.join_synced(id);
        Ok(id)
    }

    pub(crate) fn cancel(&mut self, id: WatchId) -> Result<()> {
        if self.cancelled.remove(&id).is_some() {
            return Ok(());
        }
        let w = self
            .watchers
            .remove(&id)
            .ok_or(KvError::WatchNotFound { id })?;
        self.forget(id, &w);
        Ok(())
    }

    /// Drops `id` (watch `w`, already out of `watchers`) from the synced index or lagging set.
    fn forget(&mut self, id: WatchId, w: &Watcher) {
        if w.synced {
            if let Some(ids) = self.synced.get_mut(&w.range) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.synced.remove(&w.range);
                }
            }
        } else {
            self.lagging.remove(&id);
        }
    }

    /// Moves lagging watch `id` to the synced index if it has read exactly through
    /// `synced_through` and has nothing pending.
    fn join_synced(&mut self, id: WatchId) {
        let Some(w) = self.watchers.get_mut(&id) else {
            return;
        };
        if w.synced || !w.pending.is_empty() || w.scan_revision != self.synced_through + 1 {
            return;
        }
        w.synced = true;
        self.lagging.remove(&id);
        self.synced.entry(w.range.clone()).or_default().insert(id);
    }

    /// Moves synced watch `id` to the lagging set, to read on from `scan_revision`.
    fn make_lagging(&mut self, id: WatchId, scan_revision: Revision) {
        let Some(w) = self.watchers.get_mut(&id) else {
            return;
        };
        debug_assert!(w.synced, "only a synced watch starts lagging");
        w.synced = false;
        w.scan_revision = scan_revision;
        if let Some(ids) = self.synced.get_mut(&w.range) {
            ids.remove(&id);
            if ids.is_empty() {
                self.synced.remove(&w.range);
            }
        }
        self.lagging.insert(id);
    }

    /// Polls every watch `wanted` accepts that has something to say: ended watches, events read
    /// ahead of a compaction, and new history (about `max_events` per watch, whole revisions).
    /// At most one delivery per watch.
    pub(crate) fn poll_ready(
        &mut self,
        wanted: impl Fn(WatchId) -> bool,
        max_events: usize,
        mvcc: &Mvcc,
        limits: &Limits,
    ) -> Vec<WatchDelivery> {
        let max_events = max_events.max(1);
        let mut deliveries = Vec::new();
        let ended: Vec<WatchId> = self
            .cancelled
            .keys()
            .copied()
            .filter(|&id| wanted(id))
            .collect();
        for id in ended {
            if let Some(error) = self.cancelled.remove(&id) {
                deliveries.push(WatchDelivery {
                    watch_ids: vec![id],
                    result: Err(error),
                });
            }
        }
        let delivered = self.poll_synced(&wanted, max_events, mvcc, &mut deliveries);
        self.poll_lagging(
            &wanted,
            &delivered,
            max_events,
            mvcc,
            limits,
            &mut deliveries,
        );
        deliveries
    }

    /// Reads the revisions after `synced_through` once for every synced watch; a watch that is
    /// not `wanted` or fills `max_events` starts lagging. Returns the watches it delivered to.
    fn poll_synced(
        &mut self,
        wanted: &impl Fn(WatchId) -> bool,
        max_events: usize,
        mvcc: &Mvcc,
        deliveries: &mut Vec<WatchDelivery>,
    ) -> BTreeSet<WatchId> {
        let current = mvcc.revision();
        let from = self.synced_through + 1;
        self.synced_through = current;
        if self.synced.is_empty() || from > current {
            return BTreeSet::new();
        }
        // The ranges with at least one event, found by reading the changelog once.
        let mut touched: Vec<&KeyRange> = Vec::new();
        let mut touched_at: BTreeMap<&KeyRange, usize> = BTreeMap::new();
        for revision in from..=current {
            for key in mvcc.changes_at(revision) {
                let single = KeyRange::Single(key.clone());
                let hits = self
                    .synced
                    .get_key_value(&single)
                    .map(|(r, _)| r)
                    .into_iter()
                    .chain(
                        self.synced
                            .range(first_interval()..)
                            .map(|(r, _)| r)
                            .filter(|r| r.contains(key)),
                    );
                for range in hits {
                    touched_at.entry(range).or_insert_with(|| {
                        touched.push(range);
                        touched.len() - 1
                    });
                }
            }
        }
        if touched.is_empty() {
            return BTreeSet::new();
        }
        let first = first_interval();
        let scanned = scan(
            mvcc,
            from,
            current,
            touched.len(),
            |key, out| {
                let single = KeyRange::Single(Bytes::copy_from_slice(key));
                out.extend(touched_at.get(&single));
                out.extend(
                    touched_at
                        .range::<&KeyRange, _>(&first..)
                        .filter(|(r, _)| r.contains(key))
                        .map(|(_, &i)| i),
                );
            },
            max_events,
        );
        let touched: Vec<(KeyRange, Vec<WatchId>)> = touched
            .into_iter()
            .map(|r| (r.clone(), self.synced[r].iter().copied().collect()))
            .collect();
        let mut delivered = BTreeSet::new();
        for ((_, ids), s) in touched.into_iter().zip(scanned) {
            let mut groups: BTreeMap<(bool, Revision), Vec<WatchId>> = BTreeMap::new();
            for id in ids {
                if !wanted(id) {
                    self.make_lagging(id, from);
                    continue;
                }
                let w = &self.watchers[&id];
                groups
                    .entry((w.prev_kv, w.next_revision))
                    .or_default()
                    .push(id);
                if s.last_revision < current {
                    self.make_lagging(id, s.last_revision + 1);
                }
                if let Some(w) = self.watchers.get_mut(&id) {
                    w.next_revision = s.last_revision + 1;
                }
                delivered.insert(id);
            }
            for ((prev_kv, next_revision), ids) in groups {
                deliveries.push(WatchDelivery {
                    watch_ids: ids,
                    result: Ok(WatchResponse {
                        from_revision: next_revision,
                        to_revision: s.last_revision,
                        events: shaped(&s.events, prev_kv),
                    }),
                });
            }
        }
        delivered
    }

    /// Polls the lagging watches `wanted` accepts and not `delivered` to this round: events
    /// read ahead of a compaction first, then history from their `scan_revision`, read once per
    /// group of watches at the same revision. Those that catch up join the synced index.
    fn poll_lagging(
        &mut self,
        wanted: &impl Fn(WatchId) -> bool,
        delivered: &BTreeSet<WatchId>,
        max_events: usize,
        mvcc: &Mvcc,
        limits: &Limits,
        deliveries: &mut Vec<WatchDelivery>,
    ) {
        let current = mvcc.revision();
        let mut groups: BTreeMap<GroupKey, Vec<WatchId>> = BTreeMap::new();
        let ids: Vec<WatchId> = self
            .lagging
            .iter()
            .copied()
            .filter(|id| !delivered.contains(id) && wanted(*id))
            .collect();
        for &id in &ids {
            let w = self.watchers.get_mut(&id).expect("lagging watch exists");
            if let Some(response) = w.take_pending(max_events) {
                deliveries.push(WatchDelivery {
                    watch_ids: vec![id],
                    result: Ok(response),
                });
            } else if w.scan_revision <= current {
                groups.entry(w.group_key()).or_default().push(id);
            }
        }
        let groups: Vec<(GroupKey, Vec<WatchId>)> = groups.into_iter().collect();
        for cohort in groups.chunk_by(|a, b| a.0.scan_revision == b.0.scan_revision) {
            let from = cohort[0].0.scan_revision;
            if from <= mvcc.compacted() {
                // Only after adopting watches into a store restored past them.
                for (key, ids) in cohort {
                    self.end(ids, key.next_revision, mvcc.compacted(), deliveries);
                }
                continue;
            }
            let to = current.min(from.saturating_add(catchup_revisions(limits) - 1));
            let matching = |key: &[u8], out: &mut Vec<usize>| {
                out.extend(
                    cohort
                        .iter()
                        .enumerate()
                        .filter(|(_, (k, _))| k.range.contains(key))
                        .map(|(i, _)| i),
                );
            };
            let scanned = scan(mvcc, from, to, cohort.len(), matching, max_events);
            for ((key, ids), s) in cohort.iter().zip(scanned) {
                for id in ids {
                    let w = self.watchers.get_mut(id).expect("grouped watch exists");
                    w.scan_revision = s.last_revision + 1;
                }
                let caught_up = s.last_revision == current;
                if !(s.events.is_empty() && caught_up) {
                    for id in ids {
                        let w = self.watchers.get_mut(id).expect("grouped watch exists");
                        w.next_revision = s.last_revision + 1;
                    }
                    deliveries.push(WatchDelivery {
                        watch_ids: ids.clone(),
                        result: Ok(WatchResponse {
                            from_revision: key.next_revision,
                            to_revision: s.last_revision,
                            events: shaped(&s.events, key.prev_kv),
                        }),
                    });
                }
                // Nothing new and caught up: the next response still starts at `next_revision`.
            }
        }
        for id in ids {
            self.join_synced(id);
        }
    }

    /// Ends watches `ids` that compaction overtook, reporting it in `deliveries`.
    fn end(
        &mut self,
        ids: &[WatchId],
        revision: Revision,
        compacted_revision: Revision,
        deliveries: &mut Vec<WatchDelivery>,
    ) {
        for id in ids {
            if let Some(w) = self.watchers.remove(id) {
                self.forget(*id, &w);
            }
        }
        deliveries.push(WatchDelivery {
            watch_ids: ids.to_vec(),
            result: Err(KvError::Compacted {
                revision,
                compacted_revision,
            }),
        });
    }

    /// Before history up to `revision` is compacted: reads out, for every watch that has not read
    /// that far, the events it has not read (module docs), or ends it if it is too far behind.
    pub(crate) fn before_compact(&mut self, revision: Revision, mvcc: &Mvcc, limits: &Limits) {
        if self.synced_through < revision {
            let synced: Vec<WatchId> = self.synced.values().flatten().copied().collect();
            let from = self.synced_through + 1;
            for id in synced {
                self.make_lagging(id, from);
            }
        }
        let mut groups: BTreeMap<GroupKey, Vec<WatchId>> = BTreeMap::new();
        for &id in &self.lagging {
            let w = &self.watchers[&id];
            if w.scan_revision <= revision {
                groups.entry(w.group_key()).or_default().push(id);
            }
        }
        let groups: Vec<(GroupKey, Vec<WatchId>)> = groups.into_iter().collect();
        let mut ended = Vec::new();
        for cohort in groups.chunk_by(|a, b| a.0.scan_revision == b.0.scan_revision) {
            let from = cohort[0].0.scan_revision;
            let behind = revision - from + 1;
            let scanned = if behind <= catchup_revisions(limits) && from > mvcc.compacted() {
                let matching = |key: &[u8], out: &mut Vec<usize>| {
                    out.extend(
                        cohort
                            .iter()
                            .enumerate()
                            .filter(|(_, (k, _))| k.range.contains(key))
                            .map(|(i, _)| i),
                    );
                };
                scan(mvcc, from, revision, cohort.len(), matching, usize::MAX)
            } else {
                Vec::new()
            };
            for (i, (key, ids)) in cohort.iter().enumerate() {
                let Some(s) = scanned.get(i) else {
                    ended.extend(ids.iter().copied());
                    continue;
                };
                let events = shaped(&s.events, key.prev_kv);
                let bytes: u64 = events.iter().map(Event::bytes).sum();
                for &id in ids {
                    let w = self.watchers.get_mut(&id).expect("grouped watch exists");
                    if w.pending_bytes + bytes > limits.watch_pending_bytes_max {
                        ended.push(id);
                        continue;
                    }
                    w.pending.extend(events.iter().cloned());
                    w.pending_bytes += bytes;
                    w.scan_revision = revision + 1;
                }
            }
        }
        for id in ended {
            if let Some(w) = self.watchers.remove(&id) {
                self.forget(id, &w);
                let error = KvError::Compacted {
                    revision: w.next_revision,
                    compacted_revision: revision,
                };
                self.cancelled.insert(id, error);
            }
        }
    }

    /// Takes over `other`'s watches after this store was restored from a snapshot at a revision
    /// at or after `other`'s: each reads on from where it was (module docs).
    pub(crate) fn adopt(&mut self, other: &mut Watches) {
        let synced_from = other.synced_through + 1;
        for (id, mut w) in std::mem::take(&mut other.watchers) {
            if w.synced {
                w.synced = false;
                w.scan_revision = synced_from;
            }
            self.lagging.insert(id);
            self.watchers.insert(id, w);
        }
        other.synced.clear();
        other.lagging.clear();
        self.cancelled.append(&mut other.cancelled);
        self.last_id = self.last_id.max(other.last_id);
    }
}

/// Revisions one poll reads per watch.
fn catchup_revisions(limits: &Limits) -> Revision {
    Revision::try_from(limits.watch_catchup_revisions_max.max(1)).unwrap_or(Revision::MAX)
}

impl Watcher {
    fn group_key(&self) -> GroupKey {
        GroupKey {
            scan_revision: self.scan_revision,
            range: self.range.clone(),
            prev_kv: self.prev_kv,
            next_revision: self.next_revision,
        }
    }

    /// The next response from events read ahead of a compaction, whole revisions at a time.
    fn take_pending(&mut self, max_events: usize) -> Option<WatchResponse> {
        if self.pending.is_empty() {
            return None;
        }
        let from = self.next_revision;
        let mut events = Vec::new();
        while let Some(revision) = self.pending.front().map(Event::revision) {
            if events.len() >= max_events {
                break;
            }
            while self
                .pending
                .front()
                .is_some_and(|e| e.revision() == revision)
            {
                let e = self.pending.pop_front().expect("front exists");
                self.pending_bytes -= e.bytes();
                events.push(e);
            }
        }
        let to = match self.pending.front() {
            Some(e) => e.revision() - 1,
            None => self.scan_revision - 1,
        };
        self.next_revision = to + 1;
        Some(WatchResponse {
            from_revision: from,
            to_revision: to,
            events,
        })
    }
}
