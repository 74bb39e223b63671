//! etcd's Cluster service over the member registry: MemberList and MemberRemove now;
//! MemberAdd, MemberUpdate and MemberPromote answer `Unimplemented` (join with `raftkv serve
//! --join`; learners are promoted by the leader once caught up).

use raftkv_etcdpb::etcdserverpb::cluster_server::Cluster;
use raftkv_etcdpb::etcdserverpb::{self as pb};
use tonic::{Request, Response, Status};

use super::{Etcd, status};

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
}

#[tonic::async_trait]
impl Cluster for Etcd {
    async fn member_add(
        &self,
        _request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(Status::unimplemented(
            "raftkv adds members by starting them with `raftkv serve --join <client URL>`",
        ))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        if !self.members().iter().any(|m| m.id == id) {
            return Err(Status::not_found("etcdserver: member not found"));
        }
        self.service
            .remove_member(id)
            .await
            .map_err(status::request)?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: self.header_now(),
            members: self.members(),
        }))
    }

    async fn member_update(
        &self,
        _request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(Status::unimplemented(
            "raftkv members publish their own URLs when they start",
        ))
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
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
        _request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(Status::unimplemented(
            "raftkv's leader promotes a learner by itself once it has caught up",
        ))
    }
}
