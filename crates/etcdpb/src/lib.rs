//! etcd's v3 API as Rust types, compiled at build time from `proto/` (etcd 3.5's wire format:
//! packages, services, messages, field numbers): the gRPC servers raftkv implements, the clients
//! its tests and CLI use, and the encoded file descriptors the JSON gateway maps with. Bytes
//! fields are `bytes::Bytes`.

/// `mvccpb`: keys and events.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// `authpb`: users, roles and permissions.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and Auth services.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// The encoded `FileDescriptorSet` of the three packages.
pub const FILE_DESCRIPTORS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/etcd_descriptors.bin"));
