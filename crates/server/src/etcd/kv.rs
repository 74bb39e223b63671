//! etcd's KV service: Range (linearizable after a ReadIndex round, or `serializable` from this
//! member's state; the store sorts and filters), Put, DeleteRange, Txn and Compact through the
//! log.

use raftkv_etcdpb::etcdserverpb::kv_server::Kv;
use raftkv_etcdpb::etcdserverpb::{self as pb};
use raftkv_kv::{self as kv, Op, Reply, Revision};
use raftkv_raft::NodeId;
use raftkv_replica::Applied;
use raftkv_replica::auth::Access;
use tonic::{Request, Response, Status};

use super::auth::auth_status;
use super::forward::Forwarder;
use super::{Etcd, convert, status};
use crate::auth::{self, Caller, Need};
use crate::error::RequestError;
use crate::service::Consistency;

/// What proposing a write came to.
pub enum Proposed {
    /// Applied: the store's revision after it and the reply.
    Done(Revision, Reply),
    /// This node is not the leader: forward to it.
    Forward(Option<NodeId>),
}

impl Etcd {
    /// Proposes `request` for `caller` (checked here first, against its limits and the caller's
    /// permissions, so a refusal keeps etcd's code and message) and waits for it to be applied.
    pub async fn propose(&self, caller: &Caller, request: kv::Request) -> Result<Proposed, Status> {
        request
            .validate(&raftkv_replica::state::limits())
            .map_err(status::kv)?;
        self.service
            .read(|state| auth::authorize_request(state, caller, &request))
            .map_err(auth_status)?;
        match self.service.write(request, None).await {
            Ok(Applied::Kv(response)) => match response.result {
                Ok(reply) => Ok(Proposed::Done(response.revision, reply)),
                Err(e) => Err(status::kv(e)),
            },
            Ok(_) => Err(Status::internal(
                "a key-value request applied as something else",
            )),
            Err(RequestError::NotLeader { leader }) => Ok(Proposed::Forward(leader)),
            Err(e) => Err(status::request(e)),
        }
    }

    /// Waits until this member may serve a read at `consistency`.
    pub async fn read_barrier(&self, serializable: bool) -> Result<(), Status> {
        let consistency = if serializable {
            Consistency::Stale
        } else {
            Consistency::Linearizable
        };
        self.service
            .read_barrier(consistency)
            .await
            .map_err(status::request)
    }
}

fn unexpected() -> Status {
    Status::internal("the store answered with another kind of reply")
}

#[tonic::async_trait]
impl Kv for Etcd {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let (key, range_end) = (&request.get_ref().key, &request.get_ref().range_end);
        self.authorize(&request, Need::Keys(Access::Read, key, range_end))?;
        let r = request.into_inner();
        if r.key.is_empty() {
            return Err(status::kv(kv::KvError::EmptyKey));
        }
        self.read_barrier(r.serializable).await?;
        let range = convert::range(&r)?;
        let (revision, answer) = self
            .service
            .read(|state| (state.kv.revision(), state.kv.range(&range)));
        let mut response = convert::range_response(answer.map_err(status::kv)?);
        response.header = self.header(revision);
        Ok(Response::new(response))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        let caller = self.caller(&request)?;
        let put = request.into_inner();
        match self
            .propose(
                &caller,
                kv::Request::new(Op::Put(convert::put(put.clone())?)),
            )
            .await?
        {
            Proposed::Done(revision, Reply::Put(p)) => Ok(Response::new(pb::PutResponse {
                header: self.header(revision),
                ..convert::put_response(p)
            })),
            Proposed::Done(..) => Err(unexpected()),
            Proposed::Forward(leader) => {
                self.forward
                    .kv(leader, forwarded)?
                    .put(self.forward.marked(put))
                    .await
            }
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        let caller = self.caller(&request)?;
        let delete = request.into_inner();
        let op = Op::DeleteRange(convert::delete(delete.clone()));
        match self.propose(&caller, kv::Request::new(op)).await? {
            Proposed::Done(revision, Reply::DeleteRange(d)) => {
                Ok(Response::new(pb::DeleteRangeResponse {
                    header: self.header(revision),
                    ..convert::delete_response(d)
                }))
            }
            Proposed::Done(..) => Err(unexpected()),
            Proposed::Forward(leader) => {
                self.forward
                    .kv(leader, forwarded)?
                    .delete_range(self.forward.marked(delete))
                    .await
            }
        }
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        let caller = self.caller(&request)?;
        let txn = request.into_inner();
        match self
            .propose(&caller, kv::Request::txn(convert::txn(txn.clone())?))
            .await?
        {
            Proposed::Done(revision, Reply::Txn(t)) => Ok(Response::new(convert::txn_response(
                t,
                self.header(revision),
            ))),
            Proposed::Done(..) => Err(unexpected()),
            Proposed::Forward(leader) => {
                self.forward
                    .kv(leader, forwarded)?
                    .txn(self.forward.marked(txn))
                    .await
            }
        }
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        let caller = self.caller(&request)?;
        let compact = request.into_inner();
        match self
            .propose(&caller, kv::Request::compact(compact.revision))
            .await?
        {
            Proposed::Done(revision, Reply::Compact(_)) => {
                Ok(Response::new(pb::CompactionResponse {
                    header: self.header(revision),
                }))
            }
            Proposed::Done(..) => Err(unexpected()),
            Proposed::Forward(leader) => {
                self.forward
                    .kv(leader, forwarded)?
                    .compact(self.forward.marked(compact))
                    .await
            }
        }
    }
}
