//! Certificates, keys and trusted CAs, from PEM files or text.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::TlsError;

/// A certificate chain and its private key: what a TLS endpoint proves itself with.
#[derive(Debug)]
pub struct Identity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
    /// The chain as PEM text (for tonic, which takes PEM).
    pub cert_pem: String,
    /// The key as PEM text.
    pub key_pem: String,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_err(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Identity {
    /// From a PEM certificate (chain) file and a PEM key file.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = certs(&cert_pem).map_err(|m| pem_err(cert, m))?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| pem_err(key, format!("key: {e}")))?;
        Ok(Self {
            chain,
            key: key_der,
            cert_pem: String::from_utf8_lossy(&cert_pem).into_owned(),
            key_pem: String::from_utf8_lossy(&key_pem).into_owned(),
        })
    }

    /// From PEM text.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let here = PathBuf::from("<memory>");
        let chain = certs(cert_pem.as_bytes()).map_err(|m| pem_err(&here, m))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| pem_err(&here, format!("key: {e}")))?;
        Ok(Self {
            chain,
            key,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        })
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    if chain.is_empty() {
        return Err("certificate: no CERTIFICATE block".into());
    }
    Ok(chain)
}

/// Trusted CA certificates: what the other end's certificate must chain to.
#[derive(Clone, Debug)]
pub struct Roots {
    /// The store rustls verifies against.
    pub store: Arc<RootCertStore>,
    /// The CAs as PEM text (for tonic).
    pub pem: String,
}

impl Roots {
    /// From a PEM file of one or more CA certificates.
    pub fn from_pem_file(path: &Path) -> Result<Self, TlsError> {
        let pem = read(path)?;
        Self::from_pem(&String::from_utf8_lossy(&pem)).map_err(|e| match e {
            TlsError::Pem { message, .. } => pem_err(path, message),
            other => other,
        })
    }

    /// From PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, TlsError> {
        let here = PathBuf::from("<memory>");
        let mut store = RootCertStore::empty();
        for cert in certs(pem.as_bytes()).map_err(|m| pem_err(&here, m))? {
            store
                .add(cert)
                .map_err(|e| pem_err(&here, format!("CA certificate: {e}")))?;
        }
        Ok(Self {
            store: Arc::new(store),
            pem: pem.to_string(),
        })
    }
}

/// The host part of a URL (`scheme://host:port/...`, `host:port`; IPv6 without brackets).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// Whether the (already verified) certificate `cert` is valid for `host` (a DNS name or an
/// IP address, matched against its subject alternative names): how a receiver checks that a
/// peer's certificate belongs to the member whose address it claims.
pub fn valid_for_host(cert: &[u8], host: &str) -> bool {
    let cert = CertificateDer::from(cert);
    let Ok(end) = webpki::EndEntityCert::try_from(&cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(host) else {
        return false;
    };
    end.verify_is_valid_for_subject_name(&name).is_ok()
}
