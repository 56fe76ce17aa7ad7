//! `mango-proxy`'s settings: flags, or the same keys (kebab-case) in a TOML file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgAction, Parser};
use mango_boot::CommonFlags;
use mango_boot::listen::ListenUrl;
use mango_boot::tls::{ClientTlsFlags, TlsMaterial, check_listeners};
use mango_tls::{GrpcClientTls, Identity, Roots, Verify};
use serde::Serialize;

/// `mango-proxy`: accepts etcd v3 gRPC and routes each request by its consistency level:
/// writes and linearizable reads to the Raft leader, stale, bounded and learner-linearizable
/// reads and watches to the learners.
///
/// Every flag can also be set in the environment (`MANGO_<FLAG>`) or in the
/// `--config-file`; a flag on the command line wins over the environment, which wins over
/// the file.
#[derive(Clone, Debug, Parser, Serialize)]
#[command(name = "mango-proxy", version, about)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// A TOML file with these same settings (keys are the flags' long names); the
    /// environment and the command line win over it. Unknown keys are refused.
    #[arg(long)]
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// URL to serve etcd's client API on (a sidecar listens on localhost); `https://` serves
    /// TLS with --cert-file/--key-file (or --auto-tls). etcd grpc-proxy's `--listen-addr` is
    /// accepted as its name; a bare `host:port` is `https://` when a certificate is given, as
    /// grpc-proxy serves it, else `http://`.
    #[arg(long, alias = "listen-addr", default_value = "http://127.0.0.1:2379")]
    pub listen_client_urls: String,
    /// Client URLs of the voters (comma-separated): writes and linearizable reads. etcd
    /// grpc-proxy's `--endpoints` is accepted as its name; a bare `host:port` is `https://`
    /// when --cacert, --cert or --insecure-skip-tls-verify is given (as etcd's client does),
    /// else `http://`.
    #[arg(long, alias = "endpoints", default_value = "")]
    pub voters: String,
    /// Client URLs of the learners (comma-separated): stale, bounded and
    /// learner-linearizable reads, and watches. Without learners these go to the voters.
    #[arg(long, default_value = "")]
    pub learners: String,
    /// How long one client request may take through the proxy, retries included, in
    /// milliseconds (streams and blocking lock/election calls are not bounded by it).
    #[arg(long, default_value_t = 5_000)]
    pub request_timeout_ms: u64,
    /// Unary requests in flight through the proxy at most; beyond it requests are refused
    /// with etcd's `ResourceExhausted` "etcdserver: too many requests".
    #[arg(long, default_value_t = 4_096)]
    pub max_concurrent_requests: usize,
    /// Streams (watch, lease keep-alive, snapshot, observe) and calls that block until
    /// granted (lock, campaign) open through the proxy at most, counted apart from unary
    /// requests and for their whole life; beyond it they are refused with the same error.
    #[arg(long, default_value_t = 16_384)]
    pub max_concurrent_streams: usize,
    /// How often each upstream is health-checked (Maintenance.Status), in milliseconds; the
    /// voters' answers also say who leads.
    #[arg(long, default_value_t = 1_000)]
    pub health_interval_ms: u64,
    /// Consecutive failed health checks or transport errors before an upstream is ejected
    /// (it is readmitted by the first health check that succeeds).
    #[arg(long, default_value_t = 1)]
    pub eject_after_failures: u32,
    /// Largest request a client may send, in bytes (etcd's 1.5 MiB plus gRPC overhead is
    /// what upstreams accept; the proxy only bounds decoding).
    #[arg(long, default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Bytes of stale Range answers to cache (0: no cache). Cached answers are dropped as
    /// soon as a watch on the whole key space reports a write to their keys.
    #[arg(long, default_value_t = 0)]
    pub stale_cache_bytes: u64,
    /// TLS towards clients (etcd's flags: --cert-file --key-file --trusted-ca-file
    /// --client-cert-auth --auto-tls).
    #[command(flatten)]
    #[serde(flatten)]
    pub client_tls: ClientTlsFlags,
    /// Accept an `http://` client URL off loopback: every client request (and its auth
    /// token) then crosses the network in plaintext, readable and forgeable on the path.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub insecure_plaintext_clients: bool,
    /// Where --auto-tls keeps its self-signed certificate (etcd grpc-proxy's `--data-dir`).
    #[arg(long, default_value = "default.proxy")]
    pub data_dir: PathBuf,
    /// PEM CA certificates the upstreams' `https://` client certificates must chain to
    /// (etcd grpc-proxy's `--cacert`).
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// PEM certificate the proxy presents to upstreams that require client certificates
    /// (etcd grpc-proxy's `--cert`); needs --key.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// PEM key of --cert (etcd grpc-proxy's `--key`).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Connect to `https://` upstreams without checking their certificates (etcd
    /// grpc-proxy's flag): anyone who can answer on an upstream's address then sees every
    /// request and token and answers it as they like.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub insecure_skip_tls_verify: bool,
    /// Logging and gRPC keep-alives, as every mango binary takes them.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
}

impl mango_boot::Layered for Config {
    const ETCD_FLAGS: &'static [&'static str] = &[
        "log-level",
        "cert-file",
        "key-file",
        "trusted-ca-file",
        "client-cert-auth",
        "auto-tls",
    ];

    fn common(&self) -> &CommonFlags {
        &self.common
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["mango-proxy"])
    }
}

/// The URLs of a comma-separated list; a bare `host:port` gets `scheme`.
fn split(urls: &str, scheme: &str) -> Vec<String> {
    urls.split(',')
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .map(|u| {
            if u.contains("://") {
                u.to_string()
            } else {
                format!("{scheme}://{u}")
            }
        })
        .collect()
}

impl Config {
    /// Settings from the text of a TOML file, with no flags (missing keys take their
    /// defaults; unknown keys are refused).
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(mango_boot::config::from_toml_str(text)?)
    }

    /// Whether the upstream TLS flags are given: a bare upstream `host:port` is then
    /// `https://`, as etcd's client takes it.
    fn upstream_tls_given(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some() || self.insecure_skip_tls_verify
    }

    fn upstream_scheme(&self) -> &'static str {
        if self.upstream_tls_given() {
            "https"
        } else {
            "http"
        }
    }

    /// The voters' client URLs.
    pub fn voter_urls(&self) -> Vec<String> {
        split(&self.voters, self.upstream_scheme())
    }

    /// The learners' client URLs.
    pub fn learner_urls(&self) -> Vec<String> {
        split(&self.learners, self.upstream_scheme())
    }

    /// The URL to listen on. A bare `host:port` (etcd grpc-proxy's `--listen-addr`) is
    /// served with TLS when a certificate is configured, as grpc-proxy does.
    pub fn listen_url(&self) -> anyhow::Result<ListenUrl> {
        let urls = ListenUrl::parse_list(&self.listen_client_urls)?;
        anyhow::ensure!(
            urls.len() == 1,
            "--listen-client-urls: exactly one URL, got {:?}",
            self.listen_client_urls
        );
        let mut url = urls.into_iter().next().context("one URL")?;
        let certificate = self.client_tls.cert_file.is_some() || self.client_tls.auto_tls;
        if certificate && !url.url.contains("://") {
            url.tls = true;
        }
        Ok(url)
    }

    /// The client TLS material (certificate, CA, client-cert-auth), checked against the
    /// listen URL: `https://` needs a certificate, and a URL off loopback needs TLS unless
    /// --insecure-plaintext-clients.
    pub fn client_tls(&self) -> anyhow::Result<TlsMaterial> {
        let url = self.listen_url()?;
        let material = self
            .client_tls
            .material(&self.data_dir, std::slice::from_ref(&url.host))?;
        check_listeners(
            "--listen-client-urls",
            std::slice::from_ref(&url),
            &material,
            false,
            self.insecure_plaintext_clients,
            "insecure-plaintext-clients",
        )?;
        Ok(material)
    }

    /// How the proxy reaches `https://` upstreams (etcd grpc-proxy's --cacert, --cert, --key,
    /// --insecure-skip-tls-verify); `None` when no upstream is `https://`.
    pub fn upstream_tls(&self) -> anyhow::Result<Option<GrpcClientTls>> {
        anyhow::ensure!(
            self.cert.is_some() == self.key.is_some(),
            "--cert and --key go together"
        );
        let any_https = self
            .voter_urls()
            .iter()
            .chain(&self.learner_urls())
            .any(|u| u.starts_with("https://"));
        if !any_https {
            return Ok(None);
        }
        let verify = match (&self.cacert, self.insecure_skip_tls_verify) {
            (_, true) => {
                tracing::warn!(
                    "--insecure-skip-tls-verify: upstream certificates are not checked; anyone                      who answers on an upstream's address sees every request and token"
                );
                Verify::Insecure
            }
            (Some(ca), false) => Verify::Roots(Roots::from_pem_file(ca)?),
            (None, false) => anyhow::bail!(
                "https:// upstreams need --cacert (the CA their certificates chain to), or \
                 --insecure-skip-tls-verify to connect without checking them"
            ),
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(Identity::from_pem_files(cert, key)?),
            _ => None,
        };
        Ok(Some(GrpcClientTls::new(&verify, identity.as_ref())?))
    }

    /// The per-request time budget.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }

    /// The health-check period.
    pub fn health_interval(&self) -> Duration {
        Duration::from_millis(self.health_interval_ms.max(10))
    }

    /// Checks what the flags cannot: at least one voter, parsable URLs.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.voter_urls().is_empty(),
            "--voters is required: the voters' client URLs, comma-separated"
        );
        self.listen_url()?;
        self.common.metrics.urls()?;
        for url in self.voter_urls().iter().chain(&self.learner_urls()) {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "bad upstream URL {url:?}: expected http:// or https://"
            );
            tonic::transport::Endpoint::from_shared(url.clone())
                .with_context(|| format!("bad upstream URL {url:?}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_toml_agree() -> anyhow::Result<()> {
        let c = Config::parse_from([
            "mango-proxy",
            "--voters",
            "127.0.0.1:1, http://127.0.0.1:2",
            "--learners",
            "http://127.0.0.1:3",
        ]);
        assert_eq!(
            c.voter_urls(),
            vec!["http://127.0.0.1:1", "http://127.0.0.1:2"]
        );
        assert_eq!(c.listen_url()?.port, 2379);
        c.validate()?;
        let t = Config::from_toml(
            "voters = \"127.0.0.1:1\"\nlisten-client-urls = \"http://127.0.0.1:23790\"\n\
             request-timeout-ms = 700\n",
        )?;
        assert_eq!(t.listen_url()?.port, 23790);
        assert_eq!(t.request_timeout(), Duration::from_millis(700));
        assert_eq!(t.max_concurrent_requests, 4_096);
        assert!(Config::from_toml("nope = 1").is_err());
        assert!(Config::default().validate().is_err());
        Ok(())
    }

    #[test]
    fn an_etcd_grpc_proxy_command_line_is_understood() -> anyhow::Result<()> {
        let c = Config::parse_from([
            "mango-proxy",
            "--endpoints=127.0.0.1:1,127.0.0.1:2",
            "--listen-addr=127.0.0.1:23790",
        ]);
        assert_eq!(
            c.voter_urls(),
            vec!["http://127.0.0.1:1", "http://127.0.0.1:2"]
        );
        let url = c.listen_url()?;
        assert!(!url.tls && url.port == 23790);
        c.validate()?;
        // With TLS flags, bare addresses are https on both sides, as grpc-proxy takes them.
        let c = Config::parse_from([
            "mango-proxy",
            "--endpoints=127.0.0.1:1",
            "--listen-addr=127.0.0.1:23790",
            "--cacert=/tmp/ca.pem",
            "--cert-file=/tmp/c.pem",
            "--key-file=/tmp/k.pem",
        ]);
        assert_eq!(c.voter_urls(), vec!["https://127.0.0.1:1"]);
        assert!(c.listen_url()?.tls);
        Ok(())
    }

    #[test]
    fn listeners_off_loopback_need_tls_and_https_upstreams_a_ca() -> anyhow::Result<()> {
        let off = Config::parse_from([
            "mango-proxy",
            "--voters=127.0.0.1:1",
            "--listen-client-urls=http://10.0.0.1:2379",
        ]);
        let err = off
            .client_tls()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("insecure-plaintext-clients"), "{err}");
        let accepted = Config::parse_from([
            "mango-proxy",
            "--voters=127.0.0.1:1",
            "--listen-client-urls=http://10.0.0.1:2379",
            "--insecure-plaintext-clients",
        ]);
        accepted.client_tls()?;
        let https = Config::parse_from(["mango-proxy", "--voters=https://127.0.0.1:1"]);
        let err = https
            .upstream_tls()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--cacert"), "{err}");
        let skip = Config::parse_from([
            "mango-proxy",
            "--voters=https://127.0.0.1:1",
            "--insecure-skip-tls-verify",
        ]);
        assert!(skip.upstream_tls()?.is_some());
        let half = Config::parse_from(["mango-proxy", "--voters=127.0.0.1:1", "--cert=/tmp/c"]);
        assert!(half.upstream_tls().is_err());
        Ok(())
    }
}
