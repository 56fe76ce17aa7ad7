//! Clients of the voters' etcd API, for what a learner forwards: writes, lease keep-alives and
//! TTLs, membership changes. The voters are found in the replicated member registry (their
//! published client URLs), so a learner needs no flag naming them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mango_api::NodeError;
use mango_proto::etcdserverpb::auth_client::AuthClient;
use mango_proto::etcdserverpb::cluster_client::ClusterClient;
use mango_proto::etcdserverpb::kv_client::KvClient;
use mango_proto::etcdserverpb::lease_client::LeaseClient;
use mango_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use mango_store::Store;
use tonic::transport::{Channel, Endpoint};

use crate::log::GROUP;

/// A load-balanced channel to every voter's client URLs, rebuilt when they change.
pub struct Voters {
    store: Arc<Store>,
    timeout: Duration,
    cached: Mutex<Option<(Vec<String>, Channel)>>,
    /// TLS for `https://` client URLs (the learner's `--trusted-ca-file` and certificate).
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Voters {
    /// Voters as `store`'s member registry lists them; each forwarded call is bounded by
    /// `timeout`.
    pub fn new(
        store: Arc<Store>,
        timeout: Duration,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Self {
        Self {
            store,
            timeout,
            cached: Mutex::new(None),
            tls,
        }
    }

    /// The voters' client URLs (members that are not Raft learners), as published.
    pub fn urls(&self) -> Vec<String> {
        let members = self
            .store
            .read(GROUP)
            .and_then(|v| v.members())
            .unwrap_or_default();
        let mut urls: Vec<String> = members
            .into_iter()
            .filter(|m| !m.is_learner)
            .flat_map(|m| m.client_urls)
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }

    /// The channel, waiting up to the timeout for the registry to name a voter with client
    /// URLs (a learner that just started may not have applied the members' published URLs).
    async fn channel(&self) -> Result<Channel, NodeError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let urls = loop {
            let urls = self.urls();
            if !urls.is_empty() {
                break urls;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NodeError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, channel)) = cached.as_ref()
            && *known == urls
        {
            return Ok(channel.clone());
        }
        let mut endpoints = Vec::new();
        for url in &urls {
            let mut endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| NodeError::Other(format!("voter client URL {url:?}: {e}")))?
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(1))
                .timeout(self.timeout);
            if url.starts_with("https://") {
                let tls = self.tls.clone().ok_or_else(|| {
                    NodeError::Unavailable(format!(
                        "voter client URL {url}: https:// needs --trusted-ca-file"
                    ))
                })?;
                endpoint = endpoint
                    .tls_config(tls)
                    .map_err(|e| NodeError::Other(format!("voter client URL {url:?}: {e}")))?;
            }
            endpoints.push(endpoint);
        }
        let channel = Channel::balance_list(endpoints.into_iter());
        *cached = Some((urls, channel.clone()));
        Ok(channel)
    }

    /// The KV service of the voters.
    pub async fn kv(&self) -> Result<KvClient<Channel>, NodeError> {
        Ok(KvClient::new(self.channel().await?).max_decoding_message_size(usize::MAX))
    }

    /// The Lease service of the voters.
    pub async fn lease(&self) -> Result<LeaseClient<Channel>, NodeError> {
        Ok(LeaseClient::new(self.channel().await?))
    }

    /// The Cluster service of the voters.
    pub async fn cluster(&self) -> Result<ClusterClient<Channel>, NodeError> {
        Ok(ClusterClient::new(self.channel().await?))
    }

    /// The Auth service of the voters.
    pub async fn auth(&self) -> Result<AuthClient<Channel>, NodeError> {
        Ok(AuthClient::new(self.channel().await?))
    }

    /// The Maintenance service of the voters.
    pub async fn maintenance(&self) -> Result<MaintenanceClient<Channel>, NodeError> {
        Ok(MaintenanceClient::new(self.channel().await?))
    }
}

/// `message` as a forwarded call of `caller`: with the token the client sent (the voters
/// check it against the same replicated auth state).
pub fn as_caller<T>(message: T, caller: &mango_api::Caller) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = &caller.token {
        request
            .metadata_mut()
            .insert(mango_api::auth::TOKEN_METADATA, token.clone());
    }
    request
}

/// A failure at the voters, answered to our client as they answered it.
pub fn forwarded(status: tonic::Status) -> NodeError {
    NodeError::Forwarded(status)
}
