//! etcd's Lease service: TTLs in seconds (the store keeps milliseconds). Grant and revoke go
//! through the log; keep-alives and TimeToLive are the leader's (it holds the deadlines); an
//! unknown lease's keep-alive answers TTL 0 and its TimeToLive TTL -1, as etcd's do.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use raftkv_etcdpb::etcdserverpb::lease_server::Lease;
use raftkv_etcdpb::etcdserverpb::{self as pb};
use raftkv_kv::{KvError, Reply};
use tonic::{Request, Response, Status, Streaming};

use super::auth::auth_status;
use super::forward::Forwarder;
use super::kv::Proposed;
use super::{Etcd, status};
use crate::auth::{self, Need};
use crate::error::RequestError;

/// Keep-alive answers queued for one stream.
const KEEP_ALIVE_QUEUED_MAX: usize = 16;

/// Seconds, rounded up, of `ms` milliseconds.
fn seconds(ms: u64) -> i64 {
    i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

/// Whole seconds left of `ms` milliseconds, rounded down as etcd's TimeToLive reports them (a
/// lease granted 600 s reads 599 a moment later).
fn whole_seconds_left(ms: u64) -> i64 {
    i64::try_from(ms / 1000).unwrap_or(i64::MAX)
}

fn unexpected() -> Status {
    Status::internal("the store answered with another kind of reply")
}

impl Etcd {
    /// One keep-alive: the lease's TTL in seconds (0 if it does not exist).
    pub(super) async fn keep_alive_once(
        &self,
        id: i64,
        forwarded: bool,
    ) -> Result<pb::LeaseKeepAliveResponse, Status> {
        match self.service.keep_alive(id).await {
            Ok(renewed) => {
                let ttl = match renewed {
                    Ok(ttl_ms) => seconds(ttl_ms),
                    Err(KvError::LeaseNotFound { .. }) => 0,
                    Err(e) => return Err(status::kv(e)),
                };
                Ok(pb::LeaseKeepAliveResponse {
                    header: self.header_now(),
                    id,
                    ttl,
                })
            }
            Err(RequestError::NotLeader { leader }) => {
                let mut client = self.forward.lease(leader, forwarded)?;
                let mut answers = client
                    .lease_keep_alive(
                        self.forward
                            .marked(futures::stream::iter([pb::LeaseKeepAliveRequest { id }])),
                    )
                    .await?
                    .into_inner();
                answers
                    .message()
                    .await?
                    .ok_or_else(|| Status::unavailable("the leader closed the keep-alive stream"))
            }
            Err(e) => Err(status::request(e)),
        }
    }
}

#[tonic::async_trait]
impl Lease for Etcd {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        let caller = self.caller(&request)?;
        let grant = request.into_inner();
        let ttl_ms = u64::try_from(grant.ttl)
            .ok()
            .and_then(|ttl| ttl.checked_mul(1000))
            .filter(|&ms| ms > 0)
            .ok_or_else(|| Status::out_of_range("etcdserver: too large lease TTL"))?;
        match self
            .propose(&caller, raftkv_kv::Request::lease_grant(grant.id, ttl_ms))
            .await?
        {
            Proposed::Done(revision, Reply::LeaseGrant(granted)) => {
                Ok(Response::new(pb::LeaseGrantResponse {
                    header: self.header(revision),
                    id: granted.id,
                    ttl: seconds(granted.ttl_ms),
                    error: String::new(),
                }))
            }
            Proposed::Done(..) => Err(unexpected()),
            Proposed::Forward(leader) => {
                self.forward
                    .lease(leader, forwarded)?
                    .lease_grant(self.forward.marked(grant))
                    .await
            }
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        let caller = self.caller(&request)?;
        let revoke = request.into_inner();
        match self
            .propose(&caller, raftkv_kv::Request::lease_revoke(revoke.id))
            .await?
        {
            Proposed::Done(revision, Reply::LeaseRevoke(_)) => {
                Ok(Response::new(pb::LeaseRevokeResponse {
                    header: self.header(revision),
                }))
            }
            Proposed::Done(..) => Err(unexpected()),
            Proposed::Forward(leader) => {
                self.forward
                    .lease(leader, forwarded)?
                    .lease_revoke(self.forward.marked(revoke))
                    .await
            }
        }
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send + 'static>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        self.authorize(&request, Need::User)?;
        let mut requests = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(KEEP_ALIVE_QUEUED_MAX);
        let etcd = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(keep_alive)) = requests.next().await {
                let answer = etcd.keep_alive_once(keep_alive.id, forwarded).await;
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream_from(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        let caller = self.authorize(&request, Need::User)?;
        let query = request.into_inner();
        if query.keys {
            // Listing the lease's keys needs read permission on each (etcd's rule), checked here
            // before any forwarding.
            self.service
                .read(|state| auth::authorize_lease_keys(state, &caller, query.id))
                .map_err(auth_status)?;
        }
        let status = self.service.status();
        if status.leader != Some(status.id) {
            return self
                .forward
                .lease(status.leader, forwarded)?
                .lease_time_to_live(self.forward.marked(query))
                .await;
        }
        let now_ms = self.service.shared().epoch.elapsed().as_millis() as u64;
        let (revision, found) = self.service.read(|state| {
            (
                state.kv.revision(),
                state.kv.lease_time_to_live(query.id, now_ms),
            )
        });
        let response = match found {
            Ok(lease) => pb::LeaseTimeToLiveResponse {
                header: self.header(revision),
                id: query.id,
                ttl: lease.remaining_ms.map_or(-1, whole_seconds_left),
                granted_ttl: seconds(lease.ttl_ms),
                keys: if query.keys { lease.keys } else { Vec::new() },
            },
            Err(KvError::LeaseNotFound { .. }) => pb::LeaseTimeToLiveResponse {
                header: self.header(revision),
                id: query.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
            Err(e) => return Err(status::kv(e)),
        };
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.authorize(&request, Need::User)?;
        self.read_barrier(false).await?;
        let (revision, ids) = self
            .service
            .read(|state| (state.kv.revision(), state.kv.lease_ids()));
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.header(revision),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}

/// The answers of a keep-alive stream as a `Stream`.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<pb::LeaseKeepAliveResponse, Status>>,
) -> impl Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
