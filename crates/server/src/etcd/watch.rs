//! etcd's Watch service: one bidirectional stream carries many watches, each a store watch fed
//! by the node's watch pump (so a gRPC watch costs writers what an HTTP one does: nothing).
//! Creates are answered in the order sent (`created`, with the stream's watch id, assigned from 0
//! as etcd does, or the one asked for); a start below the compacted revision is created and then
//! cancelled with `compact_revision`; cancels are answered `canceled`; a progress request is
//! answered with watch id -1 and the store's revision once every watch of the stream is synced;
//! a `progress_notify` watch gets an empty response at the store's revision every
//! `watch_progress_notify_interval` while it is synced; `NOPUT`/`NODELETE` filters and `prev_kv`
//! apply per watch; a revision's events are never split across responses, except by `fragment`
//! when a response would exceed `FRAGMENT_BYTES`.
//!
//! Invariants: each stream owns its store watches and cancels them all when it ends; the
//! stream's outgoing queue is bounded (a slow reader stops the pump polling its watches, which
//! then read on from history); a progress revision is sent only for watches that have been sent
//! every event through it (synced: caught up in the store, and every poll of theirs rendered
//! here), so no event ever follows a progress notice it predates.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;

use axum::extract::ConnectInfo;
use futures::{Stream, StreamExt};
use prost::Message;
use raftkv_etcdpb::etcdserverpb::watch_create_request::FilterType;
use raftkv_etcdpb::etcdserverpb::watch_request::RequestUnion;
use raftkv_etcdpb::etcdserverpb::watch_server::Watch;
use raftkv_etcdpb::etcdserverpb::{self as pb};
use raftkv_etcdpb::mvccpb;
use raftkv_kv::{EventKind, KvError, Revision, WatchId, WatchRequest};
use raftkv_replica::auth::Access;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::{Etcd, convert};
use crate::api::watch_pump::{ClientSlot, Line, LineSender, WatchPump};
use crate::auth::{self, Caller, Need};

/// Responses queued for one stream's client.
const RESPONSES_QUEUED_MAX: usize = 64;
/// A fragmenting watch splits responses larger than this.
const FRAGMENT_BYTES: usize = 1024 * 1024;
/// etcd's watch id for answers about no particular watch (progress).
const NO_WATCH: i64 = -1;

/// One watch of a stream.
struct Watched {
    etcd_id: i64,
    no_put: bool,
    no_delete: bool,
    fragment: bool,
    /// Gets periodic progress notices.
    progress_notify: bool,
    /// The last revision whose events (if any) were rendered for the client.
    rendered_through: Revision,
    _slot: ClientSlot,
}

/// The watches of one stream.
struct Session {
    etcd: Etcd,
    client: IpAddr,
    /// Who opened the stream: each watch is checked against what it may read.
    caller: Caller,
    lines: LineSender,
    by_store: BTreeMap<WatchId, Watched>,
    by_etcd: BTreeMap<i64, WatchId>,
    next_etcd_id: i64,
    /// A progress request waits for every watch of the stream to be synced.
    progress_wanted: bool,
}

impl Session {
    fn pump(&self) -> &WatchPump {
        &self.etcd.watches
    }

    /// The answers to one client request.
    fn handle(&mut self, request: pb::WatchRequest) -> Vec<pb::WatchResponse> {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create),
            Some(RequestUnion::CancelRequest(cancel)) => self.cancel(cancel.watch_id),
            Some(RequestUnion::ProgressRequest(_)) => {
                self.progress_wanted = true;
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// The store's revision if every watch in `watches` has been sent every event through it.
    fn synced<'a>(
        &self,
        mut watches: impl Iterator<Item = (&'a WatchId, &'a Watched)>,
    ) -> Option<Revision> {
        self.etcd.service.read(|state| {
            watches
                .all(|(id, watched)| {
                    state.kv.watch_progress(*id).is_some_and(|p| {
                        p.caught_up && p.delivered_through <= watched.rendered_through
                    })
                })
                .then(|| state.kv.revision())
        })
    }

    /// The answer to a waiting progress request, once every watch is synced.
    fn progress(&mut self) -> Option<pb::WatchResponse> {
        if !self.progress_wanted {
            return None;
        }
        let revision = self.synced(self.by_store.iter())?;
        self.progress_wanted = false;
        Some(pb::WatchResponse {
            header: self.etcd.header(revision),
            watch_id: NO_WATCH,
            ..Default::default()
        })
    }

    /// Periodic progress notices: one per synced `progress_notify` watch.
    fn notify_progress(&self) -> Vec<pb::WatchResponse> {
        self.by_store
            .iter()
            .filter(|(_, watched)| watched.progress_notify)
            .filter_map(|(id, watched)| {
                let revision = self.synced(std::iter::once((id, watched)))?;
                Some(pb::WatchResponse {
                    header: self.etcd.header(revision),
                    watch_id: watched.etcd_id,
                    ..Default::default()
                })
            })
            .collect()
    }

    fn create(&mut self, create: pb::WatchCreateRequest) -> Vec<pb::WatchResponse> {
        let etcd_id = if create.watch_id != 0 {
            create.watch_id
        } else {
            while self.by_etcd.contains_key(&self.next_etcd_id) {
                self.next_etcd_id += 1;
            }
            self.next_etcd_id
        };
        let header = self.etcd.header_now();
        let refused = |reason: String| {
            vec![pb::WatchResponse {
                header,
                watch_id: etcd_id,
                created: true,
                canceled: true,
                cancel_reason: reason,
                ..Default::default()
            }]
        };
        if self.by_etcd.contains_key(&etcd_id) {
            return refused("mvcc: duplicate watch ID provided on the WatchStream".into());
        }
        let need = Need::Keys(Access::Read, &create.key, &create.range_end);
        let permitted = self
            .etcd
            .service
            .read(|state| auth::authorize(&state.auth, &self.caller, need));
        if let Err(e) = permitted {
            return refused(e.to_string());
        }
        let per_client_max = self.etcd.service.config().watches_per_client_max;
        let slot = match self.etcd.watches.admit(self.client, per_client_max) {
            Ok(slot) => slot,
            Err(e) => return refused(e.message().to_string()),
        };
        let request = WatchRequest {
            key: create.key,
            range_end: create.range_end,
            start_revision: create.start_revision,
            prev_kv: create.prev_kv,
        };
        let created = self.etcd.service.read(|state| {
            let id = state.kv.watch_create(&request)?;
            let progress = state.kv.watch_progress(id);
            Ok((id, progress.map_or(0, |p| p.delivered_through)))
        });
        let (id, rendered_through) = match created {
            Ok(created) => created,
            Err(KvError::Compacted {
                compacted_revision, ..
            }) => {
                self.next_etcd_id = self.next_etcd_id.max(etcd_id.saturating_add(1));
                return vec![
                    pb::WatchResponse {
                        header,
                        watch_id: etcd_id,
                        created: true,
                        ..Default::default()
                    },
                    pb::WatchResponse {
                        header,
                        watch_id: etcd_id,
                        canceled: true,
                        compact_revision: compacted_revision,
                        cancel_reason: "etcdserver: mvcc: required revision has been compacted"
                            .into(),
                        ..Default::default()
                    },
                ];
            }
            Err(e) => return refused(e.to_string()),
        };
        self.next_etcd_id = self.next_etcd_id.max(etcd_id.saturating_add(1));
        let filters = |f: FilterType| create.filters.contains(&(f as i32));
        self.by_store.insert(
            id,
            Watched {
                etcd_id,
                no_put: filters(FilterType::Noput),
                no_delete: filters(FilterType::Nodelete),
                fragment: create.fragment,
                progress_notify: create.progress_notify,
                rendered_through,
                _slot: slot,
            },
        );
        self.by_etcd.insert(etcd_id, id);
        self.pump().register(id, self.lines.clone());
        vec![pb::WatchResponse {
            header,
            watch_id: etcd_id,
            created: true,
            ..Default::default()
        }]
    }

    fn cancel(&mut self, etcd_id: i64) -> Vec<pb::WatchResponse> {
        let Some(id) = self.by_etcd.remove(&etcd_id) else {
            return Vec::new(); // etcd answers nothing for an unknown watch
        };
        self.end(id);
        vec![pb::WatchResponse {
            header: self.etcd.header_now(),
            watch_id: etcd_id,
            canceled: true,
            ..Default::default()
        }]
    }

    /// Stops store watch `id` (the stream's record of it is dropped by the caller or here).
    fn end(&mut self, id: WatchId) {
        self.by_store.remove(&id);
        self.pump().unregister(id);
        self.etcd.service.read(|state| {
            let _ = state.kv.watch_cancel(id);
        });
    }

    /// The responses carrying a pump line of store watch `id`.
    fn render(&mut self, id: WatchId, line: Line) -> Vec<pb::WatchResponse> {
        let Some(watched) = self.by_store.get_mut(&id) else {
            return Vec::new(); // cancelled meanwhile
        };
        let etcd_id = watched.etcd_id;
        match line {
            Line::Events(batch) => {
                watched.rendered_through = batch.response.to_revision;
                let events: Vec<mvccpb::Event> = batch
                    .response
                    .events
                    .iter()
                    .filter(|e| match e.kind {
                        EventKind::Put => !watched.no_put,
                        EventKind::Delete => !watched.no_delete,
                    })
                    .map(|e| mvccpb::Event {
                        r#type: match e.kind {
                            EventKind::Put => mvccpb::event::EventType::Put as i32,
                            EventKind::Delete => mvccpb::event::EventType::Delete as i32,
                        },
                        kv: Some(convert::key_value(e.kv.clone())),
                        prev_kv: e.prev_kv.clone().map(convert::key_value),
                    })
                    .collect();
                if events.is_empty() {
                    return Vec::new();
                }
                let response = pb::WatchResponse {
                    header: self.etcd.header(batch.response.to_revision),
                    watch_id: etcd_id,
                    events,
                    ..Default::default()
                };
                if watched.fragment {
                    fragments(response)
                } else {
                    vec![response]
                }
            }
            Line::End(error) => {
                let compact_revision = match &error {
                    KvError::Compacted {
                        compacted_revision, ..
                    } => *compacted_revision,
                    _ => 0,
                };
                self.by_etcd.remove(&etcd_id);
                self.end(id);
                vec![pb::WatchResponse {
                    header: self.etcd.header_now(),
                    watch_id: etcd_id,
                    canceled: true,
                    compact_revision,
                    cancel_reason: super::status::kv(error).message().to_string(),
                    ..Default::default()
                }]
            }
        }
    }

    /// Ends every watch of the stream.
    fn close(&mut self) {
        let ids: Vec<WatchId> = self.by_store.keys().copied().collect();
        for id in ids {
            self.end(id);
        }
    }
}

/// `response` split into responses of at most about `FRAGMENT_BYTES`, all but the last marked
/// `fragment` (etcd's fragmenting; a single event larger than that goes alone).
fn fragments(response: pb::WatchResponse) -> Vec<pb::WatchResponse> {
    if response.encoded_len() <= FRAGMENT_BYTES {
        return vec![response];
    }
    let mut parts: Vec<pb::WatchResponse> = Vec::new();
    let mut current = pb::WatchResponse {
        events: Vec::new(),
        ..response.clone()
    };
    let mut bytes = 0;
    for event in response.events {
        let size = event.encoded_len();
        if !current.events.is_empty() && bytes + size > FRAGMENT_BYTES {
            let next = pb::WatchResponse {
                events: Vec::new(),
                ..current.clone()
            };
            parts.push(std::mem::replace(&mut current, next));
            bytes = 0;
        }
        bytes += size;
        current.events.push(event);
    }
    parts.push(current);
    let last = parts.len() - 1;
    for part in &mut parts[..last] {
        part.fragment = true;
    }
    parts
}

/// The answers of a watch stream as a `Stream`.
fn receiver_stream(
    mut rx: mpsc::Receiver<Result<pb::WatchResponse, Status>>,
) -> impl Stream<Item = Result<pb::WatchResponse, Status>> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl Etcd {
    /// Serves one watch stream: the client's `requests`, answered on the returned channel (the
    /// gRPC service and the JSON gateway both use it). It ends when the requests end, the
    /// answers' receiver is dropped, or the node stops; then its watches are cancelled.
    pub(super) fn watch_session(
        &self,
        client: Option<IpAddr>,
        caller: Caller,
        mut requests: Pin<Box<dyn Stream<Item = pb::WatchRequest> + Send>>,
    ) -> mpsc::Receiver<Result<pb::WatchResponse, Status>> {
        let (out, responses) = mpsc::channel(RESPONSES_QUEUED_MAX);
        let (lines, mut lines_in) = WatchPump::channel();
        let mut session = Session {
            etcd: self.clone(),
            client: client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            caller,
            lines,
            by_store: BTreeMap::new(),
            by_etcd: BTreeMap::new(),
            next_etcd_id: 0,
            progress_wanted: false,
        };
        let mut stopping = self.service.shared().stopping.subscribe();
        let every = self.service.config().watch_progress_notify_interval;
        let mut notify = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tokio::spawn(async move {
            'stream: loop {
                let mut answers = tokio::select! {
                    request = requests.next() => match request {
                        Some(request) => session.handle(request),
                        None => break 'stream,
                    },
                    Some((id, line)) = lines_in.recv() => session.render(id, line),
                    _ = notify.tick() => session.notify_progress(),
                    () = out.closed() => break 'stream,
                    _ = stopping.changed() => {
                        let stopped = Status::unavailable("etcdserver: server stopped");
                        let _ = out.send(Err(stopped)).await;
                        break 'stream;
                    }
                };
                answers.extend(session.progress());
                for answer in answers {
                    if out.send(Ok(answer)).await.is_err() {
                        break 'stream;
                    }
                }
            }
            session.close();
        });
        responses
    }
}

#[tonic::async_trait]
impl Watch for Etcd {
    type WatchStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let caller = self.caller(&request)?;
        let requests = futures::stream::unfold(request.into_inner(), |mut stream| async move {
            match stream.message().await {
                Ok(Some(message)) => Some((message, stream)),
                _ => None,
            }
        });
        let responses = self.watch_session(client, caller, Box::pin(requests));
        Ok(Response::new(Box::pin(receiver_stream(responses))))
    }
}
