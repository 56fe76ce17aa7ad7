//! `mango-learner`'s flags, in etcd's style where etcd has the same notion.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::ArgAction;
use clap::Parser;
use mango_boot::CommonFlags;
use mango_boot::tls::ClientTlsFlags;
use serde::Serialize;

/// A learner: applies the committed log streamed from voters (or other learners) and serves
/// reads and watches; writes are forwarded to the voters.
///
/// Every flag can also be set in the environment (`ETCD_<FLAG>` for etcd's flags,
/// `MANGO_<FLAG>` for mango's) or in the `--config-file`; a flag on the command line wins
/// over the environment, which wins over the file.
#[derive(Clone, Debug, Parser, Serialize)]
#[command(name = "mango-learner", version, about)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// A TOML file with these same settings (keys are the flags' long names); the
    /// environment and the command line win over it. Unknown keys are refused.
    #[arg(long)]
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Human-readable name of this learner.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Where the store lives [default: <name>.learner].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// URLs to serve etcd's client API on.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    pub listen_client_urls: String,
    /// Client URLs to advertise [default: the listen URLs].
    #[arg(long)]
    pub advertise_client_urls: Option<String>,
    /// Log-stream addresses (ip:port, comma-separated) of voters or learners to follow; the
    /// first reachable is used, the others on failure. Required.
    #[arg(long, default_value = "")]
    pub upstream: String,
    /// PEM file of the CA (or certificate) the upstreams' log-stream certificates chain to
    /// (the cluster CA). Required, unless --insecure-skip-upstream-verify.
    #[arg(long)]
    pub upstream_ca: Option<PathBuf>,
    /// PEM certificate this learner presents to its upstreams (upstreams off loopback
    /// require one issued by the cluster CA); needs --upstream-key.
    #[arg(long)]
    pub upstream_cert: Option<PathBuf>,
    /// PEM key of --upstream-cert.
    #[arg(long)]
    pub upstream_key: Option<PathBuf>,
    /// Follow upstreams without checking their certificates: anyone who can answer on an
    /// upstream's address can then feed this learner data of their choosing.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub insecure_skip_upstream_verify: bool,
    /// PEM CA certificates that followers of this learner's own log stream must present a
    /// certificate of [default: --upstream-ca].
    #[arg(long)]
    pub logstream_trusted_ca_file: Option<PathBuf>,
    /// Serve this learner's log stream to followers that present no certificate: anyone who
    /// reaches it can then read every key and every change.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub insecure_unauthenticated_learners: bool,
    /// Client TLS (etcd's flags).
    #[command(flatten)]
    #[serde(flatten)]
    pub client_tls: ClientTlsFlags,
    /// Accept `http://` client URLs off loopback: every client request then crosses the
    /// network in plaintext, readable and forgeable by anyone on the path.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub insecure_plaintext_clients: bool,
    /// Serve the log stream onward to other learners on this address (ip:port).
    #[arg(long)]
    pub listen_logstream_addr: Option<SocketAddr>,
    /// PEM certificate and key for the onward log stream [default: a development certificate
    /// generated under the data dir]; needs --logstream-key.
    #[arg(long)]
    pub logstream_cert: Option<PathBuf>,
    /// See --logstream-cert.
    #[arg(long)]
    pub logstream_key: Option<PathBuf>,
    /// Largest request a client may send, in bytes.
    #[arg(long, default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// How often watchers that asked for progress notifications get one, in milliseconds.
    #[arg(long, default_value_t = 600_000, hide = true)]
    pub watch_progress_notify_interval_ms: u64,
    /// Concurrent gRPC streams per client connection (etcd's `--max-concurrent-streams`).
    #[arg(long, default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// etcd's auth flags: a learner checks tokens and passwords from its own copy of the
    /// replicated auth state.
    #[command(flatten)]
    #[serde(flatten)]
    pub auth: mango_boot::auth::AuthFlags,
    /// Logging and gRPC keep-alives, as every mango binary takes them.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
}

impl mango_boot::Layered for Config {
    const ETCD_FLAGS: &'static [&'static str] = &[
        "config-file",
        "name",
        "data-dir",
        "listen-client-urls",
        "advertise-client-urls",
        "max-request-bytes",
        "max-concurrent-streams",
        "log-level",
        "cert-file",
        "key-file",
        "trusted-ca-file",
        "client-cert-auth",
        "auto-tls",
        "auth-token",
        "auth-token-ttl",
        "bcrypt-cost",
    ];

    fn common(&self) -> &CommonFlags {
        &self.common
    }
}

fn split(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

impl Config {
    /// Checks what the flags cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !split(&self.upstream).is_empty(),
            "--upstream is required: the log-stream addresses of voters or learners to follow"
        );
        anyhow::ensure!(
            self.logstream_cert.is_some() == self.logstream_key.is_some(),
            "--logstream-cert and --logstream-key go together"
        );
        anyhow::ensure!(
            self.upstream_cert.is_some() == self.upstream_key.is_some(),
            "--upstream-cert and --upstream-key go together"
        );
        anyhow::ensure!(
            self.upstream_ca.is_some() || self.insecure_skip_upstream_verify,
            "--upstream-ca is required: the CA the upstreams' log-stream certificates chain to \
             (or pass --insecure-skip-upstream-verify to follow whoever answers)"
        );
        self.upstreams()?;
        Ok(())
    }

    /// Where the store lives.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.learner", self.name)))
    }

    /// Client URLs to listen on.
    pub fn client_listen(&self) -> Vec<String> {
        split(&self.listen_client_urls)
    }

    /// Client URLs to advertise.
    pub fn client_advertise(&self) -> Vec<String> {
        self.advertise_client_urls
            .as_deref()
            .map(split)
            .unwrap_or_else(|| self.client_listen())
    }

    /// The upstreams' log-stream addresses (`host:port`, host an IP address or a name; a
    /// name is resolved here, once).
    pub fn upstreams(&self) -> anyhow::Result<Vec<SocketAddr>> {
        use std::net::ToSocketAddrs as _;
        split(&self.upstream)
            .iter()
            .map(|a| {
                let a = a.strip_prefix("quic://").unwrap_or(a);
                if let Ok(addr) = a.parse::<SocketAddr>() {
                    return Ok(addr);
                }
                a.to_socket_addrs()
                    .map_err(|e| anyhow::anyhow!("--upstream {a:?}: expected host:port ({e})"))?
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--upstream {a:?}: resolves to no address"))
            })
            .collect()
    }

    /// This learner's id in response headers: FNV-1a of its name and advertised URLs.
    pub fn member_id(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in std::iter::once(self.name.clone()).chain(self.client_advertise()) {
            for b in part.bytes().chain([0u8]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_parse_and_bad_ones_are_refused() {
        let c = Config::parse_from([
            "mango-learner",
            "--upstream",
            "127.0.0.1:2381, quic://localhost:2382",
        ]);
        let ups = c.upstreams().unwrap_or_default();
        assert_eq!(ups.len(), 2);
        assert_eq!(ups[1].port(), 2382);
        let bad = Config::parse_from(["mango-learner", "--name", "b", "--upstream", "nowhere"]);
        assert!(bad.upstreams().is_err());
        assert_ne!(c.member_id(), bad.member_id());
    }
}
