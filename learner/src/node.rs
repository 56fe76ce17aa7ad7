//! [`LearnerNode`]: the etcd services' view of a learner. Reads come from its own store (stale
//! by default; linearizable with a read index from upstream, one request per batch of waiting
//! reads; bounded by the stream's stamps), watches from its own applied revisions, and every
//! write or leader-only question is forwarded to the voters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mango_api::{AuthConfig, Caller, EtcdNode, NodeError, NodeStatus, ReadIndexBatcher};
use mango_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AuthenticateRequest, AuthenticateResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseKeepAliveRequest, LeaseTimeToLiveRequest, Member, MemberAddRequest,
    MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest, ResponseHeader, StatusRequest,
};
use mango_proto::mangopb::raft_request::Request;
use mango_store::auth::{AuthResponse, TokenLookup};
use mango_store::backend::redb::RedbSnapshot;
use mango_store::{ReadView, Response, SnapshotReader, StoreError};
use tokio::sync::watch;

use crate::forward::{Voters, as_caller, forwarded};
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
    /// How clients authenticate here (tokens are checked against this learner's own copy of
    /// the auth state; auth changes are forwarded).
    auth: AuthConfig,
}

/// One auth request forwarded to the voters' Auth service with the caller's token.
macro_rules! forward_auth {
    ($self:ident, $caller:ident, $r:ident, $method:ident, $variant:ident) => {
        Response::Auth(AuthResponse::$variant(
            $self
                .voters
                .auth()
                .await?
                .$method(as_caller($r, $caller))
                .await
                .map_err(forwarded)?
                .into_inner(),
        ))
    };
}

impl LearnerNode {
    /// A learner node over `log`, forwarding to `voters`.
    pub fn new(log: Arc<LearnerLog>, voters: Voters, member_id: u64, auth: AuthConfig) -> Self {
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
            auth,
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
    async fn wait_applied_within(&self, index: u64, within: Duration) -> Result<(), NodeError> {
        let mut applied = self.log.applied_updates();
        tokio::time::timeout(within, applied.wait_for(|a| *a >= index))
            .await
            .map_err(|_| NodeError::Timeout)?
            .map_err(|_| NodeError::Stopped)?;
        Ok(())
    }

    /// Forwards a write through the voters' KV, Lease or Auth service, with `caller`'s token.
    async fn forward(&self, request: Request, caller: &Caller) -> Result<Response, NodeError> {
        let response = match request {
            Request::Put(r) => {
                let resp = self
                    .voters
                    .kv()
                    .await?
                    .put(as_caller(r, caller))
                    .await
                    .map_err(forwarded)?;
                Response::Put(resp.into_inner())
            }
            Request::DeleteRange(r) => {
                let resp = self
                    .voters
                    .kv()
                    .await?
                    .delete_range(as_caller(r, caller))
                    .await
                    .map_err(forwarded)?;
                Response::DeleteRange(resp.into_inner())
            }
            Request::Txn(r) => {
                let resp = self
                    .voters
                    .kv()
                    .await?
                    .txn(as_caller(r, caller))
                    .await
                    .map_err(forwarded)?;
                Response::Txn(resp.into_inner())
            }
            Request::Compaction(r) => {
                let resp = self
                    .voters
                    .kv()
                    .await?
                    .compact(as_caller(r, caller))
                    .await
                    .map_err(forwarded)?;
                Response::Compaction(resp.into_inner())
            }
            Request::LeaseGrant(r) => {
                let resp = self
                    .voters
                    .lease()
                    .await?
                    .lease_grant(as_caller(r, caller))
                    .await
                    .map_err(forwarded)?;
                Response::LeaseGrant(resp.into_inner())
            }
            Request::LeaseRevoke(r) => {
                let resp = self
                    .voters
                    .lease()
                    .await?
                    .lease_revoke(as_caller(r, caller))
                    .await
                    .map_err(forwarded)?;
                Response::LeaseRevoke(resp.into_inner())
            }
            Request::AuthEnable(r) => forward_auth!(self, caller, r, auth_enable, AuthEnable),
            Request::AuthDisable(r) => forward_auth!(self, caller, r, auth_disable, AuthDisable),
            Request::AuthStatus(r) => forward_auth!(self, caller, r, auth_status, AuthStatus),
            Request::AuthUserAdd(r) => forward_auth!(self, caller, r, user_add, UserAdd),
            Request::AuthUserGet(r) => forward_auth!(self, caller, r, user_get, UserGet),
            Request::AuthUserList(r) => forward_auth!(self, caller, r, user_list, UserList),
            Request::AuthUserDelete(r) => forward_auth!(self, caller, r, user_delete, UserDelete),
            Request::AuthUserChangePassword(r) => {
                forward_auth!(self, caller, r, user_change_password, UserChangePassword)
            }
            Request::AuthUserGrantRole(r) => {
                forward_auth!(self, caller, r, user_grant_role, UserGrantRole)
            }
            Request::AuthUserRevokeRole(r) => {
                forward_auth!(self, caller, r, user_revoke_role, UserRevokeRole)
            }
            Request::AuthRoleAdd(r) => forward_auth!(self, caller, r, role_add, RoleAdd),
            Request::AuthRoleGet(r) => forward_auth!(self, caller, r, role_get, RoleGet),
            Request::AuthRoleList(r) => forward_auth!(self, caller, r, role_list, RoleList),
            Request::AuthRoleDelete(r) => forward_auth!(self, caller, r, role_delete, RoleDelete),
            Request::AuthRoleGrantPermission(r) => {
                forward_auth!(self, caller, r, role_grant_permission, RoleGrantPermission)
            }
            Request::AuthRoleRevokePermission(r) => {
                forward_auth!(
                    self,
                    caller,
                    r,
                    role_revoke_permission,
                    RoleRevokePermission
                )
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
        self.wait_applied_within(index, self.request_timeout)
            .await?;
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
        self.wait_applied_within(fresh.commit, max_age - age)
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

    fn auth_config(&self) -> &AuthConfig {
        &self.auth
    }

    fn simple_token(&self, token: &str) -> Result<TokenLookup, NodeError> {
        self.log
            .store()
            .simple_token(GROUP, token, std::time::Instant::now())
            .map_err(backend)
    }

    async fn wait_applied(&self, index: u64) -> Result<(), NodeError> {
        self.wait_applied_within(index, self.request_timeout).await
    }

    /// A learner cannot propose: the voters check the password and issue the token (a
    /// simple token reaches this learner's table through the log).
    async fn forward_authenticate(
        &self,
        request: &AuthenticateRequest,
    ) -> Option<Result<AuthenticateResponse, NodeError>> {
        let call = async {
            let resp = self
                .voters
                .auth()
                .await?
                .authenticate(request.clone())
                .await
                .map_err(forwarded)?;
            Ok(resp.into_inner())
        };
        Some(
            tokio::time::timeout(self.request_timeout, call)
                .await
                .unwrap_or(Err(NodeError::Timeout)),
        )
    }

    async fn propose(&self, request: Request, caller: &Caller) -> Result<Response, NodeError> {
        let response = tokio::time::timeout(self.request_timeout, self.forward(request, caller))
            .await
            .map_err(|_| NodeError::Timeout)??;
        if matches!(response, Response::Auth(_)) {
            // Auth changes raise no revision: read-your-writes through a read index, so the
            // next call here is checked against the state the change made.
            let index = self.batched_read_index().await?;
            self.wait_applied_within(index, self.request_timeout)
                .await?;
            return Ok(response);
        }
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
        caller: &Caller,
    ) -> Result<Member, NodeError> {
        let resp = self
            .voters
            .cluster()
            .await?
            .member_add(as_caller(
                MemberAddRequest {
                    peer_ur_ls: peer_urls,
                    is_learner,
                },
                caller,
            ))
            .await
            .map_err(forwarded)?
            .into_inner();
        resp.member
            .ok_or_else(|| NodeError::Other("member add answered no member".into()))
    }

    async fn member_remove(&self, id: u64, caller: &Caller) -> Result<(), NodeError> {
        self.voters
            .cluster()
            .await?
            .member_remove(as_caller(MemberRemoveRequest { id }, caller))
            .await
            .map_err(forwarded)?;
        Ok(())
    }

    async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
        caller: &Caller,
    ) -> Result<(), NodeError> {
        self.voters
            .cluster()
            .await?
            .member_update(as_caller(
                MemberUpdateRequest {
                    id,
                    peer_ur_ls: peer_urls,
                },
                caller,
            ))
            .await
            .map_err(forwarded)?;
        Ok(())
    }

    async fn member_promote(&self, id: u64, caller: &Caller) -> Result<(), NodeError> {
        self.voters
            .cluster()
            .await?
            .member_promote(as_caller(MemberPromoteRequest { id }, caller))
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

    async fn change_alarm(&self, request: AlarmRequest, caller: &Caller) -> Result<(), NodeError> {
        self.voters
            .maintenance()
            .await?
            .alarm(as_caller(request, caller))
            .await
            .map_err(forwarded)?;
        Ok(())
    }

    async fn lease_grant(
        &self,
        id: i64,
        ttl: i64,
        caller: &Caller,
    ) -> Result<LeaseGrantResponse, NodeError> {
        match self
            .propose(Request::LeaseGrant(LeaseGrantRequest { ttl, id }), caller)
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
