//! etcd's Maintenance service: Status, Hash and HashKV (from the store's state hash), Alarm (no
//! alarms yet), Defragment (nothing to do: the store is in memory, so it succeeds at once);
//! MoveLeader (asked of the leader, to a voter; answered once the transferee leads); Snapshot
//! (the member's applied state as a backup file, see `backup.rs`, in chunks); Downgrade answers
//! `Unimplemented`.

use std::pin::Pin;

use futures::Stream;
use raftkv_etcdpb::etcdserverpb::maintenance_server::Maintenance;
use raftkv_etcdpb::etcdserverpb::{self as pb};
use tonic::{Request, Response, Status};

use raftkv_replica::alarms::{Alarm, CORRUPT, NOSPACE};

use super::forward::Forwarder;
use super::{ETCD_API_VERSION, Etcd, status};
use crate::auth::Need;
use crate::backup;
use crate::error::RequestError;

/// Bytes of a backup file per `SnapshotResponse` (etcd sends 32 KiB).
const SNAPSHOT_CHUNK_BYTES: usize = 64 * 1024;

/// etcd's 32-bit hash of the store's 64-bit state hash.
fn hash32(hash: u64) -> u32 {
    (hash ^ (hash >> 32)) as u32
}

#[tonic::async_trait]
impl Maintenance for Etcd {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        let forwarded = Forwarder::was_forwarded(&request);
        let need = if request.get_ref().action == AlarmAction::Get as i32 {
            Need::User
        } else {
            Need::Root
        };
        self.authorize(&request, need)?;
        let r = request.into_inner();
        let alarm = Alarm {
            member: r.member_id,
            kind: r.alarm,
        };
        // Answers with the alarms the action concerned (etcd's shape): all for GET, the one
        // raised or cleared otherwise.
        let concerned = match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => self.service.read(|state| state.alarms.list()),
            Ok(action) => {
                let activate = action == AlarmAction::Activate;
                if alarm.kind != NOSPACE && alarm.kind != CORRUPT {
                    return Err(Status::invalid_argument("etcdserver: unknown alarm type"));
                }
                match self.service.alarm(activate, alarm).await {
                    Ok(_) => vec![alarm],
                    Err(RequestError::NotLeader { leader }) => {
                        return self
                            .forward
                            .maintenance(leader, forwarded)?
                            .alarm(self.forward.marked(r))
                            .await;
                    }
                    Err(e) => return Err(status::request(e)),
                }
            }
            Err(_) => return Err(Status::invalid_argument("etcdserver: unknown alarm action")),
        };
        Ok(Response::new(pb::AlarmResponse {
            header: self.header_now(),
            alarms: concerned
                .iter()
                .map(|a| pb::AlarmMember {
                    member_id: a.member,
                    alarm: a.kind,
                })
                .collect(),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.service.status();
        Ok(Response::new(pb::StatusResponse {
            header: self.header_now(),
            version: ETCD_API_VERSION.to_string(),
            db_size: 0,
            leader: status.leader.unwrap_or(0),
            raft_index: status.commit_index,
            raft_term: status.term,
            raft_applied_index: status.applied_index,
            errors: status.wal_error.into_iter().collect(),
            db_size_in_use: 0,
            is_learner: status.learners.contains(&status.id),
        }))
    }

    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.authorize(&request, Need::Root)?;
        Ok(Response::new(pb::DefragmentResponse {
            header: self.header_now(),
        }))
    }

    async fn hash(
        &self,
        request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        self.authorize(&request, Need::Root)?;
        let (revision, hash) = self
            .service
            .read(|state| (state.kv.revision(), state.kv.state_hash()));
        Ok(Response::new(pb::HashResponse {
            header: self.header(revision),
            hash: hash32(hash),
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        self.authorize(&request, Need::Root)?;
        let (revision, compacted, hash) = self.service.read(|state| {
            (
                state.kv.revision(),
                state.kv.compacted_revision(),
                state.kv.state_hash(),
            )
        });
        Ok(Response::new(pb::HashKvResponse {
            header: self.header(revision),
            hash: hash32(hash),
            compact_revision: compacted,
        }))
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.authorize(&request, Need::Root)?;
        let (revision, view) = self
            .service
            .read(|state| (state.kv.revision(), state.view()));
        let file =
            tokio::task::spawn_blocking(move || backup::encode(view.applied(), &view.encode()))
                .await
                .map_err(|e| Status::internal(format!("encoding the snapshot failed: {e}")))?;
        let header = self.header(revision);
        let chunks: Vec<_> = (0..file.len())
            .step_by(SNAPSHOT_CHUNK_BYTES)
            .map(|start| {
                let end = (start + SNAPSHOT_CHUNK_BYTES).min(file.len());
                Ok(pb::SnapshotResponse {
                    header,
                    remaining_bytes: (file.len() - end) as u64,
                    blob: file.slice(start..end),
                    version: ETCD_API_VERSION.to_string(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        self.authorize(&request, Need::Root)?;
        let target = request.into_inner().target_id;
        let status = self.service.status();
        if status.leader != Some(status.id) {
            return Err(Status::failed_precondition("etcdserver: not leader"));
        }
        if !status.voters.contains(&target) {
            return Err(Status::failed_precondition(
                "etcdserver: bad leader transferee",
            ));
        }
        self.service
            .transfer_leader(target)
            .await
            .map_err(super::status::request)?;
        Ok(Response::new(pb::MoveLeaderResponse {
            header: self.header_now(),
        }))
    }

    async fn downgrade(
        &self,
        _request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(Status::unimplemented(
            "raftkv has no versions to downgrade to",
        ))
    }
}
