//! `mango-learner`'s flags, in etcd's style where etcd has the same notion.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// A learner: applies the committed log streamed from voters (or other learners) and serves
/// reads and watches; writes are forwarded to the voters.
#[derive(Clone, Debug, Parser)]
#[command(name = "mango-learner", version, about)]
pub struct Config {
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
    /// first reachable is used, the others on failure.
    #[arg(long, required = true)]
    pub upstream: String,
    /// PEM file of the CA (or certificate) the upstreams' log-stream certificates chain to.
    /// Without it the stream is encrypted but the upstream is not authenticated (development).
    #[arg(long)]
    pub upstream_ca: Option<PathBuf>,
    /// Serve the log stream onward to other learners on this address (ip:port).
    #[arg(long)]
    pub listen_logstream_addr: Option<SocketAddr>,
    /// PEM certificate and key for the onward log stream [default: a development certificate
    /// generated under the data dir].
    #[arg(long, requires = "logstream_key")]
    pub logstream_cert: Option<PathBuf>,
    /// See --logstream-cert.
    #[arg(long, requires = "logstream_cert")]
    pub logstream_key: Option<PathBuf>,
    /// Largest request a client may send, in bytes.
    #[arg(long, default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// How often watchers that asked for progress notifications get one, in milliseconds.
    #[arg(long, default_value_t = 600_000, hide = true)]
    pub watch_progress_notify_interval_ms: u64,
}

fn split(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

impl Config {
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

    /// The upstreams' log-stream addresses.
    pub fn upstreams(&self) -> anyhow::Result<Vec<SocketAddr>> {
        split(&self.upstream)
            .iter()
            .map(|a| {
                let a = a.strip_prefix("quic://").unwrap_or(a);
                a.replace("localhost", "127.0.0.1")
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--upstream {a:?}: expected ip:port ({e})"))
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
