//! Helpers shared by the store's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use mango_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest,
};
use mango_proto::mangopb::RaftRequest;
use mango_proto::mangopb::raft_request::Request;
use mango_store::{Applied, ApplyEntry, Response, Store, StoreError};
use prost::Message;

/// A store in a fresh temporary directory.
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_path(dir.path().join("db"), Default::default()).unwrap();
    (dir, store)
}

/// Encodes a request as a Raft entry's data.
pub fn encode(id: u64, request: Request) -> Vec<u8> {
    RaftRequest {
        id,
        auth: None,
        request: Some(request),
    }
    .encode_to_vec()
}

/// Applies one request as the next entry of group 0 and returns its outcome.
pub fn apply_one(store: &Store, request: Request) -> Result<Response, StoreError> {
    let index = store.read(0).unwrap().state().applied_index + 1;
    let data = encode(index, request);
    let mut out: Vec<Applied> = store
        .apply(
            0,
            &[ApplyEntry {
                index,
                term: 1,
                data: &data,
            }],
        )
        .unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0).result
}

pub fn put(key: &str, value: &str) -> Request {
    Request::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

pub fn del(key: &str, range_end: &str) -> Request {
    Request::DeleteRange(DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..Default::default()
    })
}

pub fn compact(rev: i64) -> Request {
    Request::Compaction(CompactionRequest {
        revision: rev,
        physical: false,
    })
}

pub fn txn(t: TxnRequest) -> Request {
    Request::Txn(t)
}

pub fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..Default::default()
    }
}

pub fn put_lease(key: &str, value: &str, lease: i64) -> Request {
    Request::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    })
}

pub fn grant(id: i64, ttl: i64) -> Request {
    Request::LeaseGrant(mango_proto::etcdserverpb::LeaseGrantRequest { ttl, id })
}

pub fn revoke(id: i64) -> Request {
    Request::LeaseRevoke(mango_proto::etcdserverpb::LeaseRevokeRequest { id })
}

/// A LeaseCheckpoint of `(id, remaining_ttl)` pairs.
pub fn checkpoint(checkpoints: &[(i64, i64)]) -> Request {
    use mango_proto::etcdserverpb::{LeaseCheckpoint, LeaseCheckpointRequest};
    Request::LeaseCheckpoint(LeaseCheckpointRequest {
        checkpoints: checkpoints
            .iter()
            .map(|&(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl })
            .collect(),
    })
}
