//! TLS for the gRPC listeners and the connections a binary makes, with etcd's flags: the
//! client set (`--cert-file --key-file --trusted-ca-file --client-cert-auth --auto-tls`) and
//! the peer set (the same with `--peer-`). The listener rules are secure by default: a
//! listener that is not on loopback must be TLS (and, for peers, mutual TLS against a CA), or
//! run plaintext only behind a flag whose name says what it gives up (logged at start).

use std::path::{Path, PathBuf};

use clap::ArgAction;
use mango_tls::{DevCa, GrpcClientTls, Identity, Roots, Verify};

use crate::listen::ListenUrl;

/// etcd's client TLS flags.
#[derive(Clone, Debug, Default, clap::Args, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClientTlsFlags {
    /// PEM certificate (chain) served on `https://` client URLs, and presented when this
    /// member connects to other members' client URLs.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    /// PEM key of --cert-file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (with --client-cert-auth),
    /// and that other members' `https://` client URLs are checked against.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require every client to present a certificate that chains to --trusted-ca-file; its
    /// common name is the user (etcd's rule).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub client_cert_auth: bool,
    /// Serve `https://` client URLs with a self-signed certificate made under the data dir
    /// when no --cert-file is given (encrypts; authenticates nobody).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub auto_tls: bool,
}

/// etcd's peer TLS flags.
#[derive(Clone, Debug, Default, clap::Args, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PeerTlsFlags {
    /// PEM certificate (chain) for peer traffic, served and presented to other members; it
    /// must name this member's peer URL host (a DNS name or IP address).
    #[arg(long)]
    pub peer_cert_file: Option<PathBuf>,
    /// PEM key of --peer-cert-file.
    #[arg(long)]
    pub peer_key_file: Option<PathBuf>,
    /// PEM CA certificates the other members' peer certificates chain to (the cluster CA).
    #[arg(long)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Require every peer to present a certificate that chains to --peer-trusted-ca-file.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub peer_client_cert_auth: bool,
    /// Serve peer traffic with a self-signed certificate made under the data dir when no
    /// --peer-cert-file is given (encrypts; authenticates nobody).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub peer_auto_tls: bool,
}

/// Why TLS could not be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A certificate, key or CA could not be loaded or made.
    #[error(transparent)]
    Tls(#[from] mango_tls::TlsError),
    /// Flags that do not go together.
    #[error("{0}")]
    Flags(String),
    /// A listener the rules refuse.
    #[error("{0}")]
    Refused(String),
}

/// One channel's TLS material as the flags give it.
#[derive(Clone, Debug, Default)]
pub struct TlsMaterial {
    /// What this end proves itself with.
    pub identity: Option<Identity>,
    /// The CAs the other end must chain to.
    pub roots: Option<Roots>,
    /// Client certificates are required (and verified against `roots`).
    pub client_cert_auth: bool,
    /// The identity is a self-signed auto-TLS one: connections out do not verify the server.
    pub auto: bool,
}

/// Loads `cert`/`key`/`ca` as the flag names say, or makes an auto-TLS certificate under
/// `auto_dir` for `hosts`.
#[allow(clippy::too_many_arguments)]
fn material(
    prefix: &str,
    cert: Option<&Path>,
    key: Option<&Path>,
    ca: Option<&Path>,
    client_cert_auth: bool,
    auto_tls: bool,
    auto_dir: &Path,
    hosts: &[String],
) -> Result<TlsMaterial, TlsSetupError> {
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some(Identity::from_pem_files(c, k)?),
        (None, None) if auto_tls => {
            let ca = DevCa::load_or_create(auto_dir, "mango auto-tls")?;
            let (c, k) = ca.issue_files(auto_dir, "cert", "mango", hosts)?;
            Some(Identity::from_pem_files(&c, &k)?)
        }
        (None, None) => None,
        _ => {
            return Err(TlsSetupError::Flags(format!(
                "--{prefix}cert-file and --{prefix}key-file go together"
            )));
        }
    };
    let roots = ca.map(Roots::from_pem_file).transpose()?;
    if client_cert_auth && roots.is_none() {
        return Err(TlsSetupError::Flags(format!(
            "--{prefix}client-cert-auth needs --{prefix}trusted-ca-file"
        )));
    }
    Ok(TlsMaterial {
        auto: auto_tls && cert.is_none(),
        identity,
        roots,
        client_cert_auth,
    })
}

impl ClientTlsFlags {
    /// The material these flags name (auto-TLS certificates under `data_dir/fixtures/client`,
    /// etcd's place for them).
    pub fn material(
        &self,
        data_dir: &Path,
        hosts: &[String],
    ) -> Result<TlsMaterial, TlsSetupError> {
        material(
            "",
            self.cert_file.as_deref(),
            self.key_file.as_deref(),
            self.trusted_ca_file.as_deref(),
            self.client_cert_auth,
            self.auto_tls,
            &data_dir.join("fixtures/client"),
            hosts,
        )
    }
}

impl PeerTlsFlags {
    /// The material these flags name (auto-TLS under `data_dir/fixtures/peer`).
    pub fn material(
        &self,
        data_dir: &Path,
        hosts: &[String],
    ) -> Result<TlsMaterial, TlsSetupError> {
        material(
            "peer-",
            self.peer_cert_file.as_deref(),
            self.peer_key_file.as_deref(),
            self.peer_trusted_ca_file.as_deref(),
            self.peer_client_cert_auth,
            self.peer_auto_tls,
            &data_dir.join("fixtures/peer"),
            hosts,
        )
    }
}

impl TlsMaterial {
    /// Whether connections to this listener are authenticated at the transport (mutual TLS
    /// against a CA).
    pub fn authenticates_peers(&self) -> bool {
        self.identity.is_some() && self.client_cert_auth && self.roots.is_some()
    }

    /// tonic's server configuration, if there is an identity to serve.
    pub fn server_config(&self) -> Option<tonic::transport::ServerTlsConfig> {
        let id = self.identity.as_ref()?;
        let mut config = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&id.cert_pem, &id.key_pem),
        );
        if self.client_cert_auth
            && let Some(roots) = &self.roots
        {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(&roots.pem))
                .client_auth_optional(false);
        }
        Some(config)
    }

    /// tonic's client configuration for `https://` URLs of this channel (verified against
    /// the CAs, presenting the identity); `None` without CAs.
    pub fn tonic_client_config(&self) -> Option<tonic::transport::ClientTlsConfig> {
        let roots = self.roots.as_ref()?;
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&roots.pem));
        if let Some(id) = &self.identity {
            config = config.identity(tonic::transport::Identity::from_pem(
                &id.cert_pem,
                &id.key_pem,
            ));
        }
        Some(config)
    }

    /// How to connect out to `https://` URLs of this channel: verify against the CAs (none
    /// given, or auto-TLS: no verification, as etcd's auto-TLS does), present the identity.
    pub fn client(&self) -> Result<GrpcClientTls, TlsSetupError> {
        let verify = match (&self.roots, self.auto) {
            (Some(roots), false) => Verify::Roots(roots.clone()),
            _ => Verify::Insecure,
        };
        Ok(GrpcClientTls::new(&verify, self.identity.as_ref())?)
    }
}

/// Checks the listener rules for `urls` of one channel. `https://` URLs need an identity;
/// a URL off loopback needs TLS, and when `mutual` also client certificates against a CA;
/// otherwise it is refused unless `insecure_flag` (named `flag_name`) is set, which logs a
/// warning naming the risk.
pub fn check_listeners(
    what: &str,
    urls: &[ListenUrl],
    material: &TlsMaterial,
    mutual: bool,
    insecure: bool,
    flag_name: &str,
) -> Result<(), TlsSetupError> {
    for url in urls {
        if url.tls && material.identity.is_none() {
            return Err(TlsSetupError::Flags(format!(
                "{what} {}: https:// needs a certificate (the cert-file/key-file flags or auto-tls)",
                url.url
            )));
        }
        if url.is_loopback() {
            continue;
        }
        let safe = url.tls && (!mutual || material.authenticates_peers());
        if safe {
            continue;
        }
        let gap = if url.tls {
            "does not authenticate its peers (no client-cert-auth against a trusted CA)"
        } else {
            "is plaintext"
        };
        if !insecure {
            return Err(TlsSetupError::Refused(format!(
                "{what} {} is not on loopback and {gap}; set up TLS, or pass --{flag_name} to \
                 accept that anyone who reaches it can talk to it",
                url.url
            )));
        }
        tracing::warn!(
            url = %url.url,
            "--{flag_name}: {what} {gap}; anyone who can reach it can talk to this member"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(s: &str) -> Vec<ListenUrl> {
        ListenUrl::parse_list(s).unwrap_or_default()
    }

    #[test]
    fn listeners_off_loopback_need_tls_or_the_flag() -> Result<(), Box<dyn std::error::Error>> {
        let none = TlsMaterial::default();
        check_listeners("peer", &urls("http://127.0.0.1:1"), &none, true, false, "x")?;
        assert!(
            check_listeners("peer", &urls("http://10.0.0.1:1"), &none, true, false, "x").is_err()
        );
        check_listeners("peer", &urls("http://10.0.0.1:1"), &none, true, true, "x")?;
        assert!(
            check_listeners("peer", &urls("https://127.0.0.1:1"), &none, true, true, "x").is_err()
        );

        let dir = tempfile::tempdir()?;
        let ca = DevCa::load_or_create(dir.path(), "t")?;
        let id = ca.issue("m", &["10.0.0.1".into()])?;
        let server_only = TlsMaterial {
            identity: Some(id.clone()),
            ..Default::default()
        };
        // Clients: TLS is enough; peers: mutual TLS is required.
        check_listeners(
            "client",
            &urls("https://10.0.0.1:1"),
            &server_only,
            false,
            false,
            "x",
        )?;
        assert!(
            check_listeners(
                "peer",
                &urls("https://10.0.0.1:1"),
                &server_only,
                true,
                false,
                "x"
            )
            .is_err()
        );
        let mutual = TlsMaterial {
            identity: Some(id),
            roots: Some(ca.roots()?),
            client_cert_auth: true,
            auto: false,
        };
        check_listeners(
            "peer",
            &urls("https://10.0.0.1:1"),
            &mutual,
            true,
            false,
            "x",
        )?;
        Ok(())
    }

    #[test]
    fn flags_that_do_not_go_together_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let half = ClientTlsFlags {
            cert_file: Some(dir.path().join("c")),
            ..Default::default()
        };
        assert!(matches!(
            half.material(dir.path(), &[]),
            Err(TlsSetupError::Flags(_))
        ));
        let auth_without_ca = PeerTlsFlags {
            peer_client_cert_auth: true,
            ..Default::default()
        };
        assert!(auth_without_ca.material(dir.path(), &[]).is_err());
        let auto = ClientTlsFlags {
            auto_tls: true,
            ..Default::default()
        };
        let m = auto.material(dir.path(), &["127.0.0.1".into()])?;
        assert!(m.identity.is_some() && m.auto && !m.authenticates_peers());
        Ok(())
    }
}
