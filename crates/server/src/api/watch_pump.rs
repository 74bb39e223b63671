//! Watch delivery, shared by every watch stream of the node: one task wakes after each applied
//! batch, takes the state lock once to poll every watch whose stream has room (the store reads
//! the new history once for all of them and groups watches of the same range at the same point
//! into one delivery), renders each delivery once outside the lock, and hands the same bytes to
//! every stream of the group through bounded channels. Applying writes does no work per watch.
//!
//! It also counts each client's watches, so one client cannot take every watch of the node.
//!
//! Invariants: only the pump sends on a stream's channel, and only into a slot it reserved
//! before polling the watch, so no line is ever dropped; a watch whose stream is full is not polled (it reads on from history when its
//! stream drains); a client's count equals its open `ClientSlot`s.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use raftkv_kv::{KvError, WatchId, WatchResponse};
use tokio::sync::mpsc::{self, OwnedPermit};

use super::error::ApiError;
use super::render;
use crate::service::Service;

/// Lines queued for one stream before the pump stops polling its watch.
const STREAM_LINES_QUEUED_MAX: usize = 16;
/// Events taken from the store per poll of one watch.
const WATCH_BATCH_EVENTS: usize = 256;
/// The pump polls at least this often, even without an applied batch (watches reading on from
/// history after their stream drained).
const PUMP_INTERVAL_MAX: Duration = Duration::from_millis(200);

/// A line for a stream.
#[derive(Clone)]
pub enum Line {
    /// A batch of events, shared by every watch it was delivered to.
    Events(Arc<Batch>),
    /// The watch ended (compaction overtook it): the last line.
    End(KvError),
}

/// A batch of events and, rendered once on first use, its JSON line.
pub struct Batch {
    /// What the store delivered.
    pub response: WatchResponse,
    json: OnceLock<Bytes>,
}

impl Batch {
    /// The batch as a JSON line of the HTTP API (rendered once for all its streams).
    pub fn json_line(&self) -> Bytes {
        self.json
            .get_or_init(|| format!("{}\n", render::watch_json(&self.response)).into())
            .clone()
    }
}

/// Where a watch's lines go: a stream's channel, which several watches of one stream may share.
pub type LineSender = mpsc::Sender<(WatchId, Line)>;

/// The streams the pump feeds, and each client's number of watches.
#[derive(Default)]
pub struct WatchPump {
    streams: Mutex<BTreeMap<WatchId, LineSender>>,
    per_client: Mutex<BTreeMap<IpAddr, usize>>,
}

/// One watch of a client, counted while it lives.
pub struct ClientSlot {
    pump: Arc<WatchPump>,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.pump.per_client);
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl WatchPump {
    /// Counts one more watch of `client`, refused with a 429 beyond `max` (watches_per_client_max).
    pub fn admit(self: &Arc<Self>, client: IpAddr, max: usize) -> Result<ClientSlot, ApiError> {
        let mut counts = lock(&self.per_client);
        let count = counts.entry(client).or_default();
        if *count >= max {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "limit_reached",
                format!(
                    "too many watches from {client} (the limit is {max}, \
                     --watches-per-client-max); cancel unused watches"
                ),
            ));
        }
        *count += 1;
        Ok(ClientSlot {
            pump: self.clone(),
            client,
        })
    }

    /// A channel for one stream's lines (of one watch or several).
    pub fn channel() -> (LineSender, mpsc::Receiver<(WatchId, Line)>) {
        mpsc::channel(STREAM_LINES_QUEUED_MAX)
    }

    /// Starts feeding watch `id` into `lines`.
    pub fn register(&self, id: WatchId, lines: LineSender) {
        lock(&self.streams).insert(id, lines);
    }

    /// Stops feeding watch `id` (its stream ended).
    pub fn unregister(&self, id: WatchId) {
        lock(&self.streams).remove(&id);
    }

    /// Feeds the streams until the node stops.
    pub async fn run(self: Arc<Self>, service: Service) {
        let shared = service.shared().clone();
        let mut stopping = shared.stopping.subscribe();
        loop {
            let applied = shared.applied.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            self.pump(&service);
            tokio::select! {
                _ = applied => {}
                _ = tokio::time::sleep(PUMP_INTERVAL_MAX) => {}
                changed = stopping.changed() => {
                    if changed.is_err() || *stopping.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// One round: poll every watch whose stream has room (a slot is reserved for it as the
    /// store asks, so watches sharing a stream never overfill it), then send the lines.
    fn pump(&self, service: &Service) {
        let streams = lock(&self.streams);
        if streams.is_empty() {
            return;
        }
        let reserved: RefCell<BTreeMap<WatchId, OwnedPermit<(WatchId, Line)>>> = RefCell::default();
        let has_room = |id: WatchId| {
            if reserved.borrow().contains_key(&id) {
                return true;
            }
            match streams.get(&id).map(|tx| tx.clone().try_reserve_owned()) {
                Some(Ok(permit)) => {
                    reserved.borrow_mut().insert(id, permit);
                    true
                }
                _ => false,
            }
        };
        let deliveries =
            service.read(|state| state.kv.watch_poll_ready(has_room, WATCH_BATCH_EVENTS));
        let mut reserved = reserved.into_inner();
        for delivery in deliveries {
            let line = match delivery.result {
                Ok(response) => Line::Events(Arc::new(Batch {
                    response,
                    json: OnceLock::new(),
                })),
                Err(error) => Line::End(error),
            };
            for id in delivery.watch_ids {
                if let Some(permit) = reserved.remove(&id) {
                    permit.send((id, line.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_held_to_its_watch_limit_and_freed_as_watches_end() {
        let pump = Arc::new(WatchPump::default());
        let client: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let first = pump.admit(client, 2).unwrap();
        let _second = pump.admit(client, 2).unwrap();
        assert!(pump.admit(client, 2).is_err(), "a third is refused");
        assert!(
            pump.admit(other, 2).is_ok(),
            "other clients are not affected"
        );
        drop(first);
        assert!(
            pump.admit(client, 2).is_ok(),
            "an ended watch frees its slot"
        );
    }
}
