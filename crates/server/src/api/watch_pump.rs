//! Watch delivery, shared by every watch stream of the node: one task wakes after each applied
//! batch, takes the state lock once to poll every watch that has something to deliver (and
//! whose stream has room), renders each distinct response once however many watchers share it,
//! and hands the lines to the streams through bounded channels. Writers pay one short lock per
//! batch for all watchers instead of one per watcher.
//!
//! Invariants: only the pump sends on a stream's channel, and only after seeing room, so no line
//! is ever dropped; a watch whose stream is full is not polled (its events wait in the store,
//! whose own bounds cancel a watcher that stays too slow).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftkv_kv::{WatchId, WatchResponse};
use serde_json::json;
use tokio::sync::mpsc;

use super::render;
use crate::service::Service;

/// Lines queued for one stream before the pump stops polling its watch.
const STREAM_LINES_QUEUED_MAX: usize = 16;
/// Events taken from the store per poll of one watch.
const WATCH_BATCH_EVENTS: usize = 256;
/// The pump polls at least this often, even without an applied batch (watches catching up on
/// history after their stream drained).
const PUMP_INTERVAL_MAX: Duration = Duration::from_millis(200);

/// A line for a stream.
pub enum Line {
    /// A batch of events (shared by every stream it was rendered for).
    Events(Arc<str>),
    /// The watch ended (too slow, compacted): the last line.
    End(String),
}

/// The streams the pump feeds, by watch.
#[derive(Default)]
pub struct WatchPump {
    streams: Mutex<BTreeMap<WatchId, mpsc::Sender<Line>>>,
}

impl WatchPump {
    /// Starts feeding watch `id`; its lines arrive on the returned channel.
    pub fn register(&self, id: WatchId) -> mpsc::Receiver<Line> {
        let (tx, rx) = mpsc::channel(STREAM_LINES_QUEUED_MAX);
        self.streams().insert(id, tx);
        rx
    }

    /// Stops feeding watch `id` (its stream ended).
    pub fn unregister(&self, id: WatchId) {
        self.streams().remove(&id);
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, BTreeMap<WatchId, mpsc::Sender<Line>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
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

    /// One round: poll every ready watch whose stream has room, then send the lines.
    fn pump(&self, service: &Service) {
        let room: BTreeMap<WatchId, mpsc::Sender<Line>> = self
            .streams()
            .iter()
            .filter(|(_, tx)| tx.capacity() > 0)
            .map(|(&id, tx)| (id, tx.clone()))
            .collect();
        if room.is_empty() {
            return;
        }
        let polled: Vec<(WatchId, Result<WatchResponse, String>)> = service.read(|state| {
            let mut polled = Vec::new();
            for id in state.kv.watches_ready() {
                if !room.contains_key(&id) {
                    continue;
                }
                match state.kv.watch_poll(id, WATCH_BATCH_EVENTS) {
                    Ok(Some(response)) => polled.push((id, Ok(response))),
                    Ok(None) => {}
                    Err(e) => polled.push((id, Err(e.to_string()))),
                }
            }
            polled
        });
        let mut rendered: Vec<(WatchResponse, Arc<str>)> = Vec::new();
        for (id, result) in polled {
            let Some(tx) = room.get(&id) else {
                continue;
            };
            let line = match result {
                Ok(response) => Line::Events(render_once(&mut rendered, response)),
                Err(error) => Line::End(format!("{}\n", json!({ "error": error }))),
            };
            // Only the pump sends, after seeing room: this cannot fail for want of space.
            let _ = tx.try_send(line);
        }
    }
}

/// The JSON line of `response`, rendered once per distinct content in this round (watchers of
/// the same range at the same point share it).
fn render_once(rendered: &mut Vec<(WatchResponse, Arc<str>)>, response: WatchResponse) -> Arc<str> {
    let same = |seen: &WatchResponse| {
        seen.from_revision == response.from_revision
            && seen.to_revision == response.to_revision
            && seen.events == response.events
    };
    if let Some((_, line)) = rendered.iter().find(|(seen, _)| same(seen)) {
        return line.clone();
    }
    let line: Arc<str> = format!("{}\n", render::watch_json(&response)).into();
    rendered.push((response, line.clone()));
    line
}

#[cfg(test)]
mod tests {
    use raftkv_kv::{Event, EventKind, KeyValue};

    use super::*;

    fn response(watch_id: WatchId, key: &str) -> WatchResponse {
        WatchResponse {
            watch_id,
            from_revision: 2,
            to_revision: 2,
            events: vec![Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.as_bytes().to_vec().into(),
                    mod_revision: 2,
                    ..KeyValue::default()
                },
                prev_kv: None,
            }],
        }
    }

    #[test]
    fn a_response_shared_by_watchers_is_rendered_once() {
        let mut rendered = Vec::new();
        let first = render_once(&mut rendered, response(1, "a"));
        let same = render_once(&mut rendered, response(2, "a"));
        let other = render_once(&mut rendered, response(3, "b"));
        assert!(
            Arc::ptr_eq(&first, &same),
            "one rendering for both watchers"
        );
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(rendered.len(), 2);
    }
}
