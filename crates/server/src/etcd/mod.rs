//! etcd's v3 gRPC API on the client port (told apart from the HTTP API by its `application/grpc`
//! content type): the KV, Watch, Lease, Cluster, Maintenance and Auth services and the standard
//! health service, as thin front ends over the service layer. Each file is one service: it converts etcd's messages
//! (`convert.rs`), calls `Service`, and renders etcd's answers and errors (`status.rs`), so
//! `etcdctl` and etcd's client libraries work unchanged.
//!
//! Invariants: every response carries a `ResponseHeader` (this cluster, this member, the store's
//! revision after the operation, the Raft term); while authentication is enabled every call but
//! `Authenticate`, `AuthStatus` and `Status` is checked against its caller (`auth.rs`); a write or lease operation that reaches a
//! follower is forwarded to the leader (`forward.rs`) once, never bounced on.

mod auth;
mod cluster;
mod convert;
mod forward;
mod gateway;
mod kv;
mod lease;
mod maintenance;
mod status;
mod watch;

use raftkv_etcdpb::etcdserverpb::ResponseHeader;
use raftkv_etcdpb::etcdserverpb::auth_server::AuthServer;
use raftkv_etcdpb::etcdserverpb::cluster_server::ClusterServer;
use raftkv_etcdpb::etcdserverpb::kv_server::KvServer;
use raftkv_etcdpb::etcdserverpb::lease_server::LeaseServer;
use raftkv_etcdpb::etcdserverpb::maintenance_server::MaintenanceServer;
use raftkv_etcdpb::etcdserverpb::watch_server::WatchServer;
use raftkv_kv::Revision;

use std::sync::Arc;

use crate::api::watch_pump::WatchPump;
use crate::service::Service;

/// The version `Status` and `GET /version` report: the etcd API version raftkv speaks.
pub const ETCD_API_VERSION: &str = "3.5.0";

/// Most bytes of one gRPC message either way (etcd's default request limit is 1.5 MiB; ranges
/// answer up to the store's `range_bytes_max`).
pub const GRPC_MESSAGE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The etcd front end's shared handles.
#[derive(Clone)]
pub struct Etcd {
    service: Service,
    forward: forward::Forwarder,
    /// Feeds the watch streams (shared with the HTTP API).
    watches: Arc<WatchPump>,
}

impl Etcd {
    /// The front end over a node's operations, its watches fed by `watches`.
    pub fn new(service: Service, watches: Arc<WatchPump>) -> Self {
        Etcd {
            forward: forward::Forwarder::new(&service),
            service,
            watches,
        }
    }

    /// The gRPC services, as a router for the client port.
    pub fn router(self) -> axum::Router {
        let (health_reporter, health) = tonic_health::server::health_reporter();
        drop(health_reporter); // the overall status ("") reports SERVING while the node runs
        let mut routes = tonic::service::Routes::default();
        routes = routes
            .add_service(
                KvServer::new(self.clone())
                    .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
            )
            .add_service(LeaseServer::new(self.clone()))
            .add_service(WatchServer::new(self.clone()))
            .add_service(ClusterServer::new(self.clone()))
            .add_service(MaintenanceServer::new(self.clone()))
            .add_service(AuthServer::new(self))
            .add_service(health);
        routes.into_axum_router()
    }

    /// A response header at `revision`.
    fn header(&self, revision: Revision) -> Option<ResponseHeader> {
        let status = self.service.status();
        Some(ResponseHeader {
            cluster_id: u64::from_str_radix(&status.cluster_id, 16).unwrap_or_default(),
            member_id: self.service.me().id,
            revision,
            raft_term: status.term,
        })
    }

    /// A response header at the store's current revision.
    fn header_now(&self) -> Option<ResponseHeader> {
        let revision = self.service.read(|state| state.kv.revision());
        self.header(revision)
    }
}
