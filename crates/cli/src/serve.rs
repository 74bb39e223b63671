//! `raftkv serve`: settings from flags, then `RAFTKV_*` environment variables, then a TOML file
//! (`--config`), then defaults; the node runs until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use raftkv_server::config::{normalize_url, parse_initial_cluster};
use raftkv_server::tls::TlsFiles;
use raftkv_server::{Bootstrap, Server, ServerConfig};
use serde::Deserialize;

/// Flags of `raftkv serve`. Each may also come from its `RAFTKV_*` variable or the config file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, e.g. `data-dir = "..."`).
    #[arg(long, env = "RAFTKV_CONFIG")]
    config: Option<PathBuf>,
    /// This member's name, unique in the cluster [default: default].
    #[arg(long, env = "RAFTKV_NAME")]
    name: Option<String>,
    /// Data directory [default: ./raftkv-data].
    #[arg(long, env = "RAFTKV_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Client API address to listen on [default: 127.0.0.1:4001].
    #[arg(long, env = "RAFTKV_LISTEN_CLIENT")]
    listen_client: Option<String>,
    /// Client URL to advertise [default: http://<listen-client>].
    #[arg(long, env = "RAFTKV_ADVERTISE_CLIENT")]
    advertise_client: Option<String>,
    /// Peer address to listen on [default: 127.0.0.1:7001].
    #[arg(long, env = "RAFTKV_LISTEN_PEER")]
    listen_peer: Option<String>,
    /// Peer URL to advertise [default: http://<listen-peer>].
    #[arg(long, env = "RAFTKV_ADVERTISE_PEER")]
    advertise_peer: Option<String>,
    /// Static bootstrap: name=peer-url,... for every member [default: this node alone].
    #[arg(long, env = "RAFTKV_INITIAL_CLUSTER", conflicts_with = "join")]
    initial_cluster: Option<String>,
    /// Join a running cluster through the client URL of any member.
    #[arg(long, env = "RAFTKV_JOIN")]
    join: Option<String>,
    /// Length of a Raft tick in milliseconds [default: 100].
    #[arg(long, env = "RAFTKV_TICK_MS")]
    tick_ms: Option<u64>,
    /// Election timeout in ticks [default: 10].
    #[arg(long, env = "RAFTKV_ELECTION_TICKS")]
    election_ticks: Option<u32>,
    /// Heartbeat interval in ticks [default: 1].
    #[arg(long, env = "RAFTKV_HEARTBEAT_TICKS")]
    heartbeat_ticks: Option<u32>,
    /// A node whose WAL sync runs longer than this many ticks reports itself unhealthy
    /// [default: 3 election timeouts].
    #[arg(long, env = "RAFTKV_DISK_STALL_TICKS")]
    disk_stall_ticks: Option<u32>,
    /// Live bytes (keys and values) above which writes are refused with NOSPACE until an
    /// operator makes room and disarms the alarm (0: no quota) [default: 2 GiB].
    #[arg(long, env = "RAFTKV_QUOTA_BYTES")]
    quota_bytes: Option<u64>,
    /// Milliseconds between corruption checks: the members hash their state at a common index
    /// and a member that differs gets a CORRUPT alarm, which stops writes (0: never)
    /// [default: 60000].
    #[arg(long, env = "RAFTKV_CORRUPT_CHECK_INTERVAL_MS")]
    corrupt_check_interval_ms: Option<u64>,
    /// Applied entries between snapshots [default: 10000].
    #[arg(long, env = "RAFTKV_SNAPSHOT_ENTRIES")]
    snapshot_entries: Option<u64>,
    /// Client connections open at once; more are refused [default: 4096, lowered to fit the
    /// file-descriptor limit].
    #[arg(long, env = "RAFTKV_CLIENT_CONNECTIONS_MAX")]
    client_connections_max: Option<usize>,
    /// Milliseconds a client has to send a request's headers [default: 10000].
    #[arg(long, env = "RAFTKV_CLIENT_HEADER_TIMEOUT_MS")]
    client_header_timeout_ms: Option<u64>,
    /// Milliseconds a client connection may stay without a byte either way [default: 60000].
    #[arg(long, env = "RAFTKV_CLIENT_IDLE_TIMEOUT_MS")]
    client_idle_timeout_ms: Option<u64>,
    /// Milliseconds a client request may take, its body read and its answer produced (a watch
    /// stream's events are not counted) [default: 30000].
    #[arg(long, env = "RAFTKV_CLIENT_REQUEST_TIMEOUT_MS")]
    client_request_timeout_ms: Option<u64>,
    /// Which addresses may open peer connections: `members` (the members' peer URL hosts) or
    /// `any` (for members that connect from another address, e.g. behind NAT) [default: members].
    #[arg(long, env = "RAFTKV_PEER_SOURCES")]
    peer_sources: Option<String>,
    /// Watches one client address may hold at once; more are refused with a 429 [default: 1024].
    #[arg(long, env = "RAFTKV_WATCHES_PER_CLIENT_MAX")]
    watches_per_client_max: Option<usize>,
    /// Milliseconds between the progress notices of an etcd watch created with
    /// `progress_notify` [default: 600000, as etcd].
    #[arg(long, env = "RAFTKV_WATCH_PROGRESS_NOTIFY_MS")]
    watch_progress_notify_ms: Option<u64>,
    /// Seconds a token from authenticating stays good (etcd's `--auth-token-ttl`) [default: 300].
    #[arg(long, env = "RAFTKV_AUTH_TOKEN_TTL")]
    auth_token_ttl: Option<u64>,
    /// Seconds a client request waits for its commit [default: 5].
    #[arg(long, env = "RAFTKV_REQUEST_TIMEOUT_SECS")]
    request_timeout_secs: Option<u64>,
    /// Client port TLS: this node's certificate (PEM); clients then use https:// URLs.
    #[arg(long, env = "RAFTKV_CERT_FILE")]
    cert_file: Option<PathBuf>,
    /// Client port TLS: the certificate's private key (PEM).
    #[arg(long, env = "RAFTKV_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Client port TLS: the CA that signed the members' client certificates (and, with
    /// --client-cert-auth, the clients').
    #[arg(long, env = "RAFTKV_TRUSTED_CA_FILE")]
    trusted_ca_file: Option<PathBuf>,
    /// Client port TLS: refuse clients without a certificate signed by --trusted-ca-file.
    #[arg(long, env = "RAFTKV_CLIENT_CERT_AUTH")]
    client_cert_auth: bool,
    /// Peer TLS: this node's peer certificate (PEM).
    #[arg(long, env = "RAFTKV_PEER_CERT_FILE")]
    peer_cert_file: Option<PathBuf>,
    /// Peer TLS: the peer certificate's private key (PEM).
    #[arg(long, env = "RAFTKV_PEER_KEY_FILE")]
    peer_key_file: Option<PathBuf>,
    /// Peer TLS: the CA that signed every member's peer certificate.
    #[arg(long, env = "RAFTKV_PEER_TRUSTED_CA_FILE")]
    peer_trusted_ca_file: Option<PathBuf>,
    /// Peer TLS: refuse peers without a certificate signed by --peer-trusted-ca-file.
    #[arg(long, env = "RAFTKV_PEER_CLIENT_CERT_AUTH")]
    peer_client_cert_auth: bool,
    /// Log level or filter (also RUST_LOG) [default: info].
    #[arg(long, env = "RAFTKV_LOG_LEVEL")]
    log_level: Option<String>,
    /// Shut down when stdin closes (used by `raftkv dev`, so nodes never outlive it).
    #[arg(long, hide = true)]
    stop_with_stdin: bool,
    /// Fault injection: while this file exists, WAL syncs stall (for tests and drills).
    #[arg(long, hide = true)]
    debug_stall_file: Option<PathBuf>,
    /// Fault injection: every snapshot takes this many milliseconds longer to write (to show
    /// that a slow snapshot never delays the node loop).
    #[arg(long, hide = true)]
    debug_snapshot_delay_ms: Option<u64>,
    /// Fault injection: while this file exists, WAL syncs fail and the node stops.
    #[arg(long, hide = true)]
    debug_fail_sync_file: Option<PathBuf>,
    /// Fault injection: while this file exists, this member's corruption-check hashes differ
    /// from the others' (as if its state did).
    #[arg(long, hide = true)]
    debug_diverge_file: Option<PathBuf>,
}

/// The config file: the same settings as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    listen_client: Option<String>,
    advertise_client: Option<String>,
    listen_peer: Option<String>,
    advertise_peer: Option<String>,
    initial_cluster: Option<String>,
    join: Option<String>,
    tick_ms: Option<u64>,
    election_ticks: Option<u32>,
    heartbeat_ticks: Option<u32>,
    disk_stall_ticks: Option<u32>,
    quota_bytes: Option<u64>,
    corrupt_check_interval_ms: Option<u64>,
    snapshot_entries: Option<u64>,
    request_timeout_secs: Option<u64>,
    client_connections_max: Option<usize>,
    client_header_timeout_ms: Option<u64>,
    client_idle_timeout_ms: Option<u64>,
    watches_per_client_max: Option<usize>,
    watch_progress_notify_ms: Option<u64>,
    auth_token_ttl: Option<u64>,
    client_request_timeout_ms: Option<u64>,
    peer_sources: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    trusted_ca_file: Option<PathBuf>,
    client_cert_auth: Option<bool>,
    peer_cert_file: Option<PathBuf>,
    peer_key_file: Option<PathBuf>,
    peer_trusted_ca_file: Option<PathBuf>,
    peer_client_cert_auth: Option<bool>,
    log_level: Option<String>,
}

/// One listener's TLS flags (`prefix` is `""` or `"peer-"`), checked to be complete.
fn tls_files(
    prefix: &str,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    trusted_ca_file: Option<PathBuf>,
    client_cert_auth: bool,
) -> Result<Option<TlsFiles>> {
    match (cert_file, key_file, trusted_ca_file) {
        (None, None, None) if !client_cert_auth => Ok(None),
        (Some(cert_file), Some(key_file), Some(trusted_ca_file)) => Ok(Some(TlsFiles {
            cert_file,
            key_file,
            trusted_ca_file,
            client_cert_auth,
        })),
        _ => bail!(
            "{prefix}TLS needs all of --{prefix}cert-file, --{prefix}key-file and \
             --{prefix}trusted-ca-file (the CA that signed the members' certificates)"
        ),
    }
}

fn socket_addr(flag: &str, value: &str) -> Result<SocketAddr> {
    let bare = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .unwrap_or(value)
        .trim_end_matches('/');
    bare.parse()
        .with_context(|| format!("--{flag} `{value}` is not an ip:port address"))
}

/// Resolves flags, environment, file and defaults into a server configuration.
fn resolve(args: ServeArgs) -> Result<(ServerConfig, Option<String>)> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid", path.display()))?
        }
        None => FileConfig::default(),
    };
    let mut config = ServerConfig::single_node_default();
    if let Some(name) = args.name.or(file.name) {
        config.name = name;
    }
    if let Some(dir) = args.data_dir.or(file.data_dir) {
        config.data_dir = dir;
    }
    if let Some(addr) = args.listen_client.or(file.listen_client) {
        config.listen_client = socket_addr("listen-client", &addr)?;
    }
    config.client_tls = tls_files(
        "",
        args.cert_file.or(file.cert_file),
        args.key_file.or(file.key_file),
        args.trusted_ca_file.or(file.trusted_ca_file),
        args.client_cert_auth || file.client_cert_auth.unwrap_or(false),
    )?;
    config.peer_tls = tls_files(
        "peer-",
        args.peer_cert_file.or(file.peer_cert_file),
        args.peer_key_file.or(file.peer_key_file),
        args.peer_trusted_ca_file.or(file.peer_trusted_ca_file),
        args.peer_client_cert_auth || file.peer_client_cert_auth.unwrap_or(false),
    )?;
    let scheme = |tls: &Option<TlsFiles>| if tls.is_some() { "https" } else { "http" };
    config.advertise_client = match args.advertise_client.or(file.advertise_client) {
        Some(url) => normalize_url(&url)?,
        None => format!("{}://{}", scheme(&config.client_tls), config.listen_client),
    };
    if let Some(addr) = args.listen_peer.or(file.listen_peer) {
        config.listen_peer = socket_addr("listen-peer", &addr)?;
    }
    config.advertise_peer = match args.advertise_peer.or(file.advertise_peer) {
        Some(url) => normalize_url(&url)?,
        None => format!("{}://{}", scheme(&config.peer_tls), config.listen_peer),
    };
    config.bootstrap = match (
        args.initial_cluster.or(file.initial_cluster),
        args.join.or(file.join),
    ) {
        (Some(_), Some(_)) => bail!("give either --initial-cluster or --join, not both"),
        (Some(spec), None) => Bootstrap::InitialCluster(parse_initial_cluster(&spec)?),
        (None, Some(url)) => Bootstrap::Join(normalize_url(&url)?),
        (None, None) => {
            Bootstrap::InitialCluster(vec![(config.name.clone(), config.advertise_peer.clone())])
        }
    };
    if let Some(ms) = args.tick_ms.or(file.tick_ms) {
        config.tick = Duration::from_millis(ms);
    }
    if let Some(ticks) = args.election_ticks.or(file.election_ticks) {
        config.election_ticks = ticks;
        config.disk_stall_ticks = ticks.saturating_mul(3);
    }
    if let Some(ticks) = args.disk_stall_ticks.or(file.disk_stall_ticks) {
        config.disk_stall_ticks = ticks;
    }
    if let Some(bytes) = args.quota_bytes.or(file.quota_bytes) {
        config.quota_bytes = bytes;
    }
    if let Some(ms) = args
        .corrupt_check_interval_ms
        .or(file.corrupt_check_interval_ms)
    {
        config.corrupt_check_interval = Duration::from_millis(ms);
    }
    if let Some(ticks) = args.heartbeat_ticks.or(file.heartbeat_ticks) {
        config.heartbeat_ticks = ticks;
    }
    if let Some(n) = args.snapshot_entries.or(file.snapshot_entries) {
        config.snapshot_entries = n;
    }
    if let Some(secs) = args.request_timeout_secs.or(file.request_timeout_secs) {
        config.request_timeout = Duration::from_secs(secs);
    }
    if let Some(n) = args.client_connections_max.or(file.client_connections_max) {
        config.client_connections_max = n;
    }
    if let Some(ms) = args
        .client_request_timeout_ms
        .or(file.client_request_timeout_ms)
    {
        config.client_request_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = args.watches_per_client_max.or(file.watches_per_client_max) {
        config.watches_per_client_max = n;
    }
    if let Some(ms) = args
        .watch_progress_notify_ms
        .or(file.watch_progress_notify_ms)
    {
        config.watch_progress_notify_interval = Duration::from_millis(ms);
    }
    if let Some(secs) = args.auth_token_ttl.or(file.auth_token_ttl) {
        config.auth_token_ttl = Duration::from_secs(secs);
    }
    if let Some(sources) = args.peer_sources.as_ref().or(file.peer_sources.as_ref()) {
        config.peer_sources = sources.parse().map_err(anyhow::Error::msg)?;
    }
    if let Some(ms) = args
        .client_header_timeout_ms
        .or(file.client_header_timeout_ms)
    {
        config.client_header_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = args.client_idle_timeout_ms.or(file.client_idle_timeout_ms) {
        config.client_idle_timeout = Duration::from_millis(ms);
    }
    config.validate()?;
    Ok((config, args.log_level.or(file.log_level)))
}

/// Logging: an explicit `--log-level` (or its variable or file key) wins, then `RUST_LOG`, then
/// `info`.
fn init_logging(level: Option<&str>) {
    let filter = match level {
        Some(level) => tracing_subscriber::EnvFilter::new(level),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a node until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> Result<()> {
    let stop_with_stdin = args.stop_with_stdin;
    let debug_stall_file = args.debug_stall_file.clone();
    let debug_fail_sync_file = args.debug_fail_sync_file.clone();
    let debug_diverge_file = args.debug_diverge_file.clone();
    let debug_snapshot_delay = args
        .debug_snapshot_delay_ms
        .map(std::time::Duration::from_millis);
    let (config, log_level) = resolve(args)?;
    init_logging(log_level.as_deref());
    let config = ServerConfig {
        debug_stall_file,
        debug_snapshot_delay,
        debug_fail_sync_file,
        debug_diverge_file,
        ..config
    };
    let mut server = Server::start(config).await?;
    tokio::select! {
        signal = wait_for_signal() => signal?,
        () = stdin_closed(), if stop_with_stdin => {}
        failure = server.stopped() => {
            anyhow::bail!("the node stopped: {failure}");
        }
    }
    tracing::info!("signal received; shutting down");
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves when stdin reaches end of file (the parent `raftkv dev` exited, however it died).
async fn stdin_closed() {
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await;
}

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_give_the_single_node_default() {
        let (config, level) = resolve(ServeArgs::default()).unwrap();
        assert_eq!(config.name, "default");
        assert_eq!(config.listen_client.to_string(), "127.0.0.1:4001");
        assert_eq!(config.advertise_peer, "http://127.0.0.1:7001");
        assert_eq!(
            config.bootstrap,
            Bootstrap::InitialCluster(vec![("default".into(), "http://127.0.0.1:7001".into())])
        );
        assert_eq!(level, None);
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raftkv.toml");
        std::fs::write(
            &path,
            "name = \"from-file\"\nlisten-client = \"127.0.0.1:5001\"\ntick-ms = 50\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            name: Some("from-flag".into()),
            ..ServeArgs::default()
        };
        let (config, _) = resolve(args).unwrap();
        assert_eq!(config.name, "from-flag");
        assert_eq!(config.listen_client.to_string(), "127.0.0.1:5001");
        assert_eq!(config.advertise_client, "http://127.0.0.1:5001");
        assert_eq!(config.tick, Duration::from_millis(50));
    }

    #[test]
    fn tls_flags_must_come_together_and_make_urls_https() {
        let args = ServeArgs {
            cert_file: Some("n1.pem".into()),
            key_file: Some("n1-key.pem".into()),
            ..ServeArgs::default()
        };
        let error = resolve(args).unwrap_err().to_string();
        assert!(error.contains("--trusted-ca-file"), "{error}");
        let args = ServeArgs {
            peer_client_cert_auth: true,
            ..ServeArgs::default()
        };
        let error = resolve(args).unwrap_err().to_string();
        assert!(error.contains("--peer-cert-file"), "{error}");
        let args = ServeArgs {
            cert_file: Some("n1.pem".into()),
            key_file: Some("n1-key.pem".into()),
            trusted_ca_file: Some("ca.pem".into()),
            ..ServeArgs::default()
        };
        let (config, _) = resolve(args).unwrap();
        assert_eq!(config.advertise_client, "https://127.0.0.1:4001");
        assert_eq!(config.advertise_peer, "http://127.0.0.1:7001");
    }

    #[test]
    fn an_unreadable_certificate_is_named_with_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert_file: dir.path().join("missing.pem"),
            key_file: dir.path().join("missing-key.pem"),
            trusted_ca_file: dir.path().join("ca.pem"),
            client_cert_auth: false,
        };
        let error = raftkv_server::tls::Tls::load(&files, "peer-").unwrap_err();
        assert!(error.to_string().contains("--peer-cert-file"), "{error}");
        std::fs::write(&files.cert_file, "not a certificate").unwrap();
        std::fs::write(&files.key_file, "not a key").unwrap();
        let error = raftkv_server::tls::Tls::load(&files, "").unwrap_err();
        assert!(error.to_string().contains("--cert-file"), "{error}");
    }

    #[test]
    fn an_unknown_key_in_the_config_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raftkv.toml");
        std::fs::write(&path, "nmae = \"typo\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert!(resolve(args).is_err());
    }
}
