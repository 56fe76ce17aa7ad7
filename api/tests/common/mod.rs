//! A single-member, no-Raft [`EtcdNode`] over a real store in a temporary directory, and a
//! server of the etcd services on it bound to 127.0.0.1:0. A harness for the service layer
//! only: a proposal is applied at once as the next log entry, and every read is "linearizable"
//! because nothing else writes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use mango_api::{ApiConfig, EtcdNode, NodeError, NodeStatus};
use mango_proto::etcdserverpb::alarm_request::AlarmAction;
use mango_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, LeaseGrantRequest, LeaseGrantResponse, Member, ResponseHeader,
};
use mango_proto::mangopb::RaftRequest;
use mango_proto::mangopb::raft_request::Request;
use mango_store::backend::redb::RedbSnapshot;
use mango_store::{
    ApplyEntry, BackendError, ReadView, Response, SnapshotReader, Store, StoreError, StoreOptions,
};
use prost::Message;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The cluster id every header carries.
pub const CLUSTER_ID: u64 = 0xc1u64 << 56 | 0x5e;
/// The id of the one member.
pub const MEMBER_ID: u64 = 0x8e9e_05c5_2164_694d;
/// The Raft term of every entry.
pub const TERM: u64 = 1;

/// What changes as the test goes.
struct State {
    /// The index of the last applied entry.
    last_index: u64,
    /// The membership.
    members: Vec<Member>,
    /// The next member id to hand out.
    next_member_id: u64,
    /// Raised alarms.
    alarms: Vec<AlarmMember>,
    /// The last lease id handed out.
    next_lease_id: i64,
}

/// The node: a store and a membership list, behind one lock that orders the writes.
pub struct TestNode {
    /// The state machine.
    store: Store,
    /// Membership, alarms and the log position.
    state: Mutex<State>,
    /// Keeps the store's directory alive.
    _dir: TempDir,
    /// The applied revision, for the watch hub.
    revisions: tokio::sync::watch::Sender<i64>,
}

fn backend(e: BackendError) -> NodeError {
    NodeError::Store(StoreError::Backend(e))
}

impl TestNode {
    /// A node whose one member advertises `client_url`.
    pub fn new(client_url: String) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open_path(
            dir.path().join("state.redb"),
            StoreOptions {
                durable_apply: false,
            },
        )
        .expect("store opens");
        let me = Member {
            id: MEMBER_ID,
            name: "test-member".into(),
            peer_ur_ls: vec!["http://127.0.0.1:2380".into()],
            client_ur_ls: vec![client_url],
            is_learner: false,
        };
        Self {
            store,
            state: Mutex::new(State {
                last_index: 0,
                members: vec![me],
                next_member_id: 0x1000,
                alarms: Vec::new(),
                next_lease_id: 1000,
            }),
            _dir: dir,
            revisions: tokio::sync::watch::Sender::new(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("state lock")
    }

    /// Forgets every member, as a member that joined an existing cluster knows none until
    /// its first snapshot arrives.
    pub fn forget_members(&self) {
        self.state().members.clear();
    }

    /// Raises an alarm, as the node itself would (e.g. NOSPACE).
    pub fn raise_alarm(&self, alarm: AlarmMember) {
        self.state().alarms.push(alarm);
    }

    /// The store, for checks behind the service's back.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl EtcdNode for TestNode {
    fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: CLUSTER_ID,
            member_id: MEMBER_ID,
            revision,
            raft_term: TERM,
        }
    }

    fn read_view(&self) -> Result<Arc<ReadView<RedbSnapshot>>, NodeError> {
        self.store.read(0).map_err(backend)
    }

    async fn linearizable_view(&self) -> Result<Arc<ReadView<RedbSnapshot>>, NodeError> {
        self.read_view()
    }

    /// One member applying at once: always current.
    async fn bounded_view(
        &self,
        _max_age: std::time::Duration,
    ) -> Result<Arc<ReadView<RedbSnapshot>>, NodeError> {
        self.read_view()
    }

    fn revision_updates(&self) -> tokio::sync::watch::Receiver<i64> {
        self.revisions.subscribe()
    }

    async fn propose(&self, request: Request) -> Result<Response, NodeError> {
        let mut state = self.state();
        let index = state.last_index + 1;
        let data = RaftRequest {
            id: index,
            auth: None,
            request: Some(request),
        }
        .encode_to_vec();
        let mut applied = self
            .store
            .apply(
                0,
                &[ApplyEntry {
                    index,
                    term: TERM,
                    data: &data,
                }],
            )
            .map_err(backend)?;
        state.last_index = index;
        if let Ok(view) = self.store.read(0) {
            self.revisions.send_replace(view.revision());
        }
        let applied = applied
            .pop()
            .ok_or_else(|| NodeError::Other("entry skipped".into()))?;
        Ok(applied.result?)
    }

    async fn wait_compacted(&self) -> Result<(), NodeError> {
        self.store.compact_all(0).map(|_| ()).map_err(backend)
    }

    fn members(&self) -> Vec<Member> {
        self.state().members.clone()
    }

    async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<Member, NodeError> {
        let mut state = self.state();
        let taken = state
            .members
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|u| peer_urls.contains(u)));
        if taken {
            return Err(NodeError::PeerUrlExists);
        }
        let member = Member {
            id: state.next_member_id,
            name: String::new(),
            peer_ur_ls: peer_urls,
            client_ur_ls: Vec::new(),
            is_learner,
        };
        state.next_member_id += 1;
        state.members.push(member.clone());
        Ok(member)
    }

    async fn member_remove(&self, id: u64) -> Result<(), NodeError> {
        let mut state = self.state();
        let before = state.members.len();
        state.members.retain(|m| m.id != id);
        if state.members.len() == before {
            return Err(NodeError::MemberNotFound);
        }
        Ok(())
    }

    async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> Result<(), NodeError> {
        let mut state = self.state();
        let member = state
            .members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or(NodeError::MemberNotFound)?;
        member.peer_ur_ls = peer_urls;
        Ok(())
    }

    async fn member_promote(&self, id: u64) -> Result<(), NodeError> {
        let mut state = self.state();
        let member = state
            .members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or(NodeError::MemberNotFound)?;
        if !member.is_learner {
            return Err(NodeError::NotLearner);
        }
        member.is_learner = false;
        Ok(())
    }

    fn status(&self) -> NodeStatus {
        let size = self.store.size().unwrap_or_default();
        let index = self.state().last_index;
        NodeStatus {
            leader: MEMBER_ID,
            raft_index: index,
            raft_term: TERM,
            raft_applied_index: index,
            db_size: i64::try_from(size.file_bytes).unwrap_or(i64::MAX),
            db_size_in_use: i64::try_from(size.in_use_bytes).unwrap_or(i64::MAX),
            is_learner: false,
            lag: None,
            errors: self
                .state()
                .alarms
                .iter()
                .map(|a| format!("memberID:{} alarm:{} ", a.member_id, a.alarm))
                .collect(),
        }
    }

    async fn defragment(&self) -> Result<(), NodeError> {
        Ok(())
    }

    async fn move_leader(&self, target: u64) -> Result<(), NodeError> {
        if target == MEMBER_ID {
            Ok(())
        } else {
            Err(NodeError::BadLeaderTransferee)
        }
    }

    fn alarms(&self) -> Vec<AlarmMember> {
        self.state().alarms.clone()
    }

    fn snapshot(&self) -> Result<SnapshotReader<RedbSnapshot>, NodeError> {
        self.store.snapshot_reader(0).map_err(backend)
    }

    async fn change_alarm(&self, request: AlarmRequest) -> Result<(), NodeError> {
        let alarm = AlarmMember {
            member_id: request.member_id,
            alarm: request.alarm,
        };
        let mut state = self.state();
        if request.action == AlarmAction::Activate as i32 {
            if !state.alarms.contains(&alarm) {
                state.alarms.push(alarm);
            }
        } else {
            state.alarms.retain(|a| *a != alarm);
        }
        Ok(())
    }

    /// Ids count up from 1000 when the client asks for none; no minimum TTL.
    async fn lease_grant(&self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, NodeError> {
        let id = if id == 0 {
            let mut state = self.state();
            state.next_lease_id += 1;
            state.next_lease_id
        } else {
            id
        };
        match self
            .propose(Request::LeaseGrant(LeaseGrantRequest { ttl, id }))
            .await?
        {
            Response::LeaseGrant(resp) => Ok(resp),
            other => Err(NodeError::Other(format!("grant answered {other:?}"))),
        }
    }

    /// No clock: a lease lives until revoked, and a renew answers its granted TTL.
    async fn lease_renew(&self, id: i64) -> Result<i64, NodeError> {
        self.lease_remaining(id).await
    }

    async fn lease_remaining(&self, id: i64) -> Result<i64, NodeError> {
        match self.read_view()?.lease(id).map_err(backend)? {
            Some(lease) => Ok(lease.granted_ttl),
            None => Err(NodeError::Store(StoreError::LeaseNotFound)),
        }
    }
}

/// A running server of the etcd services over a [`TestNode`]; stops when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The node it serves.
    pub node: Arc<TestNode>,
    /// Dropping it stops the server.
    _stop: oneshot::Sender<()>,
    /// The server task.
    _task: JoinHandle<()>,
}

impl TestServer {
    /// Starts a server with `config` on 127.0.0.1:0.
    pub async fn start(config: ApiConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let node = Arc::new(TestNode::new(format!("http://{addr}")));
        let (stop, stopped) = oneshot::channel::<()>();
        let served = node.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            mango_api::serve(listener, served, &config, shutdown)
                .await
                .expect("server runs");
        });
        Self {
            addr,
            node,
            _stop: stop,
            _task: task,
        }
    }

    /// The endpoint URL clients dial.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}
