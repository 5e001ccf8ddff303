//! TLS on both sides (rustls, ring provider).
//!
//! - Towards clients: the certificate and key from `proxy.tls_cert` /
//!   `proxy.tls_key`, or a self-signed pair generated on first start in
//!   `<state_dir>/tls/server.pem` (directory 0700, file 0600: certificate
//!   and key in one file) and reused afterwards.
//! - Towards upstreams, per target (`tls` = libpq's sslmode names):
//!   `require` encrypts without verifying the certificate; `verify-full`
//!   verifies chain and name against `tls_ca_file` or the system roots.

use std::{
    collections::HashMap,
    fs,
    io::Write,
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{Config, Target, UpstreamTls};

/// ALPN protocol name of PostgreSQL over TLS (PostgreSQL 17 clients send it,
/// and require it for `sslnegotiation=direct`).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// TLS set-up failures; all happen at start, before any client is served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM object of the expected kind.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// The generated certificate cannot be stored.
    #[error("cannot write {}: {source} (fix: make state_dir writable by the daemon)", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen failed to generate the self-signed certificate.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration (e.g. key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// `verify-full` without any trusted root.
    #[error(
        "target `{target}`: tls = \"verify-full\" but no CA certificate was found (fix: set tls_ca_file)"
    )]
    NoRoots {
        /// The target.
        target: String,
    },
    /// `tls_server_name` is not a DNS name or IP address.
    #[error("target `{target}`: tls_server_name `{name}` is not a valid DNS name or IP address")]
    ServerName {
        /// The target.
        target: String,
        /// The name.
        name: String,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The acceptor for clients that ask for TLS.
pub fn client_acceptor(config: &Config) -> Result<TlsAcceptor, TlsError> {
    let (certs, key) =
        if let (Some(cert), Some(key)) = (&config.proxy.tls_cert, &config.proxy.tls_key) {
            (
                parse_certs(cert, &read(cert)?)?,
                parse_key(key, &read(key)?)?,
            )
        } else {
            // Certificate and key from one read of one file: a pair.
            let (path, pem) = self_signed(&config.state_dir.join("tls"))?;
            (parse_certs(&path, &pem)?, parse_key(&path, &pem)?)
        };
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    server.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The generated certificate and key (one PEM file, mode 0600, so that
/// replacing it is one atomic rename): its path and contents, generating it
/// on first use.
fn self_signed(dir: &Path) -> Result<(PathBuf, Vec<u8>), TlsError> {
    let path = dir.join("server.pem");
    match fs::read(&path) {
        Ok(pem) => return Ok((path, pem)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(TlsError::Read { path, source }),
    }
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { path, source }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_err(dir))?;
    // The directory may have existed with a looser mode.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(write_err(dir))?;
    let generated = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    let pem = format!(
        "{}{}",
        generated.cert.pem(),
        generated.signing_key.serialize_pem()
    );
    // A private temporary name, then rename: concurrent first starts each
    // install a complete pair (the last one stays), and a crash leaves none
    // half-written. Each uses the pair it generated.
    let tmp = dir.join(format!(
        "server.pem.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    write_file(&tmp, pem.as_bytes(), 0o600).map_err(write_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(write_err(&path))?;
    tracing::info!(event = "tls_generated", cert = %path.display(), "generated a self-signed TLS certificate for clients");
    Ok((path, pem.into_bytes()))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: format!("no private key: {e}"),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(path, &read(path)?)
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("bad certificate: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// How the proxy does TLS with one target's upstream.
#[derive(Clone)]
pub struct UpstreamTlsConnector {
    /// rustls client.
    connector: TlsConnector,
    /// Name to verify (and send as SNI when it is a DNS name); `None`: the
    /// upstream address.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for UpstreamTlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl UpstreamTlsConnector {
    /// The connector.
    pub fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The name checked for a connection to `addr`.
    pub fn server_name(&self, addr: SocketAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }
}

/// Connectors for every target with `tls` other than `disable`.
pub fn upstream_connectors(
    config: &Config,
) -> Result<HashMap<String, UpstreamTlsConnector>, TlsError> {
    let mut out = HashMap::new();
    for target in &config.targets {
        if let Some(c) = upstream_connector(target)? {
            out.insert(target.name.clone(), c);
        }
    }
    Ok(out)
}

fn upstream_connector(target: &Target) -> Result<Option<UpstreamTlsConnector>, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let client = match target.tls {
        UpstreamTls::Disable => return Ok(None),
        UpstreamTls::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth(),
        UpstreamTls::VerifyFull => {
            let mut roots = RootCertStore::empty();
            let mut configured = Vec::new();
            if let Some(path) = &target.tls_ca_file {
                for cert in read_certs(path)? {
                    roots.add(cert.clone())?;
                    configured.push(cert);
                }
            } else {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
            if roots.is_empty() {
                return Err(TlsError::NoRoots {
                    target: target.name.clone(),
                });
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(VerifyFull {
                    webpki,
                    configured,
                    handshake: NoVerification(provider()),
                }))
                .with_no_client_auth()
        }
    };
    let server_name = match &target.tls_server_name {
        Some(name) => {
            Some(
                ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName {
                    target: target.name.clone(),
                    name: name.clone(),
                })?,
            )
        }
        None => None,
    };
    Ok(Some(UpstreamTlsConnector {
        connector: TlsConnector::from(Arc::new(client)),
        server_name,
    }))
}

/// `tls = "verify-full"`: the chain to a trusted root and the server name,
/// as webpki checks them; and, as libpq (OpenSSL) accepts it, a server
/// certificate that is itself one of the roots in `tls_ca_file` — what
/// PostgreSQL's documented `openssl req -new -x509` recipe makes (a
/// self-signed certificate with `CA:TRUE`, which webpki refuses as an end
/// entity). That certificate is trusted by being byte for byte the
/// configured one; its validity period and the server name are still
/// checked, and the handshake signature proves the server holds its key.
#[derive(Debug)]
struct VerifyFull {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    /// The certificates of `tls_ca_file` (none with the system roots: a
    /// public CA's own certificate is never a database's).
    configured: Vec<CertificateDer<'static>>,
    /// Handshake signatures, as with `require`.
    handshake: NoVerification,
}

impl VerifyFull {
    fn configured_root(
        &self,
        cert: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        use rustls::CertificateError;
        let bad = |e: CertificateError| rustls::Error::InvalidCertificate(e);
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|_| bad(CertificateError::BadEncoding))?;
        let validity = parsed.validity();
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < validity.not_before.timestamp() {
            return Err(bad(CertificateError::NotValidYet));
        }
        if now > validity.not_after.timestamp() {
            return Err(bad(CertificateError::Expired));
        }
        let ee = webpki::EndEntityCert::try_from(cert)
            .map_err(|_| bad(CertificateError::BadEncoding))?;
        ee.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| bad(CertificateError::NotValidForName))
    }
}

impl ServerCertVerifier for VerifyFull {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(e)
                if self
                    .configured
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                // The configured root itself; any other failure stands.
                self.configured_root(end_entity, server_name, now).map_err(|own| {
                    tracing::debug!(webpki = %e, "the server's certificate is the configured root");
                    own
                })?;
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    // Handshake signatures: checked as `require` checks them.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.handshake.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.handshake.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.handshake.supported_verify_schemes()
    }
}

/// `tls = "require"`: encrypt, accept any certificate (libpq's
/// `sslmode=require`). Handshake signatures are still checked, so the peer
/// holds the key of the certificate it sent.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn self_signed_is_generated_once_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(
            Path::new("c.toml"),
            &format!(
                "state_dir = \"{}\"\n[[target]]\nname = \"db\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        client_acceptor(&config).unwrap();
        let tls = dir.path().join("tls");
        assert_eq!(fs::metadata(&tls).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(tls.join("server.pem")).unwrap().mode() & 0o777,
            0o600
        );
        let first = fs::read(tls.join("server.pem")).unwrap();
        client_acceptor(&config).unwrap();
        assert_eq!(
            first,
            fs::read(tls.join("server.pem")).unwrap(),
            "reused, not regenerated"
        );
        // Concurrent first starts do not trip over each other.
        fs::remove_file(tls.join("server.pem")).unwrap();
        std::thread::scope(|s| {
            let a = s.spawn(|| client_acceptor(&config).map(|_| ()));
            let b = s.spawn(|| client_acceptor(&config).map(|_| ()));
            a.join().unwrap().unwrap();
            b.join().unwrap().unwrap();
        });
        assert_eq!(
            fs::read_dir(&tls).unwrap().count(),
            1,
            "no temporary files left"
        );
    }

    /// A certificate for `name`; `ca`: with `CA:TRUE` (what `openssl req
    /// -new -x509` makes, PostgreSQL's documented recipe); `expired`: valid
    /// only in 2020; `issuer`: signed by that CA instead of by itself.
    fn cert(
        name: &str,
        ca: bool,
        expired: bool,
        issuer: Option<&rcgen::Issuer<'_, &rcgen::KeyPair>>,
    ) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = match issuer {
            None => params.self_signed(&key).unwrap(),
            Some(issuer) => params.signed_by(&key, issuer).unwrap(),
        };
        (cert, key)
    }

    /// A handshake of our verify-full connector (CA file `ca`, server name
    /// `name`) with a server presenting `chain`.
    fn handshake(
        ca: &[&rcgen::Certificate],
        name: &str,
        chain: &[&rcgen::Certificate],
        key: &rcgen::KeyPair,
    ) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        fs::write(&ca_file, ca.iter().map(|c| c.pem()).collect::<String>()).unwrap();
        let config = Config::parse(
            Path::new("c.toml"),
            &format!(
                "[[target]]\nname = \"db\"\ntls = \"verify-full\"\ntls_ca_file = \"{}\"\ntls_server_name = \"{name}\"\n",
                ca_file.display()
            ),
        )
        .unwrap();
        let connectors = upstream_connectors(&config).unwrap();
        let up = connectors["db"].clone();
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                chain.iter().map(|c| c.der().clone()).collect(),
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (c, s) = tokio::io::duplex(64 * 1024);
            let srv = tokio::spawn(async move { acceptor.accept(s).await.map(|_| ()) });
            let name = up.server_name("127.0.0.1:5432".parse().unwrap());
            let client = up
                .connector()
                .connect(name, c)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            let _ = srv.await;
            client
        })
    }

    #[test]
    fn verify_full_accepts_the_configured_self_signed_certificate_like_libpq() {
        let own = cert("db.internal", true, false, None);
        assert_eq!(
            handshake(&[&own.0], "db.internal", &[&own.0], &own.1),
            Ok(())
        );
        // Still the server's name ...
        let e = handshake(&[&own.0], "other.internal", &[&own.0], &own.1).unwrap_err();
        assert!(
            e.contains("not valid for") || e.contains("NotValidForName"),
            "{e}"
        );
        // ... still in its validity period ...
        let old = cert("db.internal", true, true, None);
        let e = handshake(&[&old.0], "db.internal", &[&old.0], &old.1).unwrap_err();
        assert!(e.to_lowercase().contains("expired"), "{e}");
        // ... and only the configured certificate: another self-signed one
        // for the same name is refused.
        let other = cert("db.internal", true, false, None);
        assert!(handshake(&[&own.0], "db.internal", &[&other.0], &other.1).is_err());
        // A self-signed certificate without CA:TRUE, configured as the root.
        let leafy = cert("db.internal", false, false, None);
        assert_eq!(
            handshake(&[&leafy.0], "db.internal", &[&leafy.0], &leafy.1),
            Ok(())
        );
    }

    #[test]
    fn verify_full_checks_a_chain_to_the_configured_ca() {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = (ca_params.self_signed(&ca_key).unwrap(), ());
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = cert("db.internal", false, false, Some(&issuer));
        assert_eq!(
            handshake(&[&ca.0], "db.internal", &[&leaf.0], &leaf.1),
            Ok(())
        );
        assert!(handshake(&[&ca.0], "other.internal", &[&leaf.0], &leaf.1).is_err());
        let stranger = cert("Other CA", true, false, None);
        assert!(handshake(&[&stranger.0], "db.internal", &[&leaf.0], &leaf.1).is_err());
    }

    #[test]
    fn verify_full_with_a_missing_ca_file_is_an_error() {
        let config = Config::parse(
            Path::new("c.toml"),
            "[[target]]\nname = \"db\"\ntls = \"verify-full\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
        )
        .unwrap();
        let e = upstream_connectors(&config).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
