//! A development certificate authority: one CA key and certificate kept in a folder, issuing
//! certificates for the hosts a member listens on. `scripts/cluster` runs its peers and log
//! streams on certificates from one; etcd's `--auto-tls` and `--peer-auto-tls` make a
//! member-local one. Not for production: the CA key sits beside the data.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::TlsError;
use crate::material::{Identity, Roots};

/// The CA's certificate file in its folder.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA's key file in its folder.
pub const CA_KEY_FILE: &str = "ca.key";

fn generate(e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// A CA that issues certificates. See the module doc.
pub struct DevCa {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// The CA's parameters: the same for a name whenever they are made, so a CA loaded
    /// back from its key issues certificates that chain to the certificate made first.
    fn params(name: &str) -> Result<CertificateParams, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "mango development CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ok(params)
    }

    /// A new CA named `name` (in memory).
    pub fn generate(name: &str) -> Result<Self, TlsError> {
        let params = Self::params(name)?;
        let key = KeyPair::generate().map_err(generate)?;
        let cert = params.self_signed(&key).map_err(generate)?;
        Ok(Self {
            cert_pem: cert.pem(),
            params,
            key,
        })
    }

    /// The CA in `dir` (`ca.crt`, `ca.key`), made and saved there first if it is not. Load it
    /// with the `name` it was made with.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Self, TlsError> {
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        if cert_path.exists() && key_path.exists() {
            let cert_pem =
                String::from_utf8_lossy(&crate::material::read(&cert_path)?).into_owned();
            let key_pem = String::from_utf8_lossy(&crate::material::read(&key_path)?).into_owned();
            let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Pem {
                path: key_path.clone(),
                message: e.to_string(),
            })?;
            let params = Self::params(name)?;
            return Ok(Self {
                params,
                key,
                cert_pem,
            });
        }
        let ca = Self::generate(name)?;
        fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        // The key first: a crash between the two leaves no certificate, so the next start
        // makes both again.
        write_atomically(&key_path, ca.key.serialize_pem().as_bytes(), 0o600)?;
        write_atomically(&cert_path, ca.cert_pem.as_bytes(), 0o644)?;
        tracing::info!(cert = %cert_path.display(), "made a development CA");
        Ok(ca)
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA as trusted roots.
    pub fn roots(&self) -> Result<Roots, TlsError> {
        Roots::from_pem(&self.cert_pem)
    }

    /// A certificate for `common_name`, valid for `hosts` (DNS names or IP addresses; also
    /// `localhost` and 127.0.0.1), for servers and clients alike.
    pub fn issue(&self, common_name: &str, hosts: &[String]) -> Result<Identity, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        let mut all: Vec<String> = hosts.to_vec();
        for default in ["localhost", "127.0.0.1"] {
            if !all.iter().any(|h| h == default) {
                all.push(default.to_string());
            }
        }
        params.subject_alt_names = all
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => rcgen::string::Ia5String::try_from(h.as_str())
                    .map(SanType::DnsName)
                    .map_err(generate),
            })
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().map_err(generate)?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(generate)?;
        Identity::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// [`DevCa::issue`], kept in `dir` as `<file_stem>.crt` and `<file_stem>.key` (reused when
    /// both exist): returns the two paths.
    pub fn issue_files(
        &self,
        dir: &Path,
        file_stem: &str,
        common_name: &str,
        hosts: &[String],
    ) -> Result<(PathBuf, PathBuf), TlsError> {
        let cert = dir.join(format!("{file_stem}.crt"));
        let key = dir.join(format!("{file_stem}.key"));
        if cert.exists() && key.exists() {
            return Ok((cert, key));
        }
        let id = self.issue(common_name, hosts)?;
        fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        write_atomically(&key, id.key_pem.as_bytes(), 0o600)?;
        write_atomically(&cert, id.cert_pem.as_bytes(), 0o644)?;
        Ok((cert, key))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, with `mode`.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// A self-signed certificate for `names` (and localhost), kept in `dir` as
/// `<file_stem>.crt` and `<file_stem>.key` (reused when both exist): a development server
/// whose certificate clients trust directly.
pub fn self_signed_files(
    dir: &Path,
    file_stem: &str,
    names: &[String],
) -> Result<Identity, TlsError> {
    let cert = dir.join(format!("{file_stem}.crt"));
    let key = dir.join(format!("{file_stem}.key"));
    if cert.exists() && key.exists() {
        return Identity::from_pem_files(&cert, &key);
    }
    let mut sans: Vec<String> = names.to_vec();
    for default in ["localhost", "127.0.0.1"] {
        if !sans.iter().any(|n| n == default) {
            sans.push(default.to_string());
        }
    }
    let certified = rcgen::generate_simple_self_signed(sans).map_err(generate)?;
    let (cert_pem, key_pem) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    // The key first: a crash between the two leaves no certificate, so the next start makes
    // both again.
    write_atomically(&key, key_pem.as_bytes(), 0o600)?;
    write_atomically(&cert, cert_pem.as_bytes(), 0o644)?;
    tracing::info!(cert = %cert.display(), "made a self-signed development certificate");
    Identity::from_pem(&cert_pem, &key_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_issues_certificates_for_hosts_and_is_kept() -> Result<(), TlsError> {
        let dir = tempfile::tempdir().map_err(|e| TlsError::Generate(e.to_string()))?;
        let ca = DevCa::load_or_create(dir.path(), "test")?;
        let id = ca.issue("m1", &["node-1.example".into(), "10.0.0.1".into()])?;
        let leaf = id
            .leaf()
            .ok_or_else(|| TlsError::Generate("no leaf".into()))?;
        assert!(crate::valid_for_host(leaf, "node-1.example"));
        assert!(crate::valid_for_host(leaf, "10.0.0.1"));
        assert!(crate::valid_for_host(leaf, "127.0.0.1"));
        assert!(!crate::valid_for_host(leaf, "node-2.example"));
        assert_eq!(
            crate::url_host("https://[::1]:2380").as_deref(),
            Some("::1")
        );
        assert_eq!(
            crate::url_host("http://node-1:2380/x").as_deref(),
            Some("node-1")
        );
        assert_eq!(crate::common_name(leaf).as_deref(), Some("m1"));
        let again = DevCa::load_or_create(dir.path(), "test")?;
        assert_eq!(again.cert_pem(), ca.cert_pem());
        let (c, k) = again.issue_files(dir.path(), "m2", "m2", &[])?;
        assert!(c.exists() && k.exists());
        Identity::from_pem_files(&c, &k)?;
        Ok(())
    }
}
