//! TLS for the client and the peer listeners (rustls, no system OpenSSL).
//!
//! Each listener has its own certificate, key and trusted CA ([`TlsFiles`]), loaded once at start
//! into a [`Tls`]: the server side (what the listener presents, and with `client_cert_auth` the
//! CA a connecting client's certificate must chain to) and the client side the node uses to reach
//! other members on the same kind of port (it trusts only that CA and presents the same
//! certificate, so members authenticate each other with the certificates they serve with).
//!
//! Invariant: a node configured with TLS on a port never speaks clear text on it, in either
//! direction.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;

use crate::error::{Result, ServerError};

/// ALPN protocols a listener offers: HTTP/2 (gRPC) and HTTP/1.1 (the peer transport offers
/// none and gets none).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The files of one listener's TLS (etcd's `--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`, and their `--peer-` twins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain this node presents (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// The CA other members' certificates (and, with `client_cert_auth`, clients') chain to.
    pub trusted_ca_file: PathBuf,
    /// Whether a connecting client must present a certificate signed by the trusted CA.
    pub client_cert_auth: bool,
}

/// One listener's TLS, loaded.
#[derive(Clone)]
pub struct Tls {
    /// What the listener serves with.
    server: Arc<ServerConfig>,
    /// What this node connects to other members with.
    client: Arc<ClientConfig>,
    /// The trusted CA as PEM (for gRPC channels, which take PEM).
    ca_pem: Vec<u8>,
    /// The certificate and key as PEM (the identity gRPC channels present).
    identity_pem: (Vec<u8>, Vec<u8>),
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

fn read(path: &Path, what: &str, flag: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        ServerError::Config(format!(
            "cannot read the {what} {} ({flag}): {e}",
            path.display()
        ))
    })
}

fn certificates(pem: &[u8], path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            ServerError::Config(format!(
                "{} ({flag}) is not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(ServerError::Config(format!(
            "{} ({flag}) holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The trusted CAs in `path`.
fn roots(path: &Path, flag: &str) -> Result<Arc<RootCertStore>> {
    let pem = read(path, "CA", flag)?;
    let mut roots = RootCertStore::empty();
    for ca in certificates(&pem, path, flag)? {
        roots.add(ca).map_err(|e| {
            ServerError::Config(format!(
                "{} ({flag}) holds an unusable CA certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(Arc::new(roots))
}

/// A certificate chain and its key, with their PEM.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pem: (Vec<u8>, Vec<u8>),
}

/// Loads the identity in `cert_file` and `key_file` (given with `cert_flag` and `key_flag`).
fn identity(
    cert_file: &Path,
    key_file: &Path,
    cert_flag: &str,
    key_flag: &str,
) -> Result<Identity> {
    let cert_pem = read(cert_file, "certificate", cert_flag)?;
    let key_pem = read(key_file, "private key", key_flag)?;
    let chain = certificates(&cert_pem, cert_file, cert_flag)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        ServerError::Config(format!(
            "{} ({key_flag}) is not a PEM private key: {e}",
            key_file.display()
        ))
    })?;
    Ok(Identity {
        chain,
        key,
        pem: (cert_pem, key_pem),
    })
}

/// The crypto provider: ring, not aws-lc-rs, as it builds on a fresh machine with only a C
/// compiler and the gRPC and HTTP clients use it too (post-quantum key exchange is what it
/// lacks).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn unusable(what: &str) -> impl Fn(rustls::Error) -> ServerError + '_ {
    move |e| ServerError::Config(format!("{what} do not make a usable TLS setup: {e}"))
}

fn client_config(
    roots: Arc<RootCertStore>,
    identity: Option<&Identity>,
    what: &str,
) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(unusable(what))?
        .with_root_certificates(roots);
    match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(unusable(what)),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A client's TLS (the CLI's): trust the CA in `ca_file`, present `identity` (certificate and key
/// files) when given. Flags are named as the CLI's `--cacert`, `--cert` and `--key`.
pub fn client_side(
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<(ClientConfig, tonic::transport::ClientTlsConfig)> {
    use tonic::transport::{Certificate, Identity as GrpcIdentity};
    let roots = roots(ca_file, "--cacert")?;
    let identity = identity
        .map(|(cert, key)| self::identity(cert, key, "--cert", "--key"))
        .transpose()?;
    let rustls = client_config(roots, identity.as_ref(), "--cacert, --cert and --key")?;
    let mut grpc = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca_file, "CA", "--cacert")?));
    if let Some(id) = &identity {
        grpc = grpc.identity(GrpcIdentity::from_pem(&id.pem.0, &id.pem.1));
    }
    Ok((rustls, grpc))
}

impl Tls {
    /// Loads `files`; `prefix` is `""` for the client port and `"peer-"` for the peer port (to
    /// name the flags in errors).
    pub fn load(files: &TlsFiles, prefix: &str) -> Result<Tls> {
        let flags = format!("--{prefix}cert-file and --{prefix}key-file");
        let ca_flag = format!("--{prefix}trusted-ca-file");
        let id = identity(
            &files.cert_file,
            &files.key_file,
            &format!("--{prefix}cert-file"),
            &format!("--{prefix}key-file"),
        )?;
        let roots = roots(&files.trusted_ca_file, &ca_flag)?;
        let ca_pem = read(&files.trusted_ca_file, "CA", &ca_flag)?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(unusable(&flags))?;
        let server = if files.client_cert_auth {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| {
                    ServerError::Config(format!("{ca_flag} cannot verify clients: {e}"))
                })?;
            server.with_client_cert_verifier(verifier)
        } else {
            server.with_no_client_auth()
        };
        let mut server = server
            .with_single_cert(id.chain.clone(), id.key.clone_key())
            .map_err(unusable(&flags))?;
        server.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        let client = client_config(roots, Some(&id), &flags)?;
        Ok(Tls {
            server: Arc::new(server),
            client: Arc::new(client),
            ca_pem,
            identity_pem: id.pem,
        })
    }

    /// The listener's side.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    /// The client side, for reqwest (`use_preconfigured_tls`).
    pub fn client_config(&self) -> ClientConfig {
        (*self.client).clone()
    }

    /// The client side, for a gRPC channel.
    pub fn grpc_config(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, Identity};
        let (cert, key) = &self.identity_pem;
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(cert, key))
    }

    /// Opens TLS over `stream` to the member at `addr` (`host:port`), verifying its certificate
    /// names `host`.
    pub async fn connect(
        &self,
        addr: &str,
        stream: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        tokio_rustls::TlsConnector::from(self.client.clone())
            .connect(name, stream)
            .await
    }
}

/// A reqwest client builder that speaks TLS with `tls` when given.
pub fn http_client(tls: Option<&Tls>) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    match tls {
        Some(tls) => builder.use_preconfigured_tls(tls.client_config()),
        None => builder,
    }
}

/// A throwaway certificate authority, for `raftkv dev --tls` and for tests: never for
/// production (its key lives only in memory and its certificates name loopback hosts).
pub struct DevCa {
    /// The CA's certificate and key.
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// Hosts every dev certificate names.
const DEV_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fn dev_error(e: rcgen::Error) -> ServerError {
    ServerError::Config(format!("cannot make a dev certificate: {e}"))
}

impl DevCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<DevCa> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(dev_error)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().map_err(dev_error)?;
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).map_err(dev_error)?;
        Ok(DevCa { issuer })
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `name` on the loopback hosts, good for serving and as a client:
    /// its PEM and its key's PEM.
    pub fn issue(&self, name: &str) -> Result<(String, String)> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose};
        let hosts: Vec<String> = DEV_HOSTS.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(hosts).map_err(dev_error)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().map_err(dev_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(dev_error)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes `ca.pem`, and for each of `names` `NAME.pem` and `NAME-key.pem` (readable by the
    /// owner only), into `dir`.
    pub fn write(&self, dir: &Path, names: &[&str]) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let write = |file: &str, text: &str, private: bool| -> Result<()> {
            let path = dir.join(file);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            if private {
                options.mode(0o600);
            }
            let mut out = options.open(&path).map_err(|e| {
                ServerError::Config(format!("cannot write {}: {e}", path.display()))
            })?;
            std::io::Write::write_all(&mut out, text.as_bytes())?;
            Ok(())
        };
        std::fs::create_dir_all(dir)?;
        write("ca.pem", &self.ca_pem(), false)?;
        for name in names {
            let (cert, key) = self.issue(name)?;
            write(&format!("{name}.pem"), &cert, false)?;
            write(&format!("{name}-key.pem"), &key, true)?;
        }
        Ok(())
    }
}
