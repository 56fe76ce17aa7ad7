//! The voter's configuration: etcd's flag names, or the same keys in a TOML file.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use mango_boot::CommonFlags;
use mango_boot::tls::{ClientTlsFlags, PeerTlsFlags};
use serde::Serialize;

/// `mango-voter`: a Raft voter serving etcd's v3 API.
///
/// Every flag can also be set in the environment (`ETCD_<FLAG>` for etcd's flags, e.g.
/// `ETCD_DATA_DIR`, `MANGO_<FLAG>` for mango's) or in the `--config-file`; a flag on the
/// command line wins over the environment, which wins over the file.
#[derive(Clone, Debug, Parser, Serialize)]
#[command(name = "mango-voter", version, about)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// A TOML file with these same settings (keys are the flags' long names); the
    /// environment and the command line win over it. Unknown keys are refused.
    #[arg(long)]
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Human-readable name of this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Where this member keeps its data (default: `<name>.mango`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (comma-separated).
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    pub listen_client_urls: String,
    /// Client URLs to tell the cluster about.
    #[arg(long)]
    pub advertise_client_urls: Option<String>,
    /// URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://127.0.0.1:2380")]
    pub listen_peer_urls: String,
    /// Peer URLs to tell the cluster about.
    #[arg(long)]
    pub initial_advertise_peer_urls: Option<String>,
    /// The initial cluster: `name=peer-url,...`.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// `new` to start a cluster, `existing` to join one.
    #[arg(long, default_value = "new")]
    pub initial_cluster_state: String,
    /// A token that makes the ids of this cluster unique.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Backend size that raises the NOSPACE alarm (bytes).
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024)]
    pub quota_backend_bytes: u64,
    /// Applied entries between Raft log compactions.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Entries kept behind the applied index when the Raft log is compacted, for followers a
    /// little behind (etcd's fixed 5,000; lower it to exercise snapshots in tests).
    #[arg(long, default_value_t = 5_000, hide = true)]
    pub snapshot_catchup_entries: u64,
    /// Heartbeat interval in milliseconds (one Raft tick).
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Election timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Largest request a client may send, in bytes.
    #[arg(long, default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Serve the committed-log stream to learners (QUIC) on this address, ip:port.
    #[arg(long)]
    pub listen_logstream_addr: Option<std::net::SocketAddr>,
    /// PEM certificate for the log stream [default: a development certificate generated
    /// under the data dir at first start]; needs --logstream-key.
    #[arg(long)]
    pub logstream_cert: Option<PathBuf>,
    /// PEM key of --logstream-cert.
    #[arg(long)]
    pub logstream_key: Option<PathBuf>,
    /// How often idle watchers that asked for progress notifications get one, in
    /// milliseconds (etcd's 10 minutes; lower it in tests).
    #[arg(long, default_value_t = 600_000, hide = true)]
    pub watch_progress_notify_interval_ms: u64,
    /// How often the leader checkpoints leases' remaining TTLs through Raft, in milliseconds
    /// (etcd's 5 minutes; lower it to exercise failover in tests).
    #[arg(long, default_value_t = 300_000, hide = true)]
    pub lease_checkpoint_interval_ms: u64,
    /// Committed-but-unapplied entries past which proposals are refused with "too many
    /// requests" (etcd's fixed 5,000; lower it in tests).
    #[arg(long, default_value_t = 5_000, hide = true)]
    pub max_apply_gap: u64,
    /// etcd's `--strict-reconfig-check`: refuse a member add, remove or promotion that would
    /// leave no quorum of started, connected voters.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub strict_reconfig_check: bool,
    /// Fault injection for tests: sleep this long before applying each batch of entries,
    /// so that apply falls behind commit.
    #[arg(long, default_value_t = 0, hide = true)]
    pub debug_apply_delay_ms: u64,
    /// The Raft thread waits for every log write (the behaviour before the persist thread),
    /// for comparison benchmarks only.
    #[arg(long, default_value_t = false, hide = true, num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
    pub debug_wait_for_log_writes: bool,
    /// Fault injection for tests: every write of the Raft log fails while this file exists,
    /// as a dead disk would make it fail.
    #[arg(long, hide = true)]
    pub debug_fail_log_writes_while: Option<PathBuf>,
    /// Size at which the Raft log starts a new file (files are the unit of purging); tests
    /// make it small to see files purged.
    #[arg(long, hide = true, default_value_t = 64 << 20)]
    pub debug_raft_log_file_bytes: u64,
    /// Client TLS (etcd's flags).
    #[command(flatten)]
    #[serde(flatten)]
    pub client_tls: ClientTlsFlags,
    /// Peer TLS (etcd's flags).
    #[command(flatten)]
    #[serde(flatten)]
    pub peer_tls: PeerTlsFlags,
    /// Accept `http://` client URLs off loopback: every client request then crosses the
    /// network in plaintext, readable and forgeable by anyone on the path.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub insecure_plaintext_clients: bool,
    /// Accept peer URLs off loopback without mutual TLS (--peer-client-cert-auth against
    /// --peer-trusted-ca-file): anyone who reaches the peer port can then send this member
    /// Raft messages as any member.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub insecure_unauthenticated_peers: bool,
    /// PEM CA certificates learners' log-stream certificates must chain to [default:
    /// --peer-trusted-ca-file, the cluster CA].
    #[arg(long)]
    pub logstream_trusted_ca_file: Option<PathBuf>,
    /// Serve the log stream to followers that present no certificate: anyone who reaches the
    /// log-stream port can then read every key and every change.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set)]
    pub insecure_unauthenticated_learners: bool,
    /// The largest Raft snapshot a peer may stage here, in bytes.
    #[arg(long, default_value_t = 16 << 30)]
    pub max_snapshot_bytes: u64,
    /// Concurrent gRPC streams per client connection (etcd's `--max-concurrent-streams`).
    #[arg(long, default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// Logging and gRPC keep-alives, as every mango binary takes them.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["mango-voter"])
    }
}

impl mango_boot::Layered for Config {
    const ETCD_FLAGS: &'static [&'static str] = &[
        "config-file",
        "name",
        "data-dir",
        "listen-client-urls",
        "advertise-client-urls",
        "listen-peer-urls",
        "initial-advertise-peer-urls",
        "initial-cluster",
        "initial-cluster-state",
        "initial-cluster-token",
        "quota-backend-bytes",
        "snapshot-count",
        "snapshot-catchup-entries",
        "heartbeat-interval",
        "election-timeout",
        "max-request-bytes",
        "max-concurrent-streams",
        "log-level",
        "cert-file",
        "key-file",
        "trusted-ca-file",
        "client-cert-auth",
        "auto-tls",
        "peer-cert-file",
        "peer-key-file",
        "peer-trusted-ca-file",
        "peer-client-cert-auth",
        "peer-auto-tls",
        "strict-reconfig-check",
    ];

    fn common(&self) -> &CommonFlags {
        &self.common
    }
}

/// One member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    /// Its name.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
}

/// etcd's `--initial-cluster` (`name=url,...`; a name listed twice has several peer URLs), in
/// the order given.
pub fn parse_initial_cluster(spec: &str) -> anyhow::Result<Vec<InitialMember>> {
    let mut members: Vec<InitialMember> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--initial-cluster: expected name=url, got {part:?}"))?;
        match members.iter_mut().find(|m| m.name == name) {
            Some(m) => m.peer_urls.push(url.to_string()),
            None => members.push(InitialMember {
                name: name.into(),
                peer_urls: vec![url.into()],
            }),
        }
    }
    Ok(members)
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
            self.logstream_cert.is_some() == self.logstream_key.is_some(),
            "--logstream-cert and --logstream-key go together"
        );
        self.joining()?;
        self.initial_members()?;
        Ok(())
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.mango", self.name)))
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

    /// Peer URLs to listen on.
    pub fn peer_listen(&self) -> Vec<String> {
        split(&self.listen_peer_urls)
    }

    /// Peer URLs to advertise.
    pub fn peer_advertise(&self) -> Vec<String> {
        self.initial_advertise_peer_urls
            .as_deref()
            .map(split)
            .unwrap_or_else(|| self.peer_listen())
    }

    /// The initial cluster (default: this member alone).
    pub fn initial_members(&self) -> anyhow::Result<Vec<InitialMember>> {
        let Some(spec) = &self.initial_cluster else {
            return Ok(vec![InitialMember {
                name: self.name.clone(),
                peer_urls: self.peer_advertise(),
            }]);
        };
        let members = parse_initial_cluster(spec)?;
        if !members.iter().any(|m| m.name == self.name) {
            anyhow::bail!(
                "--initial-cluster has no member named {:?} (--name)",
                self.name
            );
        }
        Ok(members)
    }

    /// Whether this member joins an existing cluster.
    pub fn joining(&self) -> anyhow::Result<bool> {
        match self.initial_cluster_state.as_str() {
            "new" => Ok(false),
            "existing" => Ok(true),
            other => {
                anyhow::bail!("--initial-cluster-state must be new or existing, not {other:?}")
            }
        }
    }

    /// One Raft tick.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval.max(1))
    }

    /// Election timeout in ticks.
    pub fn election_ticks(&self) -> usize {
        (self.election_timeout / self.heartbeat_interval.max(1)).max(2) as usize
    }
}

/// FNV-1a, 64 bits: stable ids from names and URLs.
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A founding member's id: from its peer URLs and the cluster token, as etcd derives it (not
/// 0), so every founder computes every founder's id alike.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    added_member_id(peer_urls, token, "")
}

/// The id of a member added to a running cluster: its peer URLs and the token salted with
/// `salt` (the time of the add, as etcd salts), so a machine added back with the same peer
/// URLs after it was removed is a new member; it learns the id when it joins
/// ([`crate::identity`]).
pub fn added_member_id(peer_urls: &[String], token: &str, salt: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    urls.push(token);
    if !salt.is_empty() {
        urls.push(salt);
    }
    fnv(&urls).max(1)
}

/// The cluster id: from the initial members' ids and the token.
pub fn cluster_id(member_ids: &[u64], token: &str) -> u64 {
    let mut ids: Vec<String> = member_ids.iter().map(|id| format!("{id:x}")).collect();
    ids.sort_unstable();
    ids.push(token.to_string());
    let parts: Vec<&str> = ids.iter().map(String::as_str).collect();
    fnv(&parts).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_and_ids_are_stable() {
        let c = Config::parse_from([
            "mango-voter",
            "--name",
            "b",
            "--initial-cluster",
            "a=http://127.0.0.1:1,b=http://127.0.0.1:2",
        ]);
        let m = c.initial_members().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].peer_urls, vec!["http://127.0.0.1:2".to_string()]);
        let id = member_id(&m[1].peer_urls, "t");
        assert_eq!(id, member_id(&m[1].peer_urls, "t"));
        assert_ne!(id, member_id(&m[0].peer_urls, "t"));
        assert!(c.initial_cluster_state == "new" && !c.joining().unwrap());
    }

    #[test]
    fn a_name_missing_from_the_cluster_is_refused() {
        let c = Config::parse_from([
            "mango-voter",
            "--name",
            "z",
            "--initial-cluster",
            "a=http://x:1",
        ]);
        assert!(c.initial_members().is_err());
    }
}
