//! Property test: random Put / DeleteRange / Txn / Compact / Range / LeaseGrant / LeaseRevoke /
//! LeaseCheckpoint sequences run against the store (through `apply`, and through read views)
//! and against a small in-memory model of etcd's semantics; every response must be equal. The
//! model keeps the whole key space per revision, which is obviously right and hopelessly slow:
//! the store must agree with it. It keeps no lease-to-key index: a lease's keys are the live
//! keys whose value names it, etcd's definition, against which the store's index is checked.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{apply_one, temp_store};
use mango_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mango_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use mango_proto::etcdserverpb::request_op::Request as OpReq;
use mango_proto::etcdserverpb::response_op::Response as OpResp;
use mango_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseCheckpointResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use mango_proto::mangopb::raft_request::Request;
use mango_proto::mvccpb::KeyValue;
use mango_store::{LeaseInfo, MAX_LEASE_TTL, Response, Store, StoreError};
use proptest::prelude::*;

type State = BTreeMap<Vec<u8>, KeyValue>;

/// etcd's semantics, the slow and obvious way.
struct Model {
    /// `states[r]` is the key space at revision `r` (index 0 unused, revision 1 is empty).
    states: Vec<State>,
    compacted: i64,
    /// Granted leases: id -> (granted TTL, remaining TTL of the last checkpoint, 0 if none).
    leases: BTreeMap<i64, (i64, i64)>,
}

fn hdr(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn in_span(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    match end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

/// Errors compared by message (StoreError is not PartialEq).
type Res<T> = Result<T, String>;

fn err(e: StoreError) -> String {
    e.to_string()
}

impl Model {
    fn new() -> Self {
        Self {
            states: vec![State::new(), State::new()],
            compacted: -1,
            leases: BTreeMap::new(),
        }
    }

    fn rev(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn head(&self) -> &State {
        &self.states[self.states.len() - 1]
    }

    fn range_in(&self, cur: &State, cur_rev: i64, r: &RangeRequest) -> Res<RangeResponse> {
        mango_store::validate_range(r).map_err(err)?;
        if r.revision > cur_rev {
            return Err(err(StoreError::FutureRevision));
        }
        let at = if r.revision <= 0 { cur_rev } else { r.revision };
        if at < self.compacted {
            return Err(err(StoreError::Compacted));
        }
        let state = if at == cur_rev {
            cur
        } else {
            &self.states[at as usize]
        };
        let all: Vec<KeyValue> = state
            .values()
            .filter(|kv| in_span(&kv.key, &r.key, &r.range_end))
            .cloned()
            .collect();
        let count = all.len() as i64;
        if r.count_only {
            return Ok(RangeResponse {
                header: hdr(cur_rev),
                kvs: vec![],
                more: false,
                count,
            });
        }
        let mut kvs: Vec<KeyValue> = all
            .into_iter()
            .filter(|kv| r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            .filter(|kv| r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            .filter(|kv| r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            .filter(|kv| r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
            .collect();
        let target = SortTarget::try_from(r.sort_target).unwrap();
        let mut order = SortOrder::try_from(r.sort_order).unwrap();
        let filtered = r.min_mod_revision != 0
            || r.max_mod_revision != 0
            || r.min_create_revision != 0
            || r.max_create_revision != 0;
        if order == SortOrder::None && !filtered && r.limit > 0 {
            // etcd's quirk: without an explicit order it reads limit + 1 keys in key order and
            // sorts only those, even when the sort target is not the key.
            kvs.truncate(r.limit as usize + 1);
        }
        if target != SortTarget::Key && order == SortOrder::None {
            order = SortOrder::Ascend;
        }
        let key_of = |kv: &KeyValue| -> (Vec<u8>, i64) {
            match target {
                SortTarget::Key => (kv.key.clone(), 0),
                SortTarget::Version => (vec![], kv.version),
                SortTarget::Create => (vec![], kv.create_revision),
                SortTarget::Mod => (vec![], kv.mod_revision),
                SortTarget::Value => (kv.value.clone(), 0),
            }
        };
        match order {
            SortOrder::None => {}
            SortOrder::Ascend => kvs.sort_by_key(key_of),
            SortOrder::Descend => kvs.sort_by_key(|kv| std::cmp::Reverse(key_of(kv))),
        }
        let mut more = false;
        if r.limit > 0 && kvs.len() > r.limit as usize {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        Ok(RangeResponse {
            header: hdr(cur_rev),
            kvs,
            more,
            count,
        })
    }

    fn compare(&self, c: &Compare) -> bool {
        let kvs: Vec<&KeyValue> = self
            .head()
            .values()
            .filter(|kv| in_span(&kv.key, &c.key, &c.range_end))
            .collect();
        let target = CompareTarget::try_from(c.target).unwrap();
        let zero = KeyValue::default();
        if kvs.is_empty() && target == CompareTarget::Value {
            return false;
        }
        let kvs = if kvs.is_empty() { vec![&zero] } else { kvs };
        kvs.iter().all(|kv| {
            let ord = match (&c.target_union, target) {
                (Some(TargetUnion::Value(v)), CompareTarget::Value) => kv.value.cmp(v),
                (Some(TargetUnion::Version(v)), CompareTarget::Version) => kv.version.cmp(v),
                (Some(TargetUnion::CreateRevision(v)), CompareTarget::Create) => {
                    kv.create_revision.cmp(v)
                }
                (Some(TargetUnion::ModRevision(v)), CompareTarget::Mod) => kv.mod_revision.cmp(v),
                (Some(TargetUnion::Lease(v)), CompareTarget::Lease) => kv.lease.cmp(v),
                _ => unreachable!("generator pairs target and union"),
            };
            match CompareResult::try_from(c.result).unwrap() {
                CompareResult::Equal => ord.is_eq(),
                CompareResult::NotEqual => ord.is_ne(),
                CompareResult::Greater => ord.is_gt(),
                CompareResult::Less => ord.is_lt(),
            }
        })
    }

    /// Checks that run before a write txn (or a put) against the pre-state.
    fn check(&self, t: &TxnRequest, writes: bool) -> Res<()> {
        let ops = if t.compare.iter().all(|c| self.compare(c)) {
            &t.success
        } else {
            &t.failure
        };
        for op in ops {
            match &op.request {
                Some(OpReq::RequestPut(p)) if writes => self.check_put(p)?,
                Some(OpReq::RequestRange(r)) => {
                    if r.revision > self.rev() {
                        return Err(err(StoreError::FutureRevision));
                    }
                    if r.revision > 0 && r.revision < self.compacted {
                        return Err(err(StoreError::Compacted));
                    }
                }
                Some(OpReq::RequestTxn(inner)) => self.check(inner, writes)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// etcd's `checkRequestPut`: the key first, then the lease.
    fn check_put(&self, p: &PutRequest) -> Res<()> {
        if (p.ignore_value || p.ignore_lease) && !self.head().contains_key(&p.key) {
            return Err(err(StoreError::KeyNotFound));
        }
        self.check_lease(p.lease)
    }

    fn check_lease(&self, lease: i64) -> Res<()> {
        if lease != 0 && !self.leases.contains_key(&lease) {
            return Err(err(StoreError::LeaseNotFound));
        }
        Ok(())
    }

    /// The leases as the store's read view lists them.
    fn lease_infos(&self) -> Vec<LeaseInfo> {
        self.leases
            .iter()
            .map(|(&id, &(ttl, remaining))| LeaseInfo {
                id,
                granted_ttl: ttl,
                remaining_ttl: (remaining > 0).then_some(remaining),
            })
            .collect()
    }

    /// The keys attached to a lease: the live keys whose current version names it.
    fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.head()
            .values()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.clone())
            .collect()
    }

    /// Runs the write of one request on a working copy; returns the response and whether it
    /// changed anything.
    fn put_in(&self, cur: &mut State, rev: i64, p: &PutRequest) -> PutResponse {
        let prev = cur.get(&p.key).cloned();
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: prev.as_ref().map_or(rev, |k| k.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |k| k.version + 1),
            value: if p.ignore_value {
                prev.as_ref().unwrap().value.clone()
            } else {
                p.value.clone()
            },
            lease: if p.ignore_lease {
                prev.as_ref().unwrap().lease
            } else {
                p.lease
            },
        };
        cur.insert(p.key.clone(), kv);
        PutResponse {
            header: hdr(rev),
            prev_kv: if p.prev_kv { prev } else { None },
        }
    }

    fn delete_in(cur: &mut State, d: &DeleteRangeRequest) -> (Vec<KeyValue>, i64) {
        let keys: Vec<Vec<u8>> = cur
            .keys()
            .filter(|k| in_span(k, &d.key, &d.range_end))
            .cloned()
            .collect();
        let prev: Vec<KeyValue> = keys.iter().map(|k| cur.remove(k).unwrap()).collect();
        let n = prev.len() as i64;
        (if d.prev_kv { prev } else { vec![] }, n)
    }

    fn exec_txn(
        &self,
        cur: &mut State,
        begin: i64,
        changed: &mut bool,
        t: &TxnRequest,
        top: bool,
    ) -> TxnResponse {
        let succeeded = t.compare.iter().all(|c| self.compare(c));
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::new();
        for op in ops {
            let cur_rev = |changed: bool| if changed { begin + 1 } else { begin };
            let resp = match op.request.as_ref().unwrap() {
                OpReq::RequestRange(r) => {
                    OpResp::ResponseRange(self.range_in(cur, cur_rev(*changed), r).unwrap())
                }
                OpReq::RequestPut(p) => {
                    *changed = true;
                    OpResp::ResponsePut(self.put_in(cur, begin + 1, p))
                }
                OpReq::RequestDeleteRange(d) => {
                    let (prev_kvs, deleted) = Self::delete_in(cur, d);
                    *changed |= deleted > 0;
                    OpResp::ResponseDeleteRange(DeleteRangeResponse {
                        header: hdr(cur_rev(*changed)),
                        deleted,
                        prev_kvs,
                    })
                }
                OpReq::RequestTxn(inner) => {
                    OpResp::ResponseTxn(self.exec_txn(cur, begin, changed, inner, false))
                }
            };
            responses.push(ResponseOp {
                response: Some(resp),
            });
        }
        let header = if top {
            None
        } else {
            Some(ResponseHeader::default())
        };
        TxnResponse {
            header,
            succeeded,
            responses,
        }
    }

    fn commit(&mut self, cur: State, changed: bool) {
        if changed {
            self.states.push(cur);
        }
    }

    fn apply(&mut self, req: &Request) -> Res<Response> {
        let begin = self.rev();
        match req {
            Request::Put(p) => {
                mango_store::validate_put(p).map_err(err)?;
                // Outside a txn etcd looks up the lease before the key.
                self.check_lease(p.lease)?;
                self.check_put(p)?;
                let mut cur = self.head().clone();
                let resp = self.put_in(&mut cur, begin + 1, p);
                self.commit(cur, true);
                Ok(Response::Put(resp))
            }
            Request::DeleteRange(d) => {
                mango_store::validate_delete(d).map_err(err)?;
                let mut cur = self.head().clone();
                let (prev_kvs, deleted) = Self::delete_in(&mut cur, d);
                self.commit(cur, deleted > 0);
                Ok(Response::DeleteRange(DeleteRangeResponse {
                    header: hdr(self.rev()),
                    deleted,
                    prev_kvs,
                }))
            }
            Request::Txn(t) => {
                mango_store::validate_txn(t, mango_store::MAX_TXN_OPS).map_err(err)?;
                self.check(t, !mango_store::is_txn_read_only(t))?;
                let mut cur = self.head().clone();
                let mut changed = false;
                let mut resp = self.exec_txn(&mut cur, begin, &mut changed, t, true);
                self.commit(cur, changed);
                resp.header = hdr(self.rev());
                Ok(Response::Txn(resp))
            }
            Request::Compaction(c) => {
                if c.revision <= self.compacted {
                    return Err(err(StoreError::Compacted));
                }
                if c.revision > begin {
                    return Err(err(StoreError::FutureRevision));
                }
                self.compacted = c.revision;
                Ok(Response::Compaction(CompactionResponse {
                    header: hdr(begin),
                }))
            }
            Request::Range(r) => Ok(Response::Range(self.range_in(self.head(), begin, r)?)),
            Request::LeaseGrant(g) => {
                if g.ttl > MAX_LEASE_TTL {
                    return Err(err(StoreError::LeaseTtlTooLarge));
                }
                if self.leases.contains_key(&g.id) {
                    return Err(err(StoreError::LeaseExists));
                }
                self.leases.insert(g.id, (g.ttl, 0));
                Ok(Response::LeaseGrant(LeaseGrantResponse {
                    header: hdr(begin),
                    id: g.id,
                    ttl: g.ttl,
                    error: String::new(),
                }))
            }
            Request::LeaseRevoke(r) => {
                if self.leases.remove(&r.id).is_none() {
                    return Err(err(StoreError::LeaseNotFound));
                }
                let doomed = self.lease_keys(r.id);
                let mut cur = self.head().clone();
                for k in &doomed {
                    cur.remove(k);
                }
                self.commit(cur, !doomed.is_empty());
                Ok(Response::LeaseRevoke(LeaseRevokeResponse {
                    header: hdr(self.rev()),
                }))
            }
            Request::LeaseCheckpoint(c) => {
                for cp in &c.checkpoints {
                    if let Some(lease) = self.leases.get_mut(&cp.id) {
                        lease.1 = cp.remaining_ttl;
                    }
                }
                Ok(Response::LeaseCheckpoint(LeaseCheckpointResponse {
                    header: hdr(begin),
                }))
            }
            _ => unreachable!("not generated"),
        }
    }
}

// ---- generators ----

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"a".to_vec()),
        Just(b"a\0".to_vec()),
        Just(b"ab".to_vec()),
        Just(b"b".to_vec()),
        Just(b"c".to_vec()),
        Just(b"d".to_vec()),
        Just(b"\xff".to_vec()),
    ]
}

fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => Just(vec![]), 1 => Just(vec![0]), 2 => key()]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![]),
        Just(b"x".to_vec()),
        Just(b"y".to_vec()),
        Just(b"zz".to_vec())
    ]
}

/// Lease ids: a few, so grants collide and puts find them; negative and the extremes so the
/// id encoding's order and the last id's key bounds are exercised.
fn lease_id() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => Just(1i64),
        3 => Just(2i64),
        2 => Just(-3i64),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
    ]
}

/// Every id `lease_id` yields, and one never granted.
const LEASE_IDS: [i64; 6] = [1, 2, -3, i64::MAX, i64::MIN, 7];

fn put_req() -> impl Strategy<Value = PutRequest> {
    (
        key(),
        value(),
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop_oneof![6 => Just(0i64), 3 => lease_id(), 1 => Just(7i64)],
    )
        .prop_map(
            |(key, value, prev_kv, ignore_value, ignore_lease, lease)| PutRequest {
                key,
                value: if ignore_value { vec![] } else { value },
                lease: if ignore_lease { 0 } else { lease },
                prev_kv,
                ignore_value,
                ignore_lease,
            },
        )
}

fn del_req() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn range_req() -> impl Strategy<Value = RangeRequest> {
    (
        (
            key(),
            range_end(),
            0i64..4,
            prop_oneof![3 => Just(0i64), 1 => 1i64..12],
        ),
        (
            0i32..3,
            0i32..5,
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.1),
        ),
        (
            prop_oneof![3 => Just(0i64), 1 => 1i64..10],
            prop_oneof![3 => Just(0i64), 1 => 1i64..10],
        ),
    )
        .prop_map(
            |(
                (key, range_end, limit, revision),
                (sort_order, sort_target, keys_only, count_only),
                (min_mod, max_create),
            )| {
                RangeRequest {
                    key,
                    range_end,
                    limit,
                    revision,
                    sort_order,
                    sort_target,
                    keys_only,
                    count_only,
                    min_mod_revision: min_mod,
                    max_create_revision: max_create,
                    ..Default::default()
                }
            },
        )
}

fn compare() -> impl Strategy<Value = Compare> {
    (
        key(),
        prop_oneof![4 => Just(vec![]), 1 => range_end()],
        0i32..4,
        0i32..5,
        value(),
        0i64..8,
    )
        .prop_map(|(key, range_end, result, target, v, n)| {
            let target_union = Some(match target {
                0 => TargetUnion::Version(n % 3),
                1 => TargetUnion::CreateRevision(n),
                2 => TargetUnion::ModRevision(n),
                3 => TargetUnion::Value(v),
                _ => TargetUnion::Lease(LEASE_IDS[n as usize % 3]),
            });
            Compare {
                result,
                target,
                key,
                range_end,
                target_union,
            }
        })
}

fn op(depth: u32) -> BoxedStrategy<RequestOp> {
    let leaf = prop_oneof![
        range_req().prop_map(OpReq::RequestRange),
        put_req().prop_map(OpReq::RequestPut),
        del_req().prop_map(OpReq::RequestDeleteRange),
    ];
    let req = if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![4 => leaf, 1 => txn_req(depth - 1).prop_map(OpReq::RequestTxn)].boxed()
    };
    req.prop_map(|r| RequestOp { request: Some(r) }).boxed()
}

fn txn_req(depth: u32) -> BoxedStrategy<TxnRequest> {
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op(depth), 0..4),
        prop::collection::vec(op(depth), 0..4),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
        .boxed()
}

fn grant_req() -> impl Strategy<Value = LeaseGrantRequest> {
    (
        lease_id(),
        prop_oneof![
            8 => 1i64..100,
            1 => -5i64..=0,
            1 => Just(MAX_LEASE_TTL),
            1 => Just(MAX_LEASE_TTL + 1),
        ],
    )
        .prop_map(|(id, ttl)| LeaseGrantRequest { ttl, id })
}

fn checkpoint_req() -> impl Strategy<Value = LeaseCheckpointRequest> {
    prop::collection::vec((lease_id(), -2i64..50), 0..3).prop_map(|cps| LeaseCheckpointRequest {
        checkpoints: cps
            .into_iter()
            .map(|(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl })
            .collect(),
    })
}

#[derive(Clone, Debug)]
enum Step {
    Apply(Request),
    /// A Range served from the published read view rather than through the log.
    Read(RangeRequest),
    /// Some physical compaction work.
    PhysicalCompaction(usize),
    /// Close and reopen the store.
    Reopen,
    /// The leases and their keys, read from the published read view.
    ReadLeases,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => put_req().prop_map(|p| Step::Apply(Request::Put(p))),
        2 => del_req().prop_map(|d| Step::Apply(Request::DeleteRange(d))),
        3 => txn_req(1).prop_map(|t| Step::Apply(Request::Txn(t))),
        1 => (0i64..14).prop_map(|r| Step::Apply(Request::Compaction(CompactionRequest { revision: r, physical: false }))),
        1 => range_req().prop_map(|r| Step::Apply(Request::Range(r))),
        4 => range_req().prop_map(Step::Read),
        1 => (1usize..6).prop_map(Step::PhysicalCompaction),
        1 => Just(Step::Reopen),
        2 => grant_req().prop_map(|g| Step::Apply(Request::LeaseGrant(g))),
        1 => prop_oneof![lease_id(), Just(7i64)]
            .prop_map(|id| Step::Apply(Request::LeaseRevoke(LeaseRevokeRequest { id }))),
        1 => checkpoint_req().prop_map(|c| Step::Apply(Request::LeaseCheckpoint(c))),
        1 => Just(Step::ReadLeases),
    ]
}

fn store_result(r: Result<Response, StoreError>) -> Res<Response> {
    r.map_err(err)
}

/// The leases and each lease's keys, read through the store's view, must equal the model.
fn check_leases(store: &Store, model: &Model) -> Result<(), TestCaseError> {
    let view = store.read(0).unwrap();
    prop_assert_eq!(view.leases().unwrap(), model.lease_infos());
    for id in LEASE_IDS {
        prop_assert_eq!(
            view.lease_keys(id).unwrap(),
            model.lease_keys(id),
            "keys of {}",
            id
        );
        let want = model.lease_infos().into_iter().find(|l| l.id == id);
        prop_assert_eq!(view.lease(id).unwrap(), want);
    }
    Ok(())
}

/// Every key at every readable revision, read through the store's view, must equal the model.
fn check_all_revisions(store: &Store, model: &Model) {
    let view = store.read(0).unwrap();
    assert_eq!(view.revision(), model.rev());
    let from = model.compacted.max(1);
    for rev in from..=model.rev() {
        let r = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            ..Default::default()
        };
        let got = view.range(&r).map_err(err);
        let want = model.range_in(model.head(), model.rev(), &r);
        assert_eq!(got, want, "full read at revision {rev}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(steps in prop::collection::vec(step(), 1..60)) {
        let (dir, mut store) = temp_store();
        let mut model = Model::new();
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Apply(req) => {
                    let want = model.apply(req);
                    let got = store_result(apply_one(&store, req.clone()));
                    prop_assert_eq!(got, want, "step {}: {:?}", i, req);
                }
                Step::Read(r) => {
                    let view = store.read(0).unwrap();
                    let got = view.range(r).map_err(err);
                    let want = model.range_in(model.head(), model.rev(), r);
                    prop_assert_eq!(got, want, "step {}: read {:?}", i, r);
                }
                Step::PhysicalCompaction(n) => {
                    store.compact_step(0, *n).unwrap();
                }
                Step::Reopen => {
                    drop(store);
                    store = Store::open_path(dir.path().join("db"), Default::default()).unwrap();
                }
                Step::ReadLeases => check_leases(&store, &model)?,
            }
        }
        check_leases(&store, &model)?;
        check_all_revisions(&store, &model);
        store.compact_all(0).unwrap();
        check_all_revisions(&store, &model);
    }
}
