//! [`LearnerNode`]: the etcd services' view of a learner. Reads come from its own store (stale
//! by default; linearizable with a read index from upstream, one request per batch of waiting
//! reads; bounded by the stream's stamps), watches from its own applied revisions, and every
//! write or leader-only question is forwarded to the voters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mango_api::{EtcdNode, NodeError, NodeStatus, ReadIndexBatcher};
use mango_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseTimeToLiveRequest, Member, MemberAddRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, ResponseHeader, StatusRequest,
};
use mango_proto::mangopb::raft_request::Request;
use mango_store::backend::redb::RedbSnapshot;
use mango_store::{ReadView, Response, SnapshotReader, StoreError};
use tokio::sync::watch;

use crate::forward::{Voters, forwarded};
use crate::log::{GROUP, LearnerLog, UpstreamError};

fn backend(e: mango_store::BackendError) -> NodeError {
    NodeError::Other(e.to_string())
}

/// A learner as the etcd services see it.
pub struct LearnerNode {
    /// Applied state, stamps, the upstream's read index.
    pub log: Arc<LearnerLog>,
    /// Where forwarded requests go.
    pub voters: Voters,
    /// This learner's id in headers.
    pub member_id: u64,
    /// The cluster's id, learned from a voter's response header (0 until then).
    pub cluster_id: AtomicU64,
    /// How long a request may wait.
    pub request_timeout: Duration,
    /// Linearizable reads waiting together share one read-index request upstream.
    reads: ReadIndexBatcher<UpstreamError>,
}

impl LearnerNode {
    /// A learner node over `log`, forwarding to `voters`.
    pub fn new(log: Arc<LearnerLog>, voters: Voters, member_id: u64) -> Self {
        let upstream = log.clone();
        let reads = ReadIndexBatcher::new(Arc::new(move || {
            let log = upstream.clone();
            Box::pin(async move { log.read_index().await })
        }));
        Self {
            log,
            voters,
            member_id,
            cluster_id: AtomicU64::new(0),
            request_timeout: Duration::from_secs(7),
            reads,
        }
    }

    fn learn_cluster(&self, header: Option<&ResponseHeader>) {
        if let Some(h) = header
            && h.cluster_id != 0
        {
            self.cluster_id.store(h.cluster_id, Ordering::Relaxed);
        }
    }

    /// Asks a voter for the cluster id (once the member registry names a voter).
    pub async fn fetch_cluster_id(&self) -> bool {
        let Ok(mut client) = self.voters.maintenance().await else {
            return false;
        };
        match client.status(StatusRequest {}).await {
            Ok(resp) => {
                self.learn_cluster(resp.get_ref().header.as_ref());
                true
            }
            Err(_) => false,
        }
    }

    /// A read index from upstream, shared by every read waiting when it is asked for.
    async fn batched_read_index(&self) -> Result<u64, NodeError> {
        match tokio::time::timeout(self.request_timeout, self.reads.read_index()).await {
            Err(_) => Err(NodeError::Timeout),
            Ok(None) => Err(NodeError::Stopped),
            Ok(Some(Err(UpstreamError::Unavailable(e)))) => Err(NodeError::Unavailable(e)),
            Ok(Some(Err(e @ UpstreamError::Failed(_)))) => Err(NodeError::Other(e.to_string())),
            Ok(Some(Ok(index))) => Ok(index),
        }
    }

    /// Waits until this learner has applied `index`.
    async fn wait_applied(&self, index: u64, within: Duration) -> Result<(), NodeError> {
        let mut applied = self.log.applied_updates();
        tokio::time::timeout(within, applied.wait_for(|a| *a >= index))
            .await
            .map_err(|_| NodeError::Timeout)?
            .map_err(|_| NodeError::Stopped)?;
        Ok(())
    }

    /// Forwards a write through the voters' KV or Lease service.
    async fn forward(&self, request: Request) -> Result<Response, NodeError> {
        let response = match request {
            Request::Put(r) => {
                let resp = self.voters.kv().await?.put(r).await.map_err(forwarded)?;
                Response::Put(resp.into_inner())
            }
            Request::DeleteRange(r) => {
                let resp = self
                    .voters
                    .kv()
                    .await?
                    .delete_range(r)
                    .await
                    .map_err(forwarded)?;
                Response::DeleteRange(resp.into_inner())
            }
            Request::Txn(r) => {
                let resp = self.voters.kv().await?.txn(r).await.map_err(forwarded)?;
                Response::Txn(resp.into_inner())
            }
            Request::Compaction(r) => {
                let resp = self
                    .voters
                    .kv()
                    .await?
                    .compact(r)
                    .await
                    .map_err(forwarded)?;
                Response::Compaction(resp.into_inner())
            }
            Request::LeaseGrant(r) => {
                let resp = self
                    .voters
                    .lease()
                    .await?
                    .lease_grant(r)
                    .await
                    .map_err(forwarded)?;
                Response::LeaseGrant(resp.into_inner())
            }
            Request::LeaseRevoke(r) => {
                let resp = self
                    .voters
                    .lease()
                    .await?
                    .lease_revoke(r)
                    .await
                    .map_err(forwarded)?;
                Response::LeaseRevoke(resp.into_inner())
            }
            other => {
                return Err(NodeError::Other(format!(
                    "a learner cannot forward {other:?}"
                )));
            }
        };
        Ok(response)
    }
}

/// The revision a forwarded write produced, from its response header.
fn response_revision(r: &Response) -> i64 {
    let header = match r {
        Response::Put(x) => x.header.as_ref(),
        Response::DeleteRange(x) => x.header.as_ref(),
        Response::Txn(x) => x.header.as_ref(),
        Response::Compaction(x) => x.header.as_ref(),
        Response::LeaseGrant(x) => x.header.as_ref(),
        Response::LeaseRevoke(x) => x.header.as_ref(),
        _ => None,
    };
    header.map_or(0, |h| h.revision)
}

impl EtcdNode for LearnerNode {
    fn header(&self, revision: i64) -> ResponseHeader {
        let term = self
            .log
            .store()
            .read(GROUP)
            .map(|v| v.state().applied_term)
            .unwrap_or(0);
        ResponseHeader {
            cluster_id: self.cluster_id.load(Ordering::Relaxed),
            member_id: self.member_id,
            revision,
            raft_term: term,
        }
    }

    fn read_view(&self) -> Result<Arc<ReadView<RedbSnapshot>>, NodeError> {
        self.log.store().read(GROUP).map_err(backend)
    }

    async fn linearizable_view(&self) -> Result<Arc<ReadView<RedbSnapshot>>, NodeError> {
        let index = self.batched_read_index().await?;
        self.wait_applied(index, self.request_timeout).await?;
        self.read_view()
    }

    /// Current as of the newest stamp once applied up to its commit index: refused when that
    /// is older than `max_age` (cut off from upstream) or apply cannot get there in time.
    async fn bounded_view(
        &self,
        max_age: Duration,
    ) -> Result<Arc<ReadView<RedbSnapshot>>, NodeError> {
        let bound = max_age.as_millis();
        let Some(fresh) = self.log.freshness() else {
            return Err(NodeError::TooStale(format!(
                "no stamp from upstream yet: cannot serve a read no older than {bound} ms"
            )));
        };
        let age = fresh.at.elapsed();
        if age > max_age {
            return Err(NodeError::TooStale(format!(
                "data last known current {} ms ago: cannot serve a read no older than {bound} ms",
                age.as_millis()
            )));
        }
        self.wait_applied(fresh.commit, max_age - age)
            .await
            .map_err(|_| {
                NodeError::TooStale(format!(
                    "applying lags the stream: cannot serve a read no older than {bound} ms"
                ))
            })?;
        self.read_view()
    }

    fn revision_updates(&self) -> watch::Receiver<i64> {
        self.log.revision_updates()
    }

    async fn propose(&self, request: Request) -> Result<Response, NodeError> {
        let response = tokio::time::timeout(self.request_timeout, self.forward(request))
            .await
            .map_err(|_| NodeError::Timeout)??;
        // Read-your-writes on this learner: wait until the write's revision is applied here.
        let revision = response_revision(&response);
        if revision > 0 {
            let mut revisions = self.log.revision_updates();
            let _ =
                tokio::time::timeout(self.request_timeout, revisions.wait_for(|r| *r >= revision))
                    .await;
        }
        Ok(response)
    }

    async fn wait_compacted(&self) -> Result<(), NodeError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            let state = self.read_view()?.state();
            if state.compacted_through > state.compact_revision {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(NodeError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn members(&self) -> Vec<Member> {
        self.log
            .store()
            .read(GROUP)
            .and_then(|v| v.members())
            .unwrap_or_default()
            .into_iter()
            .map(|m| Member {
                id: m.id,
                name: m.name,
                peer_ur_ls: m.peer_urls,
                client_ur_ls: m.client_urls,
                is_learner: m.is_learner,
            })
            .collect()
    }

    async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<Member, NodeError> {
        let resp = self
            .voters
            .cluster()
            .await?
            .member_add(MemberAddRequest {
                peer_ur_ls: peer_urls,
                is_learner,
            })
            .await
            .map_err(forwarded)?
            .into_inner();
        resp.member
            .ok_or_else(|| NodeError::Other("member add answered no member".into()))
    }

    async fn member_remove(&self, id: u64) -> Result<(), NodeError> {
        self.voters
            .cluster()
            .await?
            .member_remove(MemberRemoveRequest { id })
            .await
            .map_err(forwarded)?;
        Ok(())
    }

    async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> Result<(), NodeError> {
        self.voters
            .cluster()
            .await?
            .member_update(MemberUpdateRequest {
                id,
                peer_ur_ls: peer_urls,
            })
            .await
            .map_err(forwarded)?;
        Ok(())
    }

    async fn member_promote(&self, id: u64) -> Result<(), NodeError> {
        self.voters
            .cluster()
            .await?
            .member_promote(MemberPromoteRequest { id })
            .await
            .map_err(forwarded)?;
        Ok(())
    }

    /// raftIndex is the newest commit index the stream announced and raftAppliedIndex what
    /// this learner applied: their difference is its lag in entries.
    fn status(&self) -> NodeStatus {
        let state = self.read_view().map(|v| v.state()).unwrap_or_default();
        let size = self.log.store().size().unwrap_or_default();
        let fresh = self.log.freshness();
        let mut errors: Vec<String> = self
            .alarms()
            .iter()
            .map(|a| format!("memberID:{} alarm:{} ", a.member_id, a.alarm))
            .collect();
        match fresh {
            None => errors.push("learner: no stamp from upstream yet".into()),
            Some(f) if f.at.elapsed() > Duration::from_secs(3) => errors.push(format!(
                "learner: last heard from upstream {} ms ago",
                f.at.elapsed().as_millis()
            )),
            Some(_) => {}
        }
        NodeStatus {
            leader: 0,
            raft_index: fresh.map_or(state.applied_index, |f| f.commit.max(state.applied_index)),
            raft_term: state.applied_term,
            raft_applied_index: state.applied_index,
            db_size: size.file_bytes as i64,
            db_size_in_use: size.in_use_bytes as i64,
            is_learner: true,
            errors,
            lag: Some(fresh.map_or(Duration::MAX, |f| f.at.elapsed())),
        }
    }

    async fn defragment(&self) -> Result<(), NodeError> {
        let store = self.log.store().clone();
        tokio::task::spawn_blocking(move || store.defragment())
            .await
            .map_err(|e| NodeError::Other(e.to_string()))?
            .map_err(backend)
    }

    async fn move_leader(&self, _target: u64) -> Result<(), NodeError> {
        Err(NodeError::NotLeader)
    }

    fn alarms(&self) -> Vec<AlarmMember> {
        self.read_view()
            .and_then(|v| v.alarms().map_err(backend))
            .unwrap_or_default()
    }

    fn snapshot(&self) -> Result<SnapshotReader<RedbSnapshot>, NodeError> {
        self.log.store().snapshot_reader(GROUP).map_err(backend)
    }

    async fn change_alarm(&self, request: AlarmRequest) -> Result<(), NodeError> {
        self.voters
            .maintenance()
            .await?
            .alarm(request)
            .await
            .map_err(forwarded)?;
        Ok(())
    }

    async fn lease_grant(&self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, NodeError> {
        match self
            .propose(Request::LeaseGrant(LeaseGrantRequest { ttl, id }))
            .await?
        {
            Response::LeaseGrant(r) => {
                self.learn_cluster(r.header.as_ref());
                Ok(r)
            }
            other => Err(NodeError::Other(format!(
                "a lease grant answered {other:?}"
            ))),
        }
    }

    async fn lease_renew(&self, id: i64) -> Result<i64, NodeError> {
        let mut client = self.voters.lease().await?;
        let mut responses = client
            .lease_keep_alive(tokio_stream::iter([LeaseKeepAliveRequest { id }]))
            .await
            .map_err(forwarded)?
            .into_inner();
        match responses.message().await.map_err(forwarded)? {
            Some(r) if r.ttl > 0 => Ok(r.ttl),
            Some(_) => Err(NodeError::Store(StoreError::LeaseNotFound)),
            None => Err(NodeError::LeaderChanged),
        }
    }

    async fn lease_remaining(&self, id: i64) -> Result<i64, NodeError> {
        let resp = self
            .voters
            .lease()
            .await?
            .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
            .await
            .map_err(forwarded)?
            .into_inner();
        if resp.ttl < 0 {
            return Err(NodeError::Store(StoreError::LeaseNotFound));
        }
        Ok(resp.ttl)
    }
}
