//! The voter's TLS: etcd's client and peer flags turned into material, the listener rules
//! checked (mango-boot's: off loopback, clients need TLS and peers mutual TLS, unless a flag
//! naming the risk says otherwise), and the log stream's server side (mutual TLS against the
//! cluster CA; without a CA only on loopback, or behind `--insecure-unauthenticated-learners`).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use mango_boot::listen::ListenUrl;
use mango_boot::tls::{TlsMaterial, check_listeners};
use mango_consensus::transport::PeerLink;
use mango_tls::Roots;

use crate::config::Config;

/// The voter's TLS material, checked against its listeners.
#[derive(Clone, Debug)]
pub struct Security {
    /// Client channel (`--cert-file` family).
    pub client: TlsMaterial,
    /// Peer channel (`--peer-cert-file` family).
    pub peer: TlsMaterial,
}

/// The hosts a member's certificates should name: those of its listen and advertise URLs.
fn hosts(urls: &[String]) -> Vec<String> {
    let mut out: Vec<String> = urls.iter().filter_map(|u| mango_tls::url_host(u)).collect();
    out.sort();
    out.dedup();
    out
}

impl Security {
    /// Loads the material and checks the rules for `client_urls` and `peer_urls`.
    pub fn new(
        config: &Config,
        client_urls: &[ListenUrl],
        peer_urls: &[ListenUrl],
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let client_hosts = hosts(&[config.client_listen(), config.client_advertise()].concat());
        let peer_hosts = hosts(&[config.peer_listen(), config.peer_advertise()].concat());
        let client = config.client_tls.material(data_dir, &client_hosts)?;
        let peer = config.peer_tls.material(data_dir, &peer_hosts)?;
        check_listeners(
            "--listen-client-urls",
            client_urls,
            &client,
            false,
            config.insecure_plaintext_clients,
            "insecure-plaintext-clients",
        )?;
        check_listeners(
            "--listen-peer-urls",
            peer_urls,
            &peer,
            true,
            config.insecure_unauthenticated_peers,
            "insecure-unauthenticated-peers",
        )?;
        Ok(Self { client, peer })
    }

    /// How this member reaches its peers.
    pub fn peer_link(
        &self,
        local_ip: Option<std::net::IpAddr>,
        cluster_id: u64,
    ) -> anyhow::Result<PeerLink> {
        let tls = if self.peer.identity.is_some() || self.peer.roots.is_some() {
            Some(self.peer.client()?)
        } else {
            None
        };
        Ok(PeerLink {
            local_ip,
            tls,
            cluster_id,
        })
    }

    /// A gRPC server for one listen URL of `material`'s channel: TLS when the URL is
    /// `https://`.
    pub fn server_for(
        url: &ListenUrl,
        material: &TlsMaterial,
        server: mango_boot::grpc::GrpcServer,
    ) -> anyhow::Result<mango_boot::grpc::GrpcServer> {
        if !url.tls {
            return Ok(server);
        }
        let tls = material
            .server_config()
            .with_context(|| format!("{}: https:// needs a certificate", url.url))?;
        server
            .tls_config(tls)
            .with_context(|| format!("{}: TLS configuration", url.url))
    }

    /// The log stream's server side on `addr`: the `--logstream-cert` pair, else the peer
    /// certificate, else a development certificate under `member_dir`; followers must present
    /// a certificate chaining to `--logstream-trusted-ca-file` (else the peer CA).
    pub fn logstream(
        &self,
        config: &Config,
        member_dir: &Path,
        addr: SocketAddr,
    ) -> anyhow::Result<mango_logstream::ServerTls> {
        let tls = match (
            &config.logstream_cert,
            &config.logstream_key,
            &self.peer.identity,
        ) {
            (Some(cert), Some(key), _) => mango_logstream::ServerTls::from_pem_files(cert, key)?,
            (None, None, Some(identity)) if !self.peer.auto => {
                mango_logstream::ServerTls::new(identity.clone())
            }
            _ => mango_logstream::ServerTls::dev(member_dir, &[addr.ip().to_string()])?,
        };
        let clients: Option<Roots> = match &config.logstream_trusted_ca_file {
            Some(path) => Some(Roots::from_pem_file(path)?),
            None => self.peer.roots.clone(),
        };
        match clients {
            Some(roots) => Ok(tls.require_clients(roots)),
            None if addr.ip().is_loopback() => {
                tracing::warn!(
                    %addr,
                    "the log stream authenticates no learner (no --logstream-trusted-ca-file or \
                     --peer-trusted-ca-file): only processes on this host can reach it"
                );
                Ok(tls)
            }
            None if config.insecure_unauthenticated_learners => {
                tracing::warn!(
                    %addr,
                    "--insecure-unauthenticated-learners: anyone who reaches the log stream can \
                     read every key and every change"
                );
                Ok(tls)
            }
            None => anyhow::bail!(
                "--listen-logstream-addr {addr} is not on loopback and no CA authenticates \
                 learners: give --logstream-trusted-ca-file (or --peer-trusted-ca-file), or pass \
                 --insecure-unauthenticated-learners to let anyone who reaches it read every key"
            ),
        }
    }
}
