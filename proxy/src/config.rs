//! `mango-proxy`'s settings: flags, or the same keys (kebab-case) in a TOML file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use mango_boot::CommonFlags;
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
    /// URL to serve etcd's client API on (a sidecar listens on localhost).
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    pub listen_client_urls: String,
    /// Client URLs of the voters (comma-separated): writes and linearizable reads.
    #[arg(long, default_value = "")]
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
    /// Logging and gRPC keep-alives, as every mango binary takes them.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
}

impl mango_boot::Layered for Config {
    const ETCD_FLAGS: &'static [&'static str] = &["log-level"];

    fn common(&self) -> &CommonFlags {
        &self.common
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["mango-proxy"])
    }
}

fn split(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .map(|u| {
            if u.contains("://") {
                u.to_string()
            } else {
                format!("http://{u}")
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

    /// The voters' client URLs.
    pub fn voter_urls(&self) -> Vec<String> {
        split(&self.voters)
    }

    /// The learners' client URLs.
    pub fn learner_urls(&self) -> Vec<String> {
        split(&self.learners)
    }

    /// The URL to listen on.
    pub fn listen_url(&self) -> anyhow::Result<mango_boot::listen::ListenUrl> {
        let urls = mango_boot::listen::ListenUrl::parse_list(&self.listen_client_urls)?;
        anyhow::ensure!(
            urls.len() == 1,
            "--listen-client-urls: exactly one URL, got {:?}",
            self.listen_client_urls
        );
        let url = urls.into_iter().next().context("one URL")?;
        anyhow::ensure!(
            !url.tls,
            "--listen-client-urls {}: https:// needs TLS flags (not configured)",
            url.url
        );
        Ok(url)
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
}
