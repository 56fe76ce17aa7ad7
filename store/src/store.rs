//! [`Store`]: the groups' state machines over one backend, with read views published through
//! arc-swap so that reads never block writes and each read sees exactly one revision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwapOption;
use mango_proto::etcdserverpb::{RangeRequest, RangeResponse, TxnRequest, TxnResponse};

use crate::apply::{Applied, ApplyEntry, apply_entries};
use crate::auth::{
    AuthCtx, AuthInfo, AuthState, TokenChange, TokenLookup, TokenTable, simple_token_index,
};
use crate::backend::redb::RedbBackend;
use crate::backend::{Backend, BackendError, BackendSize, GroupId};
use crate::error::StoreError;
use crate::mvcc::GroupState;
use crate::{kv, txn};

/// How the store writes.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Fsync every applied batch. Without it a crash may lose the last applied batches (the
    /// applied index falls back with them, consistently), which the Raft log then replays;
    /// the Raft log must then keep entries past the last durable batch.
    pub durable_apply: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durable_apply: true,
        }
    }
}

/// A consistent read view of one group at one revision.
pub struct ReadView<S> {
    /// The backend snapshot the view reads.
    snapshot: S,
    /// The group's state in that snapshot.
    state: GroupState,
    /// The auth state in that snapshot, shared with the views before it when it is the same
    /// (rebuilt only after a batch that changed auth).
    auth: Arc<AuthState>,
}

impl<S: crate::backend::ReadTables> ReadView<S> {
    /// The group state the view was taken at.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The view's revision.
    pub fn revision(&self) -> i64 {
        self.state.revision
    }

    /// The auth state as of this view: users, roles, permission checks (no I/O).
    pub fn auth(&self) -> &Arc<AuthState> {
        &self.auth
    }

    /// The checks etcd's auth applier makes, against this view: what the API layer runs
    /// before serving a read from the view (Range, a read-only Txn), or to refuse a write
    /// early (the apply checks it again, against the state as of its entry).
    pub fn check_request(
        &self,
        info: &AuthInfo,
        request: &mango_proto::mangopb::raft_request::Request,
    ) -> Result<(), StoreError> {
        let lease_keys = |id: i64| crate::lease::keys(&self.snapshot, id);
        self.auth.check_request(info, request, &lease_keys)
    }

    /// Serves a Range (etcd's semantics; the header carries only the revision).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
        kv::range(
            &self.snapshot,
            self.state.revision,
            self.state.compact_revision,
            req,
        )
    }

    /// Serves a txn that writes nothing ([`crate::is_txn_read_only`]).
    pub fn txn(&self, req: &TxnRequest) -> Result<TxnResponse, StoreError> {
        if !txn::is_txn_read_only(req) {
            return Err(StoreError::Malformed(
                "a txn that writes needs the log".into(),
            ));
        }
        txn::txn_read_only(
            &self.snapshot,
            self.state.revision,
            self.state.compact_revision,
            req,
        )
    }

    /// etcd's HashKV at `rev` (0: the view's revision): equal on members that applied the same
    /// log, whatever their physical compaction progress.
    pub fn hash_kv(&self, rev: i64) -> Result<crate::HashKv, StoreError> {
        crate::hash::hash_kv(
            &self.snapshot,
            self.state.revision,
            self.state.compact_revision,
            rev,
        )
    }

    /// The alarms active as of this view.
    pub fn alarms(&self) -> Result<Vec<mango_proto::etcdserverpb::AlarmMember>, BackendError> {
        crate::members::alarms(&self.snapshot)
    }

    /// Lease `id` as of this view, if it exists (for LeaseTimeToLive).
    pub fn lease(&self, id: i64) -> Result<Option<crate::LeaseInfo>, BackendError> {
        crate::lease::get(&self.snapshot, id)
    }

    /// Every lease as of this view, in id order (for LeaseLeases).
    pub fn leases(&self) -> Result<Vec<crate::LeaseInfo>, BackendError> {
        crate::lease::list(&self.snapshot)
    }

    /// The keys attached to lease `id` as of this view, in key order (empty for an unknown
    /// lease; for LeaseTimeToLive with `keys`).
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>, BackendError> {
        crate::lease::keys(&self.snapshot, id)
    }

    /// The member registry as of this view.
    pub fn members(&self) -> Result<Vec<mango_proto::mangopb::MemberInfo>, BackendError> {
        crate::members::list(&self.snapshot)
    }

    /// How many versions (puts and tombstones of every key) the view still holds.
    pub fn versions(&self) -> Result<u64, BackendError> {
        crate::compact::count_versions(&self.snapshot)
    }

    /// The backend snapshot (for snapshots and physical inspection).
    pub(crate) fn snapshot(&self) -> &S {
        &self.snapshot
    }
}

/// One group's published view and the lock that orders its writers.
struct GroupSlot<S> {
    /// The latest committed view; replaced after every commit. Empty only while a defragment
    /// runs (it needs every backend snapshot released); the next read publishes a fresh one.
    view: ArcSwapOption<ReadView<S>>,
    /// Held across a write and the publication of its view, so views only move forward.
    writer: Mutex<()>,
    /// This node's simple tokens for the group: fed by applied Authenticates, expired by
    /// the node's clock (see `crate::auth`); never persisted, never replicated.
    tokens: Mutex<TokenTable>,
}

/// The state machines of every group on a node, over one backend.
pub struct Store<B: Backend = RedbBackend> {
    /// The engine holding every group's tables.
    backend: B,
    /// Groups known to this store; a group appears on its first read or write.
    groups: RwLock<HashMap<GroupId, Arc<GroupSlot<B::Snapshot>>>>,
    /// Write options.
    options: StoreOptions,
    /// Readers share it; a defragment takes it alone, so no new view appears while it runs.
    gate: RwLock<()>,
}

fn poisoned() -> BackendError {
    BackendError::Engine("store lock poisoned".into())
}

impl Store<RedbBackend> {
    /// Opens (creating if absent) a store in the redb file at `path`.
    pub fn open_path(
        path: impl AsRef<std::path::Path>,
        options: StoreOptions,
    ) -> Result<Self, BackendError> {
        Self::open(RedbBackend::open(path)?, options)
    }

    /// [`open_path`](Self::open_path) behind a fault switch over the file, for simulated
    /// crashes and power losses.
    pub fn open_path_with_faults(
        path: impl AsRef<std::path::Path>,
        options: StoreOptions,
        faults: crate::backend::redb_faults::StoreFaults,
    ) -> Result<Self, BackendError> {
        Self::open(RedbBackend::open_with_faults(path, faults)?, options)
    }
}

impl<B: Backend> Store<B> {
    /// Opens a store on `backend`, publishing a view of every group it holds.
    pub fn open(backend: B, options: StoreOptions) -> Result<Self, BackendError> {
        let store = Self {
            backend,
            groups: RwLock::new(HashMap::new()),
            options,
            gate: RwLock::new(()),
        };
        for group in store.backend.groups()? {
            store.slot(group)?;
        }
        Ok(store)
    }

    /// A fresh view of `group`; with `auth`, the auth state it carries (known unchanged),
    /// else read from the snapshot.
    fn load_view(
        &self,
        group: GroupId,
        auth: Option<Arc<AuthState>>,
    ) -> Result<ReadView<B::Snapshot>, BackendError> {
        let snapshot = self.backend.read(group)?;
        let state = GroupState::load(&snapshot)?;
        let auth = match auth {
            Some(a) => a,
            None => Arc::new(AuthState::load(&snapshot)?),
        };
        Ok(ReadView {
            snapshot,
            state,
            auth,
        })
    }

    fn slot(&self, group: GroupId) -> Result<Arc<GroupSlot<B::Snapshot>>, BackendError> {
        let poisoned = || BackendError::Engine("group table lock poisoned".into());
        if let Some(slot) = self.groups.read().map_err(|_| poisoned())?.get(&group) {
            return Ok(slot.clone());
        }
        let mut groups = self.groups.write().map_err(|_| poisoned())?;
        if let Some(slot) = groups.get(&group) {
            return Ok(slot.clone());
        }
        let slot = Arc::new(GroupSlot {
            view: ArcSwapOption::from_pointee(self.load_view(group, None)?),
            writer: Mutex::new(()),
            tokens: Mutex::new(TokenTable::default()),
        });
        groups.insert(group, slot.clone());
        Ok(slot)
    }

    /// The latest committed view of `group`. Cheap: an atomic load, no I/O (but right after
    /// a defragment, which empties the views, one reader loads a fresh view).
    pub fn read(&self, group: GroupId) -> Result<Arc<ReadView<B::Snapshot>>, BackendError> {
        let slot = self.slot(group)?;
        let _gate = self.gate.read().map_err(|_| poisoned())?;
        if let Some(view) = slot.view.load_full() {
            return Ok(view);
        }
        let view = Arc::new(self.load_view(group, None)?);
        slot.view
            .compare_and_swap(&None::<Arc<_>>, Some(view.clone()));
        Ok(view)
    }

    /// Rewrites the backend to give free space back (etcd's defragment). Reads and writes
    /// wait meanwhile; fails if a view stays held elsewhere (e.g. a snapshot being streamed)
    /// for more than a few seconds.
    pub fn defragment(&self) -> Result<(), BackendError> {
        let _gate = self.gate.write().map_err(|_| poisoned())?;
        let slots: Vec<_> = self
            .groups
            .read()
            .map_err(|_| poisoned())?
            .values()
            .cloned()
            .collect();
        let mut writers = Vec::with_capacity(slots.len());
        for slot in &slots {
            writers.push(slot.writer.lock().map_err(|_| poisoned())?);
            slot.view.store(None);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match self.backend.defragment() {
                Ok(()) => return Ok(()),
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }

    /// Runs `f` in one write transaction of `group` and publishes the new view on success.
    /// `f` leaves the auth state as it was.
    pub(crate) fn write<R>(
        &self,
        group: GroupId,
        durable: bool,
        f: impl FnOnce(&mut dyn crate::backend::WriteTables, &mut GroupState) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.write_with_auth(group, durable, |tables, state, auth| {
            Ok((f(tables, state)?, auth, Vec::new()))
        })
    }

    /// [`Store::write`] for writers that may change auth: `f` gets the auth state before the
    /// transaction and returns the one the new view carries, and the changes to the token
    /// table, made after the commit and before the view is published (so a reader that sees
    /// an Authenticate's index applied finds its token).
    fn write_with_auth<R>(
        &self,
        group: GroupId,
        durable: bool,
        f: impl FnOnce(
            &mut dyn crate::backend::WriteTables,
            &mut GroupState,
            Arc<AuthState>,
        ) -> Result<(R, Arc<AuthState>, Vec<TokenChange>), StoreError>,
    ) -> Result<R, StoreError> {
        let slot = self.slot(group)?;
        let _writer = slot
            .writer
            .lock()
            .map_err(|_| BackendError::Engine("group writer lock poisoned".into()))?;
        let before = slot.view.load_full().map(|v| v.auth.clone());
        let (result, auth, tokens) = self.backend.write(group, durable, |tables| {
            let mut state = GroupState::load(&*tables)?;
            let auth = match before {
                Some(a) => a,
                None => Arc::new(AuthState::load(&*tables)?),
            };
            let r = f(tables, &mut state, auth)?;
            state.save(tables)?;
            Ok::<_, StoreError>(r)
        })?;
        if !tokens.is_empty() {
            slot.tokens.lock().map_err(|_| poisoned())?.apply(tokens);
        }
        slot.view
            .store(Some(Arc::new(self.load_view(group, Some(auth))?)));
        Ok(result)
    }

    /// Applies committed entries of `group` in one transaction, with the applied index, and
    /// publishes the result. Returns each entry's outcome; `Err` only for storage failure,
    /// after which nothing of the batch is applied and the node must stop.
    pub fn apply(
        &self,
        group: GroupId,
        entries: &[ApplyEntry<'_>],
    ) -> Result<Vec<Applied>, BackendError> {
        let durable = self.options.durable_apply;
        self.write_with_auth(group, durable, |tables, state, auth| {
            let mut ctx = AuthCtx::new(auth);
            let applied = apply_entries(tables, state, &mut ctx, entries)?;
            Ok((applied, ctx.state, ctx.tokens))
        })
        .map_err(|e| match e {
            StoreError::Backend(b) => b,
            other => BackendError::Engine(other.to_string()),
        })
    }

    /// The auth state of `group` as of its latest view (cheap: an atomic load).
    pub fn auth(&self, group: GroupId) -> Result<Arc<AuthState>, BackendError> {
        Ok(self.read(group)?.auth.clone())
    }

    /// What simple token `token` resolves to on this node for `group`, refreshing its TTL
    /// clock to `now` (see `crate::auth` for the whole scheme). Prefer
    /// `TokenProvider::resolve`, which also covers JWTs.
    pub fn simple_token(
        &self,
        group: GroupId,
        token: &str,
        now: std::time::Instant,
    ) -> Result<TokenLookup, BackendError> {
        let Some(index) = simple_token_index(token) else {
            return Ok(TokenLookup::Invalid);
        };
        let view = self.read(group)?;
        if view.state.applied_index < index {
            return Ok(TokenLookup::Pending { index });
        }
        let slot = self.slot(group)?;
        let user = slot.tokens.lock().map_err(|_| poisoned())?.user(token, now);
        Ok(match user {
            Some(username) => TokenLookup::Valid(AuthInfo {
                username,
                revision: view.auth.revision(),
            }),
            None => TokenLookup::Invalid,
        })
    }

    /// Drops the simple tokens of every group unused for longer than `ttl` (etcd's
    /// `--auth-token-ttl`); the node calls it about every second with its own clock.
    /// Returns how many went.
    pub fn expire_tokens(
        &self,
        ttl: std::time::Duration,
        now: std::time::Instant,
    ) -> Result<usize, BackendError> {
        let slots: Vec<_> = self
            .groups
            .read()
            .map_err(|_| poisoned())?
            .values()
            .cloned()
            .collect();
        let mut dropped = 0;
        for slot in slots {
            dropped += slot.tokens.lock().map_err(|_| poisoned())?.expire(ttl, now);
        }
        Ok(dropped)
    }

    /// Records the initial members of a new cluster, if `group` has no members yet (every
    /// initial member is started with the same list, so all registries agree).
    pub fn bootstrap_members(
        &self,
        group: GroupId,
        members: &[mango_proto::mangopb::MemberInfo],
    ) -> Result<(), BackendError> {
        self.write(group, true, |tables, _| {
            if crate::members::list(&*tables)?.is_empty() {
                for m in members {
                    let change = mango_proto::mangopb::MemberChange {
                        kind: mango_proto::mangopb::member_change::Kind::Add as i32,
                        member: Some(m.clone()),
                    };
                    crate::members::apply(tables, &change)?;
                }
            }
            Ok(())
        })
        .map_err(|e| match e {
            StoreError::Backend(b) => b,
            other => BackendError::Engine(other.to_string()),
        })
    }

    /// Makes everything applied to `group` so far durable (a synced empty commit).
    pub fn sync(&self, group: GroupId) -> Result<(), BackendError> {
        self.write(group, true, |_, _| Ok(())).map_err(|e| match e {
            StoreError::Backend(b) => b,
            other => BackendError::Engine(other.to_string()),
        })
    }

    /// Size of the backend's file: cheap (a stat), unlike [`Store::size`], which needs the
    /// writer's lock to count pages in use.
    pub fn file_bytes(&self) -> Result<u64, BackendError> {
        self.backend.file_bytes()
    }

    /// Space used by the backend.
    pub fn size(&self) -> Result<BackendSize, BackendError> {
        self.backend.size()
    }

    /// The backend (for snapshots and maintenance).
    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    /// Publishes a fresh view of `group` after a write made outside [`Store::write`] (a
    /// snapshot install), dropping the simple tokens the new state no longer backs.
    pub(crate) fn republish(&self, group: GroupId) -> Result<(), BackendError> {
        let slot = self.slot(group)?;
        let view = Arc::new(self.load_view(group, None)?);
        let auth = view.auth.clone();
        slot.view.store(Some(view));
        slot.tokens
            .lock()
            .map_err(|_| poisoned())?
            .retain_users(|user| auth.enabled() && auth.user(user).is_some());
        Ok(())
    }

    /// The writer lock of a group, for writers outside [`Store::write`].
    pub(crate) fn with_writer<R>(
        &self,
        group: GroupId,
        f: impl FnOnce() -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let slot = self.slot(group)?;
        let _writer = slot
            .writer
            .lock()
            .map_err(|_| BackendError::Engine("group writer lock poisoned".into()))?;
        f()
    }
}
