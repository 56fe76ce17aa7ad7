//! TLS material for both ends, and the QUIC configurations built from it.
//!
//! rustls with ring only (never aws-lc: both together make `ClientConfig::builder()` panic),
//! TLS 1.3 only (QUIC requires it), ALPN [`ALPN`].

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::error::TlsError;

/// The ALPN protocol of this stream; a peer speaking anything else is refused in the handshake.
pub const ALPN: &[u8] = b"mango-log/1";

/// The development certificate's file name inside the directory given to [`ServerTls::dev`].
pub const DEV_CERT_FILE: &str = "logstream.crt";
/// The development key's file name inside the directory given to [`ServerTls::dev`].
pub const DEV_KEY_FILE: &str = "logstream.key";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// A server's certificate chain and private key.
pub struct ServerTls {
    /// The chain presented to clients, leaf first.
    chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    key: PrivateKeyDer<'static>,
    /// The chain as PEM, for [`ServerTls::cert_pem`] (clients of a dev server trust it).
    pem: String,
}

impl ServerTls {
    /// Loads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        Self::from_pem(&cert_pem, &key_pem).map_err(|message| TlsError::Pem {
            path: if message.starts_with("key") {
                key.to_path_buf()
            } else {
                cert.to_path_buf()
            },
            message,
        })
    }

    /// Parses a PEM chain and key held in memory; the error says which one is wrong.
    fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, String> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("certificate: {e}"))?;
        if chain.is_empty() {
            return Err("certificate: no CERTIFICATE block".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key: {e}"))?;
        let pem = String::from_utf8_lossy(cert_pem).into_owned();
        Ok(ServerTls { chain, key, pem })
    }

    /// Loads `dir/logstream.crt` + `dir/logstream.key`, generating a self-signed development
    /// certificate (SANs: `names` (IP addresses become IP SANs), plus `localhost` and
    /// `127.0.0.1`) at first start. The key is written with mode 0600.
    pub fn dev(dir: &Path, names: &[String]) -> Result<Self, TlsError> {
        let cert_path = dir.join(DEV_CERT_FILE);
        let key_path = dir.join(DEV_KEY_FILE);
        if cert_path.exists() && key_path.exists() {
            return Self::from_pem_files(&cert_path, &key_path);
        }
        let mut sans: Vec<String> = names.to_vec();
        for default in ["localhost", "127.0.0.1"] {
            if !sans.iter().any(|n| n == default) {
                sans.push(default.to_string());
            }
        }
        let certified = rcgen::generate_simple_self_signed(sans)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert_pem = certified.cert.pem();
        let key_pem = certified.signing_key.serialize_pem();
        fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        // The key first: a crash between the two leaves no certificate, so the next start
        // generates both again.
        write_atomically(&key_path, key_pem.as_bytes(), 0o600)?;
        write_atomically(&cert_path, cert_pem.as_bytes(), 0o644)?;
        tracing::info!(cert = %cert_path.display(), "generated a self-signed logstream development certificate");
        Self::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).map_err(TlsError::Generate)
    }

    /// The certificate chain as PEM (what a client of a development server can trust).
    pub fn cert_pem(&self) -> String {
        self.pem.clone()
    }

    /// The QUIC server configuration: this certificate, TLS 1.3, ALPN [`ALPN`].
    pub(crate) fn quic_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config_err)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        let crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(config).map_err(config_err)?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }
}

/// How a client checks the server's certificate.
#[derive(Clone)]
enum Verify {
    /// Against these roots (webpki: chain, validity, name).
    Roots(Arc<RootCertStore>),
    /// Not at all (development only).
    Insecure,
}

/// What a client trusts.
#[derive(Clone)]
pub struct ClientTls {
    /// How the server's certificate is checked.
    verify: Verify,
    /// The name the server's certificate must carry; `None`: the upstream's IP address.
    server_name: Option<String>,
}

impl ClientTls {
    /// Trusts the certificates of a PEM file (a CA, or a development server's own certificate).
    pub fn trust_pem_file(ca: &Path) -> Result<Self, TlsError> {
        let pem = read(ca)?;
        Self::trust_pem(&pem).map_err(|e| match e {
            TlsError::Pem { message, .. } => TlsError::Pem {
                path: ca.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Trusts the certificates of PEM text (e.g. [`ServerTls::cert_pem`]).
    pub fn trust_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let bad = |message: String| TlsError::Pem {
            path: PathBuf::from("<memory>"),
            message,
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("no CERTIFICATE block".into()));
        }
        Ok(ClientTls {
            verify: Verify::Roots(Arc::new(roots)),
            server_name: None,
        })
    }

    /// Accepts any server certificate: encrypted but unauthenticated (logs a warning once).
    pub fn insecure_dev() -> Self {
        static WARN: Once = Once::new();
        WARN.call_once(|| {
            tracing::warn!(
                "logstream client accepts any server certificate (insecure development mode)"
            );
        });
        ClientTls {
            verify: Verify::Insecure,
            server_name: None,
        }
    }

    /// Checks the server's certificate for this DNS name (or IP) instead of the upstream's IP
    /// address, for certificates that name hosts rather than addresses.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The name to check for an upstream at `ip`.
    pub(crate) fn server_name(&self, ip: std::net::IpAddr) -> String {
        self.server_name.clone().unwrap_or_else(|| ip.to_string())
    }

    /// The QUIC client configuration: these roots (or none), TLS 1.3, ALPN [`ALPN`].
    pub(crate) fn quic_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?;
        let mut config = match &self.verify {
            Verify::Roots(roots) => builder
                .with_root_certificates(Arc::clone(roots))
                .with_no_client_auth(),
            Verify::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(config).map_err(config_err)?;
        Ok(quinn::ClientConfig::new(Arc::new(crypto)))
    }
}

/// Accepts any certificate but still checks that the server holds its key (handshake
/// signatures), so the session is encrypted to whoever answered.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `path` through a temporary file and a rename, so a reader never sees half a file.
fn write_atomically(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(data).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}
