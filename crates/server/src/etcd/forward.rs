//! Forwarding to the leader: etcd's clients never follow a redirect and retry only reads on
//! `Unavailable`, so a write, lease or membership operation that reaches a follower is sent on to the
//! leader's client port as the same gRPC call, and its answer relayed.
//!
//! Invariant: a forwarded call carries `FORWARDED_METADATA` (and, while authentication is
//! enabled, this member's token: its caller was checked here) and is never forwarded again (a node
//! that is not the leader answers "leader changed", which clients retry).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftkv_etcdpb::etcdserverpb::auth_client::AuthClient;
use raftkv_etcdpb::etcdserverpb::cluster_client::ClusterClient;
use raftkv_etcdpb::etcdserverpb::kv_client::KvClient;
use raftkv_etcdpb::etcdserverpb::lease_client::LeaseClient;
use raftkv_etcdpb::etcdserverpb::maintenance_client::MaintenanceClient;
use raftkv_raft::NodeId;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use super::status::{LEADER_CHANGED, NO_LEADER};
use crate::auth;
use crate::service::Service;

/// Metadata marking a call forwarded by another member.
const FORWARDED_METADATA: &str = "x-raftkv-forwarded";
/// Time to connect to the leader.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Channels to leaders, by client URL (one per leader, reused).
#[derive(Clone)]
pub struct Forwarder {
    service: Service,
    channels: Arc<Mutex<BTreeMap<String, Channel>>>,
}

impl Forwarder {
    /// Forwards for `service`'s node.
    pub fn new(service: &Service) -> Self {
        Forwarder {
            service: service.clone(),
            channels: Arc::default(),
        }
    }

    /// Whether `request` was forwarded to this node by another member.
    pub fn was_forwarded<T>(request: &Request<T>) -> bool {
        request.metadata().contains_key(FORWARDED_METADATA)
    }

    /// The channel to `leader` (or the leader this node knows of) for a call that was
    /// `forwarded` here or not.
    fn channel(&self, leader: Option<NodeId>, forwarded: bool) -> Result<Channel, Status> {
        if forwarded {
            return Err(Status::unavailable(LEADER_CHANGED));
        }
        let url = self
            .service
            .leader_client_url(leader)
            .ok_or_else(|| Status::unavailable(NO_LEADER))?;
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(&url) {
            return Ok(channel.clone());
        }
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| Status::unavailable(format!("leader URL {url}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(self.service.config().request_timeout + CONNECT_TIMEOUT);
        if let Some(tls) = self.service.client_tls() {
            endpoint = endpoint
                .tls_config(tls.grpc_config())
                .map_err(|e| Status::unavailable(format!("TLS to the leader {url}: {e}")))?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(url, channel.clone());
        Ok(channel)
    }

    /// A KV client to the leader.
    pub fn kv(&self, leader: Option<NodeId>, forwarded: bool) -> Result<KvClient<Channel>, Status> {
        Ok(KvClient::new(self.channel(leader, forwarded)?))
    }

    /// A Cluster client to the leader.
    pub fn cluster(
        &self,
        leader: Option<NodeId>,
        forwarded: bool,
    ) -> Result<ClusterClient<Channel>, Status> {
        Ok(ClusterClient::new(self.channel(leader, forwarded)?))
    }

    /// A Maintenance client to the leader.
    pub fn maintenance(
        &self,
        leader: Option<NodeId>,
        forwarded: bool,
    ) -> Result<MaintenanceClient<Channel>, Status> {
        Ok(MaintenanceClient::new(self.channel(leader, forwarded)?))
    }

    /// An Auth client to the leader.
    pub fn auth(
        &self,
        leader: Option<NodeId>,
        forwarded: bool,
    ) -> Result<AuthClient<Channel>, Status> {
        Ok(AuthClient::new(self.channel(leader, forwarded)?))
    }

    /// A Lease client to the leader.
    pub fn lease(
        &self,
        leader: Option<NodeId>,
        forwarded: bool,
    ) -> Result<LeaseClient<Channel>, Status> {
        Ok(LeaseClient::new(self.channel(leader, forwarded)?))
    }
}

impl Forwarder {
    /// `message` as a call marked forwarded, with this member's token while authentication is
    /// enabled (the caller was checked here; the leader takes the member's word for it).
    pub fn marked<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            FORWARDED_METADATA,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        let id = self.service.me().id;
        let token = self.service.read(|state| {
            state
                .auth
                .enabled()
                .then(|| auth::mint_member(&state.auth, id, auth::MEMBER_TOKEN_TTL))
        });
        if let Some(value) = token.and_then(|t| t.parse().ok()) {
            request
                .metadata_mut()
                .insert(auth::MEMBER_TOKEN_HEADER, value);
        }
        request
    }
}
