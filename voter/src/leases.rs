//! The voter's lease duties: granting with a chosen id and etcd's minimum TTL, keep-alives
//! and remaining TTLs at the leader's lessor (forwarded there from followers over the
//! leader's client URL, as etcd forwards them), and the leader's task that promotes the
//! lessor, proposes revokes of expired leases and checkpoints remaining TTLs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mango_api::{EtcdNode, NodeError};
use mango_proto::etcdserverpb::lease_client::LeaseClient;
use mango_proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse,
    LeaseKeepAliveRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
};
use mango_proto::mangopb::raft_request::Request;
use mango_store::{Response, StoreError};
use tonic::transport::{Channel, Endpoint};

use crate::lessor::RenewError;
use crate::node::VoterNode;

/// Revokes proposed per expiry pass at most (etcd's lessor revokes at most 1000/s).
const REVOKES_PER_PASS: usize = 100;
/// How often the lease task looks at leadership and expiries.
const PASS: Duration = Duration::from_millis(100);
/// Checkpoints per proposal at most (etcd's `maxLeaseCheckpointBatchSize`).
const CHECKPOINT_BATCH: usize = 1000;

/// Lease ids as etcd's `idutil.Generator` makes them: the member id's low 16 bits, then a
/// millisecond timestamp and a counter, so members never collide and a restart starts above
/// the ids it handed out before.
#[derive(Debug)]
pub struct LeaseIds(AtomicU64);

impl LeaseIds {
    /// A generator for `member_id`, starting from the clock.
    pub fn new(member_id: u64) -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let prefix = (member_id & 0xffff) << 48;
        let suffix = (ms << 8) & ((1 << 48) - 1);
        Self(AtomicU64::new(prefix | suffix))
    }

    /// The next id: positive, never 0.
    pub fn next(&self) -> i64 {
        loop {
            let raw = self.0.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            let id = (raw & (i64::MAX as u64)) as i64;
            if id != 0 {
                return id;
            }
        }
    }
}

/// A cached client of the leader's Lease service (keep-alives and TimeToLive are the
/// leader's), and the TLS to reach `https://` client URLs with.
#[derive(Default)]
pub struct LeaderClient {
    cached: Mutex<Option<(u64, LeaseClient<Channel>)>>,
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl LeaderClient {
    /// A client reaching `https://` leaders with `tls`.
    pub fn new(tls: Option<tonic::transport::ClientTlsConfig>) -> Self {
        Self {
            cached: Mutex::default(),
            tls,
        }
    }
}

/// etcd's minimum lease TTL in seconds: 1.5 election timeouts, rounded up (the lessor's
/// `minLeaseTTL`), so a lease cannot expire before a new leader could be elected.
pub fn min_lease_ttl(election_timeout: Duration) -> i64 {
    let min = election_timeout * 3 / 2;
    let secs = min.as_secs() + u64::from(min.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn not_found() -> NodeError {
    NodeError::Store(StoreError::LeaseNotFound)
}

fn forward_error(e: tonic::Status) -> NodeError {
    match e.code() {
        tonic::Code::Unavailable => NodeError::NoLeader,
        tonic::Code::DeadlineExceeded => NodeError::Timeout,
        _ => NodeError::Other(format!("forwarding to the leader: {}", e.message())),
    }
}

impl VoterNode {
    /// Grants through Raft, choosing the id if the client left it 0 and raising the TTL to
    /// the minimum.
    pub(crate) async fn grant_lease(
        &self,
        id: i64,
        ttl: i64,
        caller: &mango_api::Caller,
    ) -> Result<LeaseGrantResponse, NodeError> {
        let id = if id == 0 { self.lease_ids.next() } else { id };
        let request = LeaseGrantRequest {
            ttl: ttl.max(self.min_lease_ttl),
            id,
        };
        match self.propose(Request::LeaseGrant(request), caller).await? {
            Response::LeaseGrant(resp) => Ok(resp),
            other => Err(NodeError::Other(format!(
                "a lease grant answered {other:?}"
            ))),
        }
    }

    /// The leader's id once known, and whether it is this member.
    fn leader(&self) -> Result<(u64, bool), NodeError> {
        let status = self
            .raft
            .status(0)
            .map_err(|e| NodeError::Other(e.to_string()))?;
        if status.leader == 0 {
            return Err(NodeError::NoLeader);
        }
        Ok((status.leader, status.leader == self.member_id))
    }

    /// Runs `f` on this member's lessor when it leads (waiting briefly for a fresh leader's
    /// lessor to be promoted); `Ok(None)` when another member leads.
    async fn at_lessor<T>(
        &self,
        f: impl Fn(Instant) -> Result<T, RenewError>,
    ) -> Result<Option<T>, NodeError> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let (_, leading) = self.leader()?;
            if !leading {
                return Ok(None);
            }
            match f(Instant::now()) {
                Ok(v) => return Ok(Some(v)),
                Err(RenewError::NotFound) => return Err(not_found()),
                Err(RenewError::NotPrimary) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(RenewError::NotPrimary) => return Err(NodeError::Timeout),
            }
        }
    }

    /// A client of the leader's Lease service (its first advertised client URL).
    fn leader_client(&self, leader: u64) -> Result<LeaseClient<Channel>, NodeError> {
        let mut cached = self
            .leader_client
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((id, client)) = cached.as_ref()
            && *id == leader
        {
            return Ok(client.clone());
        }
        let url = self
            .members()
            .into_iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.client_ur_ls.into_iter().next())
            .ok_or(NodeError::NoLeader)?;
        let mut endpoint = Endpoint::from_shared(url)
            .map_err(|e| NodeError::Other(format!("the leader's client URL: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(1))
            .timeout(self.request_timeout);
        if let Some(tls) = &self.leader_client.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| NodeError::Other(format!("the leader's client URL: {e}")))?;
        }
        let client = LeaseClient::new(endpoint.connect_lazy());
        *cached = Some((leader, client.clone()));
        Ok(client)
    }

    /// A keep-alive at the leader's lessor.
    pub(crate) async fn renew_lease(&self, id: i64) -> Result<i64, NodeError> {
        let store = self.store.clone();
        let lessor = self.lessor.clone();
        let local = self
            .at_lessor(|now| {
                // A lease revoked by a client is gone from the store before its clock runs out.
                match store.read(0).and_then(|v| v.lease(id)) {
                    Ok(Some(_)) => lessor.renew(id, now),
                    _ => Err(RenewError::NotFound),
                }
            })
            .await?;
        if let Some(ttl) = local {
            return Ok(ttl);
        }
        let (leader, _) = self.leader()?;
        let mut client = self.leader_client(leader)?;
        let request = LeaseKeepAliveRequest { id };
        let mut responses = client
            .lease_keep_alive(tokio_stream::iter([request]))
            .await
            .map_err(forward_error)?
            .into_inner();
        match responses.message().await.map_err(forward_error)? {
            Some(resp) if resp.ttl > 0 => Ok(resp.ttl),
            Some(_) => Err(not_found()),
            None => Err(NodeError::LeaderChanged),
        }
    }

    /// Seconds left of a lease at the leader's lessor.
    pub(crate) async fn lease_left(&self, id: i64) -> Result<i64, NodeError> {
        let lessor = self.lessor.clone();
        if let Some(left) = self.at_lessor(|now| lessor.remaining(id, now)).await? {
            return Ok(left);
        }
        let (leader, _) = self.leader()?;
        let mut client = self.leader_client(leader)?;
        let resp = client
            .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
            .await
            .map_err(forward_error)?
            .into_inner();
        if resp.ttl < 0 {
            return Err(not_found());
        }
        Ok(resp.ttl)
    }
}

/// The leader's lease task: promotes the lessor when this member becomes leader (demotes it
/// when it stops leading), proposes the revoke of every expired lease, and checkpoints
/// remaining TTLs every `checkpoint_every`. Runs until the node stops.
pub async fn run(node: Arc<VoterNode>, extend: Duration, checkpoint_every: Duration) {
    let mut last_checkpoint = Instant::now();
    let mut tick = tokio::time::interval(PASS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(status) = node.raft.status(0) else {
            return;
        };
        let leading = status.leader == node.member_id;
        match node.lessor.primary_term() {
            Some(_) if !leading => node.lessor.demote(),
            Some(term) if term == status.term => {}
            _ if leading => promote(&node, status.term, extend),
            _ => {}
        }
        if !leading {
            continue;
        }
        let now = Instant::now();
        for id in node.lessor.expired(now, REVOKES_PER_PASS) {
            let node = node.clone();
            tokio::spawn(async move { revoke(&node, id).await });
        }
        if now.duration_since(last_checkpoint) >= checkpoint_every {
            last_checkpoint = now;
            let all = node.lessor.checkpoints(now);
            for chunk in all.chunks(CHECKPOINT_BATCH) {
                let checkpoints = chunk
                    .iter()
                    .map(|&(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl })
                    .collect();
                let request = Request::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints });
                if let Err(e) = node.propose(request, &mango_api::Caller::MEMBER).await {
                    tracing::debug!(error = %e, "lease checkpoint not proposed");
                }
            }
        }
    }
}

/// Takes over every lease in the store, resuming from checkpoints, plus `extend`.
fn promote(node: &VoterNode, term: u64, extend: Duration) {
    node.lessor.begin_promotion(term);
    let leases = match node.store.read(0).and_then(|v| v.leases()) {
        Ok(leases) => leases,
        Err(e) => {
            tracing::error!(error = %e, "reading leases to promote the lessor");
            node.lessor.demote();
            return;
        }
    };
    let count = leases.len();
    node.lessor.promote(
        term,
        leases
            .into_iter()
            .map(|l| (l.id, l.granted_ttl, l.remaining_ttl)),
        extend,
        Instant::now(),
    );
    tracing::info!(term, leases = count, "lessor promoted");
}

/// Proposes the revoke of an expired lease (etcd: the lessor's expired channel, revoked by
/// the leader through Raft).
async fn revoke(node: &VoterNode, id: i64) {
    let exists = node
        .store
        .read(0)
        .and_then(|v| v.lease(id))
        .map(|l| l.is_some());
    if let Ok(false) = exists {
        node.lessor.forget(id);
        return;
    }
    match node
        .propose(
            Request::LeaseRevoke(LeaseRevokeRequest { id }),
            &mango_api::Caller::MEMBER,
        )
        .await
    {
        Ok(_) | Err(NodeError::Store(StoreError::LeaseNotFound)) => {
            tracing::debug!(lease = id, "expired lease revoked");
            node.lessor.forget(id);
        }
        Err(e) => {
            tracing::warn!(lease = id, error = %e, "revoking an expired lease failed; will retry")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_distinct_and_carry_the_member() {
        let ids = LeaseIds::new(0xabcd_1234);
        let a = ids.next();
        let b = ids.next();
        assert!(a > 0 && b > a);
        assert_eq!((a as u64) >> 48, 0x1234);
    }

    #[test]
    fn min_ttl_is_one_and_a_half_election_timeouts_rounded_up() {
        assert_eq!(min_lease_ttl(Duration::from_millis(1000)), 2);
        assert_eq!(min_lease_ttl(Duration::from_millis(2000)), 3);
        assert_eq!(min_lease_ttl(Duration::from_millis(100)), 1);
    }
}
