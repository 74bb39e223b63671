//! The server's settings, with defaults that give a working single-node cluster on 127.0.0.1.
//!
//! The CLI fills this from flags, `RAFTKV_*` environment variables and a TOML file; everything
//! here is already resolved. URLs are kept as given (`http://host:port`) for advertising; the
//! `listen_*` addresses are socket addresses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Result, ServerError};

/// Default client port.
pub const CLIENT_PORT_DEFAULT: u16 = 4001;
/// Default peer port.
pub const PEER_PORT_DEFAULT: u16 = 7001;
/// Default tick length: heartbeats every tick, elections after 10 to 20 ticks.
pub const TICK_MS_DEFAULT: u64 = 100;
/// Default election timeout in ticks (1 s).
pub const ELECTION_TICKS_DEFAULT: u32 = 10;
/// Default heartbeat interval in ticks (100 ms).
pub const HEARTBEAT_TICKS_DEFAULT: u32 = 1;
/// Default number of applied entries between snapshots (etcd's `--snapshot-count` default). A
/// snapshot costs in proportion to the whole store, the log it replaces only in proportion to the
/// entries kept: at 10,000 a busy node wrote a snapshot of its whole store every second.
pub const SNAPSHOT_ENTRIES_DEFAULT: u64 = 100_000;
/// A snapshot waits until the log applied since the last one holds a quarter of its bytes
/// (`raftkv_replica::Settings::snapshot_log_fraction`): a snapshot's cost per entry stays bounded
/// as the store grows, for a log of at most a quarter of the store's size kept in memory.
pub const SNAPSHOT_LOG_FRACTION: u64 = 4;
/// Default time a client request waits for its commit (then 504, outcome unknown).
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default bound on client connections open at once (lowered to fit the descriptor limit).
pub const CLIENT_CONNECTIONS_MAX_DEFAULT: usize = 4096;
/// Default time a client has to send a request's headers.
pub const CLIENT_HEADER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default time a client connection may stay without a byte either way (longer than a watch
/// stream's progress interval).
pub const CLIENT_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// Default time a client request may take (longer than a commit's `REQUEST_TIMEOUT_DEFAULT`
/// plus a forward to the leader).
pub const CLIENT_REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default watches per client address.
pub const WATCHES_PER_CLIENT_MAX_DEFAULT: usize = 1024;
/// Default [`ServerConfig::watch_progress_notify_interval`]: 10 minutes, as etcd.
pub const WATCH_PROGRESS_NOTIFY_INTERVAL_DEFAULT: Duration = Duration::from_secs(600);
/// File descriptors kept out of the client connection bound: the WAL's segments and snapshot
/// files, peer connections, the process's own.
pub const DESCRIPTORS_RESERVED: usize = 256;

/// Longest tick accepted.
pub const TICK_MAX: Duration = Duration::from_secs(60);
/// Most ticks in an election timeout.
pub const ELECTION_TICKS_MAX: u32 = 10_000;
/// Longest request timeout accepted.
pub const REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// How a node joins the cluster the first time it starts with an empty data dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// A static cluster: every member's name and peer URL (this node among them).
    InitialCluster(Vec<(String, String)>),
    /// Ask a running member (by client URL) to add this node.
    Join(String),
}

/// Default [`ServerConfig::corrupt_check_interval`]: each check hashes every member's whole state
/// once (off the node loop), so once a minute costs little even for a large store.
pub const CORRUPT_CHECK_INTERVAL_DEFAULT: Duration = Duration::from_secs(60);

/// Default `ServerConfig::quota_bytes`: 2 GiB of live keys and values (etcd's default quota).
pub const QUOTA_BYTES_DEFAULT: u64 = 2 << 30;

/// Everything a node needs to run.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This member's name, unique in the cluster; its node id derives from it.
    pub name: String,
    /// Where the WAL, snapshots and the node's identity live.
    pub data_dir: PathBuf,
    /// Address the client API listens on.
    pub listen_client: SocketAddr,
    /// Client URL other members and clients use to reach this node.
    pub advertise_client: String,
    /// Address the peer transport listens on.
    pub listen_peer: SocketAddr,
    /// Peer URL other members use to reach this node.
    pub advertise_peer: String,
    /// First-start bootstrap; ignored (with a log line) when the data dir holds a node.
    pub bootstrap: Bootstrap,
    /// Length of one Raft tick.
    pub tick: Duration,
    /// Election timeout in ticks.
    pub election_ticks: u32,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u32,
    /// Applied entries between snapshots (then the log is compacted).
    pub snapshot_entries: u64,
    /// How long a client request waits for its commit or read.
    pub request_timeout: Duration,
    /// A node whose WAL sync takes longer than this many ticks reports itself unhealthy.
    pub disk_stall_ticks: u32,
    /// Live bytes (keys and values) above which the leader raises `NOSPACE` (0: no quota).
    pub quota_bytes: u64,
    /// How often the leader runs a corruption check (zero: never).
    pub corrupt_check_interval: Duration,
    /// Client connections open at once (lowered at start to fit the descriptor limit).
    pub client_connections_max: usize,
    /// Time a client has to send a request's headers.
    pub client_header_timeout: Duration,
    /// Time a client connection may stay without a byte either way.
    pub client_idle_timeout: Duration,
    /// Time a client request may take, its body read and its answer produced (a watch stream's
    /// events are not counted).
    pub client_request_timeout: Duration,
    /// How long a token from authenticating stays good (etcd's `--auth-token-ttl`).
    pub auth_token_ttl: Duration,
    /// TLS on the client port (and for this node's calls to other members' client ports).
    pub client_tls: Option<crate::tls::TlsFiles>,
    /// TLS on the peer port and the peer transport.
    pub peer_tls: Option<crate::tls::TlsFiles>,
    /// Which addresses may open peer connections.
    pub peer_sources: crate::peer_sources::PeerSources,
    /// How often an etcd watch created with `progress_notify` gets a progress notice (etcd's
    /// `--experimental-watch-progress-notify-interval`).
    pub watch_progress_notify_interval: Duration,
    /// Watches one client address may hold at once (the node holds at most the store's
    /// `watches_max`).
    pub watches_per_client_max: usize,
    /// Fault injection for tests and drills: while this file exists, WAL syncs do not complete
    /// (a stalled disk). `None` in production.
    pub debug_stall_file: Option<PathBuf>,
    /// Fault injection for tests and drills: while this file exists, WAL syncs fail (the node
    /// stops). `None` in production.
    pub debug_fail_sync_file: Option<PathBuf>,
    /// Fault injection for tests and drills: while this file exists, this member's
    /// corruption-check hashes are altered as if its state differed. `None` in production.
    pub debug_diverge_file: Option<PathBuf>,
    /// Debugging aid: every snapshot takes this much longer to write (to show that a slow
    /// snapshot never delays the node loop).
    pub debug_snapshot_delay: Option<Duration>,
}

impl ServerConfig {
    /// The zero-flag configuration: a single-node cluster named `default` on 127.0.0.1.
    pub fn single_node_default() -> Self {
        let listen_client = SocketAddr::from(([127, 0, 0, 1], CLIENT_PORT_DEFAULT));
        let listen_peer = SocketAddr::from(([127, 0, 0, 1], PEER_PORT_DEFAULT));
        let advertise_peer = format!("http://{listen_peer}");
        ServerConfig {
            name: "default".to_string(),
            data_dir: PathBuf::from("raftkv-data"),
            listen_client,
            advertise_client: format!("http://{listen_client}"),
            listen_peer,
            bootstrap: Bootstrap::InitialCluster(vec![(
                "default".to_string(),
                advertise_peer.clone(),
            )]),
            advertise_peer,
            tick: Duration::from_millis(TICK_MS_DEFAULT),
            election_ticks: ELECTION_TICKS_DEFAULT,
            heartbeat_ticks: HEARTBEAT_TICKS_DEFAULT,
            snapshot_entries: SNAPSHOT_ENTRIES_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            disk_stall_ticks: 3 * ELECTION_TICKS_DEFAULT,
            quota_bytes: QUOTA_BYTES_DEFAULT,
            client_connections_max: CLIENT_CONNECTIONS_MAX_DEFAULT,
            client_header_timeout: CLIENT_HEADER_TIMEOUT_DEFAULT,
            client_idle_timeout: CLIENT_IDLE_TIMEOUT_DEFAULT,
            client_request_timeout: CLIENT_REQUEST_TIMEOUT_DEFAULT,
            watches_per_client_max: WATCHES_PER_CLIENT_MAX_DEFAULT,
            watch_progress_notify_interval: WATCH_PROGRESS_NOTIFY_INTERVAL_DEFAULT,
            peer_sources: crate::peer_sources::PeerSources::default(),
            auth_token_ttl: crate::auth::TOKEN_TTL_DEFAULT,
            client_tls: None,
            peer_tls: None,
            debug_stall_file: None,
            debug_snapshot_delay: None,
            debug_fail_sync_file: None,
            debug_diverge_file: None,
            corrupt_check_interval: CORRUPT_CHECK_INTERVAL_DEFAULT,
        }
    }

    /// Checks the settings can work together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ServerError::Config(m));
        if self.name.is_empty() {
            return bad("--name must not be empty".into());
        }
        if self.client_connections_max == 0
            || self.client_header_timeout.is_zero()
            || self.client_idle_timeout.is_zero()
            || self.client_request_timeout.is_zero()
            || self.watches_per_client_max == 0
            || self.watch_progress_notify_interval.is_zero()
            || self.auth_token_ttl.is_zero()
        {
            return bad("--client-connections-max, --client-header-timeout-ms, \
                 --client-idle-timeout-ms, --client-request-timeout-ms, \
                 --watches-per-client-max, --watch-progress-notify-ms and --auth-token-ttl must be above 0"
                .into());
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return bad(format!(
                "election ticks ({}) must exceed heartbeat ticks ({}), which must be at least 1",
                self.election_ticks, self.heartbeat_ticks
            ));
        }
        if self.tick.is_zero() || self.tick > TICK_MAX {
            return bad(format!(
                "the tick length must be between 1 ms and {TICK_MAX:?}"
            ));
        }
        if self.election_ticks > ELECTION_TICKS_MAX || self.disk_stall_ticks == 0 {
            return bad(format!(
                "election ticks must be at most {ELECTION_TICKS_MAX}, disk stall ticks at least 1"
            ));
        }
        if self.request_timeout.is_zero() || self.request_timeout > REQUEST_TIMEOUT_MAX {
            return bad(format!(
                "the request timeout must be between 1 s and {REQUEST_TIMEOUT_MAX:?}"
            ));
        }
        if self.snapshot_entries == 0 {
            return bad("snapshot entries must be at least 1".into());
        }
        if let Bootstrap::InitialCluster(members) = &self.bootstrap {
            if !members.iter().any(|(n, _)| n == &self.name) {
                return bad(format!(
                    "--initial-cluster does not name this node ({}); add {}={}",
                    self.name, self.name, self.advertise_peer
                ));
            }
            let mut names: Vec<&String> = members.iter().map(|(n, _)| n).collect();
            names.sort();
            names.dedup();
            if names.len() != members.len() {
                return bad("--initial-cluster names a member twice".into());
            }
        }
        Ok(())
    }
}

/// Parses `host:port` or `http://host:port` into `host:port`, the form sockets take.
pub fn host_port(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
        return Err(ServerError::Config(format!(
            "`{url}` is not an address; expected http://host:port or host:port"
        )));
    }
    Ok(rest.to_string())
}

/// Normalizes a URL or bare `host:port` to `http://host:port`, or `https://host:port` when it
/// was given as `https://` (TLS).
pub fn normalize_url(url: &str) -> Result<String> {
    let scheme = if url.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{}", host_port(url)?))
}

/// Parses `--initial-cluster name=url,name=url`.
pub fn parse_initial_cluster(spec: &str) -> Result<Vec<(String, String)>> {
    spec.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (name, url) = part.split_once('=').ok_or_else(|| {
                ServerError::Config(format!(
                    "--initial-cluster entry `{part}` is not name=peer-url"
                ))
            })?;
            Ok((name.trim().to_string(), normalize_url(url.trim())?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_bare_addresses_are_both_accepted() {
        assert_eq!(
            host_port("http://127.0.0.1:7001").unwrap(),
            "127.0.0.1:7001"
        );
        assert_eq!(host_port("127.0.0.1:7001").unwrap(), "127.0.0.1:7001");
        assert_eq!(host_port("http://node-1:7001/").unwrap(), "node-1:7001");
        assert!(host_port("http://no-port").is_err());
        assert!(host_port("").is_err());
    }

    #[test]
    fn initial_cluster_parses_and_normalizes() {
        let parsed = parse_initial_cluster("a=http://127.0.0.1:7001,b=127.0.0.1:7002").unwrap();
        assert_eq!(
            parsed,
            vec![
                ("a".to_string(), "http://127.0.0.1:7001".to_string()),
                ("b".to_string(), "http://127.0.0.1:7002".to_string()),
            ]
        );
        assert!(parse_initial_cluster("a").is_err());
    }

    #[test]
    fn the_default_configuration_is_valid_and_names_itself() {
        let config = ServerConfig::single_node_default();
        config.validate().unwrap();
        let mut other = config.clone();
        other.bootstrap = Bootstrap::InitialCluster(vec![("x".into(), "http://h:1".into())]);
        assert!(other.validate().is_err());
    }
}
