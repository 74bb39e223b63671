//! etcd's Cluster service over the member registry: MemberList, MemberAdd (an unstarted member:
//! a learner, promoted once caught up, or held a learner with `is_learner` until MemberPromote),
//! MemberRemove, MemberUpdate (a member's peer URL) and MemberPromote. Changes reaching a
//! follower are forwarded to the leader.
//!
//! The added node is started with `raftkv serve --join <client URL>` and the peer URL given to
//! MemberAdd: it takes over the added member's id and publishes its name and client URL.

use raftkv_etcdpb::etcdserverpb::cluster_server::Cluster;
use raftkv_etcdpb::etcdserverpb::{self as pb};
use raftkv_raft::NodeId;
use tonic::{Request, Response, Status};

use super::forward::Forwarder;
use super::{Etcd, status};
use crate::auth::Need;
use crate::error::RequestError;
use crate::members::{Member, node_id};

/// etcd's "member not found".
const MEMBER_NOT_FOUND: &str = "etcdserver: member not found";
/// etcd's "peer URL in use".
const PEER_URL_EXISTS: &str = "etcdserver: Peer URLs already exists";
/// etcd's "bad URLs".
const BAD_URLS: &str = "etcdserver: given member URLs are invalid";

impl Etcd {
    /// Every member in etcd's form, with this node's view of who is a learner.
    fn members(&self) -> Vec<pb::Member> {
        let learners = self.service.status().learners;
        self.service.read(|state| {
            state
                .registry
                .members()
                .map(|m| pb::Member {
                    id: m.id,
                    name: m.name.clone(),
                    peer_ur_ls: vec![m.peer_url.clone()],
                    client_ur_ls: if m.client_url.is_empty() {
                        Vec::new()
                    } else {
                        vec![m.client_url.clone()]
                    },
                    is_learner: learners.contains(&m.id),
                })
                .collect()
        })
    }

    /// The registry's record of member `id`, or etcd's "member not found".
    fn member(&self, id: NodeId) -> Result<Member, Status> {
        self.service
            .read(|state| state.registry.get(id).cloned())
            .ok_or_else(|| Status::not_found(MEMBER_NOT_FOUND))
    }

    /// The one peer URL of a request (raftkv members have one), checked, and not in use by a
    /// member other than `except`.
    fn peer_url(&self, urls: &[String], except: Option<NodeId>) -> Result<String, Status> {
        let [url] = urls else {
            return Err(Status::invalid_argument(format!(
                "{BAD_URLS}: a raftkv member has exactly one peer URL, not {}",
                urls.len()
            )));
        };
        if Member::unstarted(1, url.clone()).invalid().is_some() {
            return Err(Status::invalid_argument(BAD_URLS));
        }
        let taken = self.service.read(|state| {
            state
                .registry
                .by_peer_url(url)
                .is_some_and(|m| Some(m.id) != except)
        });
        if taken {
            return Err(Status::failed_precondition(PEER_URL_EXISTS));
        }
        Ok(url.clone())
    }

    /// An id for a member added at `peer_url`: derived from the URL and the commit index, so
    /// adding a URL again after a removal gives a new id; never one in use or removed.
    fn new_member_id(&self, peer_url: &str) -> NodeId {
        let commit = self.service.status().commit_index;
        (0u64..)
            .map(|salt| node_id(&format!("{peer_url}#{commit}#{salt}")))
            .find(|&id| {
                self.service.read(|state| {
                    state.registry.get(id).is_none() && !state.registry.is_removed(id)
                })
            })
            .unwrap_or(u64::MAX >> 2)
    }
}

/// A cluster change's result: done, or to be forwarded to the leader.
fn forward_if_not_leader<T>(result: Result<T, RequestError>) -> Result<Option<T>, Status> {
    match result {
        Ok(done) => Ok(Some(done)),
        Err(RequestError::NotLeader { .. }) => Ok(None),
        Err(e) => Err(status::request(e)),
    }
}

#[tonic::async_trait]
impl Cluster for Etcd {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        self.authorize(&request, Need::Root)?;
        let add = request.into_inner();
        let peer_url = self.peer_url(&add.peer_ur_ls, None)?;
        let id = self.new_member_id(&peer_url);
        let added = self
            .service
            .add_member(id, peer_url.clone(), add.is_learner)
            .await;
        if forward_if_not_leader(added)?.is_none() {
            let leader = self.service.status().leader;
            return self
                .forward
                .cluster(leader, forwarded)?
                .member_add(self.forward.marked(add))
                .await;
        }
        Ok(Response::new(pb::MemberAddResponse {
            header: self.header_now(),
            member: Some(pb::Member {
                id,
                name: String::new(),
                peer_ur_ls: vec![peer_url],
                client_ur_ls: Vec::new(),
                is_learner: true,
            }),
            members: self.members(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        self.authorize(&request, Need::Root)?;
        let remove = request.into_inner();
        self.member(remove.id)?;
        let removed = self.service.remove_member(remove.id).await;
        if forward_if_not_leader(removed)?.is_none() {
            let leader = self.service.status().leader;
            return self
                .forward
                .cluster(leader, forwarded)?
                .member_remove(self.forward.marked(remove))
                .await;
        }
        Ok(Response::new(pb::MemberRemoveResponse {
            header: self.header_now(),
            members: self.members(),
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        self.authorize(&request, Need::Root)?;
        let update = request.into_inner();
        let member = self.member(update.id)?;
        let peer_url = self.peer_url(&update.peer_ur_ls, Some(update.id))?;
        let published = self.service.publish(Member { peer_url, ..member }).await;
        if forward_if_not_leader(published)?.is_none() {
            let leader = self.service.status().leader;
            return self
                .forward
                .cluster(leader, forwarded)?
                .member_update(self.forward.marked(update))
                .await;
        }
        Ok(Response::new(pb::MemberUpdateResponse {
            header: self.header_now(),
            members: self.members(),
        }))
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        self.authorize(&request, Need::User)?;
        if request.into_inner().linearizable {
            self.read_barrier(false).await?;
        }
        Ok(Response::new(pb::MemberListResponse {
            header: self.header_now(),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let forwarded = Forwarder::was_forwarded(&request);
        self.authorize(&request, Need::Root)?;
        let promote = request.into_inner();
        self.member(promote.id)?;
        let promoted = self.service.promote_member(promote.id).await;
        if forward_if_not_leader(promoted)?.is_none() {
            let leader = self.service.status().leader;
            return self
                .forward
                .cluster(leader, forwarded)?
                .member_promote(self.forward.marked(promote))
                .await;
        }
        Ok(Response::new(pb::MemberPromoteResponse {
            header: self.header_now(),
            members: self.members(),
        }))
    }
}
