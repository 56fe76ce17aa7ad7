//! TLS material for both ends, and the QUIC configurations built from it (mango-tls: rustls
//! with ring only, TLS 1.3 as QUIC requires, ALPN [`ALPN`]).
//!
//! Both ends authenticate: a server given client CAs ([`ServerTls::require_clients`]) accepts
//! only followers that present a certificate chaining to them; a follower checks the server
//! against its CAs and presents its own certificate ([`ClientTls::with_identity`]).

use std::path::Path;
use std::sync::{Arc, Once};

use mango_tls::{Identity, Roots, Verify};

use crate::error::TlsError;

/// The ALPN protocol of the log stream.
pub const ALPN: &[u8] = b"mango-log/1";

/// The development certificate's file under the data dir.
pub const DEV_CERT_FILE: &str = "logstream.crt";
/// Its key.
pub const DEV_KEY_FILE: &str = "logstream.key";

fn config_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// What a log-stream server proves itself with, and whom it accepts.
#[derive(Clone)]
pub struct ServerTls {
    identity: Identity,
    /// Followers must present a certificate chaining to these (mutual TLS); `None`: anyone
    /// who reaches the port may follow (only behind an insecure flag).
    clients: Option<Roots>,
}

impl ServerTls {
    /// From a PEM certificate chain and key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self::new(Identity::from_pem_files(cert, key)?))
    }

    /// From an identity.
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            clients: None,
        }
    }

    /// A self-signed development certificate kept in `dir` ([`DEV_CERT_FILE`], made on
    /// first use), valid for `names` and for localhost; followers trust the file itself.
    pub fn dev(dir: &Path, names: &[String]) -> Result<Self, TlsError> {
        let stem = DEV_CERT_FILE.trim_end_matches(".crt");
        Ok(Self::new(mango_tls::self_signed_files(dir, stem, names)?))
    }

    /// Require followers to present a certificate chaining to `roots`.
    pub fn require_clients(mut self, roots: Roots) -> Self {
        self.clients = Some(roots);
        self
    }

    /// Whether followers must authenticate.
    pub fn authenticates_clients(&self) -> bool {
        self.clients.is_some()
    }

    /// The certificate chain, as PEM.
    pub fn cert_pem(&self) -> String {
        self.identity.cert_pem.clone()
    }

    pub(crate) fn quic_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let config =
            mango_tls::server_config(&self.identity, self.clients.as_ref(), &[ALPN], true)?;
        let crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(config).map_err(config_err)?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }
}

/// How a follower checks its upstream, and what it proves itself with.
#[derive(Clone)]
pub struct ClientTls {
    verify: Verify,
    identity: Option<Identity>,
    server_name: Option<String>,
}

impl ClientTls {
    /// Trust the CA (or certificate) in a PEM file.
    pub fn trust_pem_file(ca: &Path) -> Result<Self, TlsError> {
        Ok(Self::trust(Roots::from_pem_file(ca)?))
    }

    /// Trust the CAs in PEM text.
    pub fn trust_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Ok(Self::trust(Roots::from_pem(&String::from_utf8_lossy(pem))?))
    }

    /// Trust `roots`.
    pub fn trust(roots: Roots) -> Self {
        ClientTls {
            verify: Verify::Roots(roots),
            identity: None,
            server_name: None,
        }
    }

    /// Accept any server certificate: the stream is encrypted but the upstream is not
    /// authenticated. Only behind a flag that says so.
    pub fn insecure_dev() -> Self {
        static WARN: Once = Once::new();
        WARN.call_once(|| {
            tracing::warn!(
                "logstream client accepts any server certificate (insecure: the upstream is \
                 not authenticated)"
            );
        });
        ClientTls {
            verify: Verify::Insecure,
            identity: None,
            server_name: None,
        }
    }

    /// Present `identity` to servers that require client certificates.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Check the server's certificate against `name` instead of its IP address.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    pub(crate) fn server_name(&self, ip: std::net::IpAddr) -> String {
        self.server_name.clone().unwrap_or_else(|| ip.to_string())
    }

    pub(crate) fn quic_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let config = mango_tls::client_config(&self.verify, self.identity.as_ref(), &[ALPN], true)?;
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(config).map_err(config_err)?;
        Ok(quinn::ClientConfig::new(Arc::new(crypto)))
    }
}
