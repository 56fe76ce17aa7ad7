//! [`VoterNode`]: the etcd services' view of a voter, over the Raft handle and the store.

use std::sync::Arc;
use std::time::Duration;

use mango_api::{AuthConfig, Caller, EtcdNode, NodeError, NodeStatus};
use mango_consensus::node::{RaftError, RaftHandle};
use mango_consensus::transport::PeerUrls;
use mango_proto::etcdserverpb::alarm_request::AlarmAction;
use mango_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmType, LeaseGrantResponse, Member, ResponseHeader,
};
use mango_proto::mangopb::member_change::Kind;
use mango_proto::mangopb::raft_request::Request;
use mango_proto::mangopb::{MemberChange, MemberInfo, RaftRequest};
use mango_store::auth::TokenLookup;
use mango_store::backend::redb::RedbSnapshot;
use mango_store::{ReadView, Response, SnapshotReader, Store};
use prost::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};

use crate::machine::Output;

/// The group etcd's API is served from (the whole key space).
const GROUP: u64 = 0;

/// A voter as the etcd services see it.
pub struct VoterNode {
    /// The Raft loop.
    pub raft: RaftHandle<Output>,
    /// The state machine's store.
    pub store: Arc<Store>,
    /// This member's id.
    pub member_id: u64,
    /// The cluster's id.
    pub cluster_id: u64,
    /// The cluster token (for new members' ids).
    pub token: String,
    /// Where peers are, for the transport.
    pub peers: PeerUrls,
    /// How long a request may wait for Raft.
    pub request_timeout: Duration,
    /// Backend size that raises NOSPACE.
    pub quota_bytes: u64,
    /// The applied revision, announced by the state machine (for the watch hub).
    pub revisions: tokio::sync::watch::Receiver<i64>,
    /// When leases expire (kept by the leader only).
    pub lessor: Arc<crate::lessor::Lessor>,
    /// Ids for grants that ask for none.
    pub lease_ids: crate::leases::LeaseIds,
    /// The smallest TTL a lease gets, in seconds.
    pub min_lease_ttl: i64,
    /// Where keep-alives go when another member leads.
    pub leader_client: crate::leases::LeaderClient,
    /// Committed-but-unapplied entries past which proposals are refused (etcd's
    /// `maxGapBetweenApplyAndCommitIndex`, 5,000).
    pub max_apply_gap: u64,
    /// etcd's `--strict-reconfig-check`: refuse membership changes that would leave no
    /// quorum of started, connected voters.
    pub strict_reconfig: bool,
    /// One Raft tick (a follower's commit index may lag the leader's by one heartbeat).
    pub tick: Duration,
    /// Linearizable reads waiting together share one ReadIndex request to the Raft thread.
    pub reads: mango_api::ReadIndexBatcher<RaftError>,
    /// How clients authenticate (etcd's `--auth-token`, `--bcrypt-cost`,
    /// `--client-cert-auth`).
    pub auth: AuthConfig,
    /// What the metrics endpoint reports (proposals pending and failed counted here).
    pub metrics: Arc<crate::metrics::VoterMetrics>,
}

fn raft_error(e: RaftError) -> NodeError {
    match e {
        RaftError::NoLeader => NodeError::NoLeader,
        RaftError::LeaderChanged => NodeError::LeaderChanged,
        RaftError::Dropped => NodeError::LeaderChanged,
        RaftError::Stopped => NodeError::Stopped,
        other => NodeError::Other(other.to_string()),
    }
}

fn backend(e: mango_store::BackendError) -> NodeError {
    NodeError::Other(e.to_string())
}

/// etcd's name of an alarm type, as Status errors print it.
pub(crate) fn alarm_name(alarm: i32) -> &'static str {
    match AlarmType::try_from(alarm) {
        Ok(AlarmType::Nospace) => "NOSPACE",
        Ok(AlarmType::Corrupt) => "CORRUPT",
        _ => "NONE",
    }
}

fn member(m: MemberInfo) -> Member {
    Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

impl VoterNode {
    /// Proposes `request` and waits for its outcome (see [`EtcdNode::propose`]).
    async fn propose_counted(
        &self,
        request: Request,
        caller: &Caller,
    ) -> Result<Response, NodeError> {
        // etcd's back-pressure: when apply falls this far behind commit, new proposals are
        // refused rather than queued without bound.
        let status = self.raft.status(GROUP).map_err(raft_error)?;
        if status.commit.saturating_sub(status.applied) > self.max_apply_gap {
            return Err(NodeError::TooManyRequests);
        }
        let writes = match &request {
            Request::Put(_) => true,
            Request::Txn(t) => !mango_store::is_txn_read_only(t),
            _ => false,
        };
        if writes {
            self.check_quota().await?;
        }
        let data = RaftRequest {
            id: 0,
            auth: caller.request_auth(),
            request: Some(request),
        }
        .encode_to_vec();
        self.timed(self.raft.propose(GROUP, data))
            .await?
            .map_err(NodeError::Store)
    }

    async fn timed<T>(
        &self,
        f: impl Future<Output = Result<T, RaftError>>,
    ) -> Result<T, NodeError> {
        tokio::time::timeout(self.request_timeout, f)
            .await
            .map_err(|_| NodeError::Timeout)?
            .map_err(raft_error)
    }

    /// Runs a membership check over the registry and (on the leader) the Raft progress.
    fn check_reconfig(
        &self,
        check: impl FnOnce(&crate::reconfig::View<'_>) -> Result<(), NodeError>,
    ) -> Result<(), NodeError> {
        let infos = self.infos();
        let status = self.raft.status(GROUP).map_err(raft_error)?;
        let leads = status.leader == self.member_id;
        let view = crate::reconfig::View {
            members: &infos,
            me: self.member_id,
            progress: leads.then_some(status.progress.as_slice()),
            leader_last_index: status.last_index,
        };
        check(&view)
    }

    fn infos(&self) -> Vec<MemberInfo> {
        self.store
            .read(GROUP)
            .and_then(|v| v.members())
            .unwrap_or_default()
    }

    async fn change(
        &self,
        change_type: ConfChangeType,
        id: u64,
        change: MemberChange,
    ) -> Result<(), NodeError> {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.set_node_id(id);
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        cc.set_context(change.encode_to_vec().into());
        self.timed(self.raft.conf_change(GROUP, cc))
            .await?
            .map_err(NodeError::Store)?;
        Ok(())
    }

    pub(crate) fn active_alarms(&self) -> Vec<AlarmMember> {
        self.store
            .read(GROUP)
            .and_then(|v| v.alarms())
            .unwrap_or_default()
    }

    /// Refuses writes while a NOSPACE alarm is active anywhere in the cluster, and raises one
    /// (through Raft, so every member refuses) when this member's backend passed the quota.
    async fn check_quota(&self) -> Result<(), NodeError> {
        let nospace = AlarmType::Nospace as i32;
        if self.active_alarms().iter().any(|a| a.alarm == nospace) {
            return Err(NodeError::NoSpace);
        }
        // The file size is a stat; pages in use need the writer's lock, so count them only
        // once the file itself is past the quota.
        if self.store.file_bytes().map_err(backend)? <= self.quota_bytes {
            return Ok(());
        }
        let size = self.store.size().map_err(backend)?;
        if size.in_use_bytes > self.quota_bytes {
            let raise = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.member_id,
                alarm: nospace,
            };
            let data = RaftRequest {
                id: 0,
                auth: None,
                request: Some(Request::Alarm(raise)),
            }
            .encode_to_vec();
            self.timed(self.raft.propose(GROUP, data))
                .await?
                .map_err(NodeError::Store)?;
            return Err(NodeError::NoSpace);
        }
        Ok(())
    }
}

impl EtcdNode for VoterNode {
    fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft.status(GROUP).map(|s| s.term).unwrap_or(0),
        }
    }

    fn read_view(&self) -> Result<Arc<ReadView<RedbSnapshot>>, NodeError> {
        self.store.read(GROUP).map_err(backend)
    }

    async fn linearizable_view(&self) -> Result<Arc<ReadView<RedbSnapshot>>, NodeError> {
        let index = self
            .timed(async {
                self.reads
                    .read_index()
                    .await
                    .unwrap_or(Err(RaftError::Stopped))
            })
            .await?;
        self.timed(self.raft.wait_applied(GROUP, index)).await?;
        self.read_view()
    }

    fn revision_updates(&self) -> tokio::sync::watch::Receiver<i64> {
        self.revisions.clone()
    }

    /// A voter's data is current as of its last contact with the leader (the leader's own:
    /// now); wait for apply to reach the commit index, then check the age.
    async fn bounded_view(
        &self,
        max_age: Duration,
    ) -> Result<Arc<ReadView<RedbSnapshot>>, NodeError> {
        let status = self.raft.status(GROUP).map_err(raft_error)?;
        if status.leader == 0 {
            return Err(NodeError::TooStale(format!(
                "no leader known: cannot serve a read no older than {} ms",
                max_age.as_millis()
            )));
        }
        let age = if status.leader == self.member_id {
            Duration::ZERO
        } else {
            status.leader_contact_age + self.tick
        };
        if age > max_age {
            return Err(NodeError::TooStale(format!(
                "last heard from the leader {} ms ago: cannot serve a read no older than {} ms",
                age.as_millis(),
                max_age.as_millis()
            )));
        }
        let wait = max_age - age;
        tokio::time::timeout(wait, self.raft.wait_applied(GROUP, status.commit))
            .await
            .map_err(|_| {
                NodeError::TooStale(format!(
                    "apply is behind commit: cannot serve a read no older than {} ms",
                    max_age.as_millis()
                ))
            })?
            .map_err(raft_error)?;
        self.read_view()
    }

    fn auth_config(&self) -> &AuthConfig {
        &self.auth
    }

    fn simple_token(&self, token: &str) -> Result<TokenLookup, NodeError> {
        self.store
            .simple_token(GROUP, token, std::time::Instant::now())
            .map_err(backend)
    }

    async fn wait_applied(&self, index: u64) -> Result<(), NodeError> {
        self.timed(self.raft.wait_applied(GROUP, index)).await
    }

    async fn propose(&self, request: Request, caller: &Caller) -> Result<Response, NodeError> {
        let pending = self.metrics.pending();
        let result = self.propose_counted(request, caller).await;
        if result.is_err() {
            pending.failed();
        }
        result
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
        self.infos().into_iter().map(member).collect()
    }

    async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
        _caller: &Caller,
    ) -> Result<Member, NodeError> {
        let infos = self.infos();
        if infos
            .iter()
            .any(|m| m.peer_urls.iter().any(|u| peer_urls.contains(u)))
        {
            return Err(NodeError::PeerUrlExists);
        }
        if self.strict_reconfig {
            self.check_reconfig(|v| v.may_add(is_learner))?;
        }
        // An id of its own, never one a removed member had (the newcomer asks for it when it
        // starts with --initial-cluster-state existing).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut salt = now;
        let mut id = crate::config::added_member_id(&peer_urls, &self.token, &salt.to_string());
        while infos.iter().any(|m| m.id == id) {
            salt += 1;
            id = crate::config::added_member_id(&peer_urls, &self.token, &salt.to_string());
        }
        let info = MemberInfo {
            id,
            name: String::new(),
            peer_urls: peer_urls.clone(),
            client_urls: vec![],
            is_learner,
        };
        if let Some(url) = peer_urls.first() {
            self.peers.set(id, url.clone());
        }
        let kind = if is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let change = MemberChange {
            kind: Kind::Add as i32,
            member: Some(info.clone()),
        };
        self.change(kind, id, change).await?;
        Ok(member(info))
    }

    async fn member_remove(&self, id: u64, _caller: &Caller) -> Result<(), NodeError> {
        if !self.infos().iter().any(|m| m.id == id) {
            return Err(NodeError::MemberNotFound);
        }
        if self.strict_reconfig {
            self.check_reconfig(|v| v.may_remove(id))?;
        }
        let info = MemberInfo {
            id,
            ..Default::default()
        };
        let change = MemberChange {
            kind: Kind::Remove as i32,
            member: Some(info),
        };
        self.change(ConfChangeType::RemoveNode, id, change).await?;
        self.peers.remove(id);
        Ok(())
    }

    async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
        _caller: &Caller,
    ) -> Result<(), NodeError> {
        let infos = self.infos();
        if !infos.iter().any(|m| m.id == id) {
            return Err(NodeError::MemberNotFound);
        }
        if infos
            .iter()
            .any(|m| m.id != id && m.peer_urls.iter().any(|u| peer_urls.contains(u)))
        {
            return Err(NodeError::PeerUrlExists);
        }
        if let Some(url) = peer_urls.first() {
            self.peers.set(id, url.clone());
        }
        let info = MemberInfo {
            id,
            peer_urls,
            ..Default::default()
        };
        let change = MemberChange {
            kind: Kind::Update as i32,
            member: Some(info),
        };
        // The API layer checked the caller is root (etcd checks membership changes there).
        self.propose(Request::MemberChange(change), &Caller::MEMBER)
            .await
            .map(|_| ())
    }

    async fn member_promote(&self, id: u64, _caller: &Caller) -> Result<(), NodeError> {
        let Some(info) = self.infos().into_iter().find(|m| m.id == id) else {
            return Err(NodeError::MemberNotFound);
        };
        if !info.is_learner {
            return Err(NodeError::NotLearner);
        }
        let strict = self.strict_reconfig;
        self.check_reconfig(|v| v.may_promote(id, strict))?;
        let change = MemberChange {
            kind: Kind::Promote as i32,
            member: Some(info),
        };
        self.change(ConfChangeType::AddNode, id, change).await
    }

    fn status(&self) -> NodeStatus {
        let raft = self.raft.status(GROUP).unwrap_or_default();
        let size = self.store.size().unwrap_or_default();
        let errors = self
            .active_alarms()
            .iter()
            .map(|a| format!("memberID:{} alarm:{} ", a.member_id, alarm_name(a.alarm)))
            .collect();
        NodeStatus {
            leader: raft.leader,
            raft_index: raft.commit,
            raft_term: raft.term,
            raft_applied_index: raft.applied,
            db_size: size.file_bytes as i64,
            db_size_in_use: size.in_use_bytes as i64,
            is_learner: raft.learners.contains(&self.member_id),
            errors,
            lag: None,
        }
    }

    async fn defragment(&self) -> Result<(), NodeError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.defragment())
            .await
            .map_err(|e| NodeError::Other(e.to_string()))?
            .map_err(backend)
    }

    async fn move_leader(&self, target: u64) -> Result<(), NodeError> {
        let status = self.raft.status(GROUP).map_err(raft_error)?;
        if status.leader != self.member_id {
            return Err(NodeError::NotLeader);
        }
        if !status.voters.contains(&target) {
            return Err(NodeError::BadLeaderTransferee);
        }
        self.raft
            .transfer_leader(GROUP, target)
            .map_err(raft_error)?;
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        while tokio::time::Instant::now() < deadline {
            if self
                .raft
                .status(GROUP)
                .map(|s| s.leader == target)
                .unwrap_or(false)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(NodeError::Timeout)
    }

    fn alarms(&self) -> Vec<AlarmMember> {
        self.active_alarms()
    }

    fn snapshot(&self) -> Result<SnapshotReader<RedbSnapshot>, NodeError> {
        self.store.snapshot_reader(GROUP).map_err(backend)
    }

    async fn change_alarm(&self, request: AlarmRequest, _caller: &Caller) -> Result<(), NodeError> {
        let data = RaftRequest {
            id: 0,
            auth: None,
            request: Some(Request::Alarm(request)),
        }
        .encode_to_vec();
        self.timed(self.raft.propose(GROUP, data))
            .await?
            .map_err(NodeError::Store)?;
        Ok(())
    }

    async fn lease_grant(
        &self,
        id: i64,
        ttl: i64,
        caller: &Caller,
    ) -> Result<LeaseGrantResponse, NodeError> {
        self.grant_lease(id, ttl, caller).await
    }

    async fn lease_renew(&self, id: i64) -> Result<i64, NodeError> {
        self.renew_lease(id).await
    }

    async fn lease_remaining(&self, id: i64) -> Result<i64, NodeError> {
        self.lease_left(id).await
    }
}
