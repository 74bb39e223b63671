//! Group commit: many appenders share each sync, with no writer thread.
//!
//! Appenders queue requests (`append`, `save`) and get a `Completion`. Whoever waits on a
//! completion while no sync is in progress becomes the leader: it takes every queued request (up to
//! `BATCH_REQUESTS_MAX`), encodes them all into the WAL, syncs once, resolves their completions and
//! wakes the others, while new requests queue up for the next leader. A lone appender therefore
//! pays one write and one sync and no thread hand-off; many appenders pay one sync per batch. When
//! a sync fails, every request of the batch (and every later one) gets the WAL's `Failed` error.
//! The queue is bounded (`queue_len`): appenders wait for room, which is the back-pressure.
//!
//! Invariants: a completion resolves `Ok` only after a sync covering its records returned `Ok`;
//! at most one leader holds the WAL at a time (`Inner::wal` is `None` while it does).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;
use raftkv_raft::{Entry, HardState, Index, Storage, Term};

use crate::disk::Disk;
use crate::error::{Result, WalError};
use crate::wal::Wal;

/// Default `GroupCommit::new` queue length.
pub const QUEUE_LEN_DEFAULT: usize = 4096;
/// Most requests one sync covers.
pub const BATCH_REQUESTS_MAX: usize = 4096;

/// What an appender asks for.
enum Op {
    /// Persist a `Ready`'s hard state and entries (indexes chosen by the caller).
    Save {
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
    },
    /// Append one normal entry at the next index.
    Append { term: Term, data: Bytes },
}

/// Where a request stands, as its completion sees it.
#[derive(Default)]
enum Status {
    /// Queued or in a batch being synced.
    #[default]
    Pending,
    /// Asked to lead the next batch (it is at the head of the queue and no one leads).
    Lead,
    /// The outcome (taken by `wait`).
    Done(Option<Result<Index>>),
    /// Its completion was dropped without waiting: never asked to lead.
    Abandoned,
}

/// A request's status and the signal its (single) waiter sleeps on.
#[derive(Default)]
struct SlotState {
    /// The status.
    status: Mutex<Status>,
    /// Signalled when the status changes.
    changed: Condvar,
}

/// Shared between a request in the queue and its completion.
type Slot = Arc<SlotState>;

/// Asks a queued request's waiter to lead; false if its completion was dropped.
fn promote(slot: &SlotState) -> bool {
    let mut status = lock(&slot.status);
    match *status {
        Status::Abandoned => false,
        _ => {
            *status = Status::Lead;
            slot.changed.notify_one();
            true
        }
    }
}

fn set_status(slot: &SlotState, status: Status) {
    *lock(&slot.status) = status;
    slot.changed.notify_one();
}

/// State shared by appenders, under one mutex.
struct Inner<D: Disk> {
    /// The WAL; `None` while a leader works on it.
    wal: Option<Wal<D>>,
    /// Requests waiting for the next leader.
    queue: Vec<(Op, Slot)>,
    /// Set by `shutdown`: new requests fail with `Closed`.
    closed: bool,
}

/// The shared part of a `GroupCommit`.
struct Shared<D: Disk> {
    /// The state.
    inner: Mutex<Inner<D>>,
    /// Signalled when a leader finishes (WAL back, queue room) for readers, submitters waiting for
    /// room and `shutdown`; completions wait on their own slots.
    changed: Condvar,
    /// Most queued requests.
    queue_len: usize,
}

/// A WAL that many threads append to, sharing syncs. See the module documentation.
pub struct GroupCommit<D: Disk> {
    /// The shared state.
    shared: Arc<Shared<D>>,
}

/// Resolves once a request is durable, to the last index it wrote.
pub struct Completion<D: Disk> {
    /// The group.
    shared: Arc<Shared<D>>,
    /// Where the outcome arrives.
    slot: Slot,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<D: Disk> GroupCommit<D> {
    /// A group over `wal` queueing at most `queue_len` requests.
    pub fn new(wal: Wal<D>, queue_len: usize) -> Self {
        let inner = Inner {
            wal: Some(wal),
            queue: Vec::new(),
            closed: false,
        };
        GroupCommit {
            shared: Arc::new(Shared {
                inner: Mutex::new(inner),
                changed: Condvar::new(),
                queue_len: queue_len.max(1),
            }),
        }
    }

    /// Persists a `Ready`'s hard state and entries; resolves to the last index once durable.
    pub fn save(&self, hard_state: Option<HardState>, entries: Vec<Entry>) -> Completion<D> {
        self.submit(Op::Save {
            hard_state,
            entries,
        })
    }

    /// Appends a normal entry of `term` carrying `data` at the next index; resolves to that index
    /// once durable.
    pub fn append(&self, term: Term, data: Bytes) -> Completion<D> {
        self.submit(Op::Append { term, data })
    }

    /// Runs `read` on the WAL (waiting while a leader holds it), e.g. to serve `Storage` reads.
    pub fn with_wal<T>(&self, read: impl FnOnce(&Wal<D>) -> T) -> Result<T> {
        let mut inner = lock(&self.shared.inner);
        loop {
            if let Some(wal) = &inner.wal {
                return Ok(read(wal));
            }
            if inner.closed {
                return Err(WalError::Closed);
            }
            inner = self.shared.wait(inner);
        }
    }

    /// Stops taking requests, lets queued ones complete, and returns the WAL.
    pub fn shutdown(self) -> Result<Wal<D>> {
        let mut inner = lock(&self.shared.inner);
        inner.closed = true;
        loop {
            if inner.queue.is_empty() {
                if let Some(wal) = inner.wal.take() {
                    return Ok(wal);
                }
            }
            if inner.wal.is_some() {
                inner = self.shared.lead(inner);
            } else {
                inner = self.shared.wait(inner);
            }
        }
    }

    fn submit(&self, op: Op) -> Completion<D> {
        let slot: Slot = Arc::default();
        let mut inner = lock(&self.shared.inner);
        while inner.queue.len() >= self.shared.queue_len && !inner.closed {
            inner = if inner.wal.is_some() {
                self.shared.lead(inner)
            } else {
                self.shared.wait(inner)
            };
        }
        if inner.closed {
            set_status(&slot, Status::Done(Some(Err(WalError::Closed))));
        } else {
            inner.queue.push((op, slot.clone()));
        }
        Completion {
            shared: self.shared.clone(),
            slot,
        }
    }
}

impl<D: Disk> Completion<D> {
    /// Blocks until the request is durable (`Ok(last index it wrote)`) or failed, leading a batch
    /// if no one else is.
    pub fn wait(self) -> Result<Index> {
        loop {
            let inner = lock(&self.shared.inner);
            if inner.wal.is_some() && !self.is_done() {
                drop(self.shared.lead(inner));
            } else {
                drop(inner);
            }
            let mut status = lock(&self.slot.status);
            loop {
                match &mut *status {
                    Status::Done(outcome) => {
                        return outcome.take().unwrap_or(Err(WalError::Closed));
                    }
                    Status::Lead => {
                        *status = Status::Pending;
                        break;
                    }
                    Status::Pending | Status::Abandoned => {
                        status = self
                            .slot
                            .changed
                            .wait(status)
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                    }
                }
            }
        }
    }

    fn is_done(&self) -> bool {
        matches!(*lock(&self.slot.status), Status::Done(_))
    }
}

impl<D: Disk> Drop for Completion<D> {
    /// A completion dropped unwaited still has its request written; if it was asked to lead, it
    /// leads now so the queue behind it does not stall.
    fn drop(&mut self) {
        let was_asked_to_lead = {
            let mut status = lock(&self.slot.status);
            match *status {
                Status::Lead => true,
                Status::Pending => {
                    *status = Status::Abandoned;
                    false
                }
                _ => false,
            }
        };
        if was_asked_to_lead {
            let inner = lock(&self.shared.inner);
            if inner.wal.is_some() {
                drop(self.shared.lead(inner));
            }
        }
    }
}

impl<D: Disk> Shared<D> {
    fn wait<'a>(&'a self, guard: MutexGuard<'a, Inner<D>>) -> MutexGuard<'a, Inner<D>> {
        self.changed
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Leads one batch: takes the WAL and the queue, applies, syncs once outside the lock, resolves.
    fn lead<'a>(&'a self, mut inner: MutexGuard<'a, Inner<D>>) -> MutexGuard<'a, Inner<D>> {
        let Some(mut wal) = inner.wal.take() else {
            return inner;
        };
        let take = inner.queue.len().min(BATCH_REQUESTS_MAX);
        let batch: Vec<(Op, Slot)> = inner.queue.drain(..take).collect();
        drop(inner);
        let mut outcomes: Vec<Result<Index>> =
            batch.iter().map(|(op, _)| apply(&mut wal, op)).collect();
        if wal.sync().is_err() {
            outcomes = batch.iter().map(|_| wal.check().map(|()| 0)).collect();
        }
        for ((_, slot), outcome) in batch.into_iter().zip(outcomes) {
            set_status(&slot, Status::Done(Some(outcome)));
        }
        let mut inner = lock(&self.inner);
        inner.wal = Some(wal);
        for (_, slot) in &inner.queue {
            if promote(slot) {
                break;
            }
        }
        self.changed.notify_all();
        inner
    }
}

fn apply<D: Disk>(wal: &mut Wal<D>, op: &Op) -> Result<Index> {
    match op {
        Op::Save {
            hard_state,
            entries,
        } => {
            if let Some(hard_state) = hard_state {
                wal.set_hard_state(*hard_state)?;
            }
            wal.append(entries)?;
        }
        Op::Append { term, data } => {
            let entry = Entry::new(wal.last_index() + 1, *term, data.clone());
            wal.append(&[entry])?;
        }
    }
    Ok(wal.last_index())
}
