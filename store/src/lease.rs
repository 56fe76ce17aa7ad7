//! Leases, the replicated part of etcd's lessor: which leases exist with their granted TTL and
//! last checkpointed remaining TTL, and which live keys are attached to each. Grant, revoke
//! and checkpoint are applied here; attaching and detaching keys happens in
//! [`crate::mvcc::write::Writer`], with the put or delete that causes it, as etcd's MVCC calls
//! its lessor from inside the write transaction.
//!
//! Layout (see [`Table`]): `Leases` maps the encoded lease id to a [`LeaseRecord`];
//! `LeaseKeys` holds `lease id ++ raw key` for every live key whose current version names the
//! lease, so a revoke finds its keys in key order with one range scan. The link the other way
//! is `KeyMeta::lease` in `Live`. Invariant: an entry is in `LeaseKeys` iff the key is live
//! and its `KeyMeta::lease` is that lease, and every lease a live key names exists (a put
//! checks the lease exists; a revoke deletes every key attached).
//!
//! What the store does not do: choose lease ids, clamp short TTLs, keep time or expire
//! leases. Apply must be deterministic, so the proposer picks the id of a grant that asks for
//! none (etcd's server does it before proposing too) and apply answers an id of 0 with
//! [`StoreError::Malformed`]; the API layer raises a TTL below etcd's minimum before
//! proposing; expiry is the leader's lessor proposing a revoke.

use std::ops::ControlFlow;

use mango_proto::etcdserverpb::{
    LeaseCheckpointRequest, LeaseCheckpointResponse, LeaseGrantRequest, LeaseGrantResponse,
    LeaseRevokeRequest, LeaseRevokeResponse,
};

use crate::backend::{BackendError, ReadTables, Table, WriteTables};
use crate::encoding::{
    LeaseRecord, decode_lease_id, encode_lease_id, lease_key, lease_key_bounds, split_lease_key,
};
use crate::error::StoreError;
use crate::kv::header;
use crate::mvcc::KeySpan;
use crate::mvcc::write::Writer;

/// etcd's `MaxLeaseTTL`: the largest TTL a lease may be granted with, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// A lease as a read view sees it (for LeaseTimeToLive and LeaseLeases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease id.
    pub id: i64,
    /// The TTL it was granted with, in seconds.
    pub granted_ttl: i64,
    /// The remaining TTL its last checkpoint recorded, if any (etcd's lessor resumes from it
    /// when a new leader takes over, instead of the granted TTL).
    pub remaining_ttl: Option<i64>,
}

fn corrupt(table: Table, what: String) -> BackendError {
    BackendError::Corrupt { table, what }
}

fn decode_record(bytes: &[u8]) -> Result<LeaseRecord, BackendError> {
    LeaseRecord::decode(bytes)
        .ok_or_else(|| corrupt(Table::Leases, format!("lease of {} bytes", bytes.len())))
}

fn info(id: i64, record: LeaseRecord) -> LeaseInfo {
    LeaseInfo {
        id,
        granted_ttl: record.ttl,
        remaining_ttl: (record.remaining_ttl > 0).then_some(record.remaining_ttl),
    }
}

fn record<R: ReadTables + ?Sized>(
    tables: &R,
    id: i64,
) -> Result<Option<LeaseRecord>, BackendError> {
    match tables.get(Table::Leases, &encode_lease_id(id))? {
        Some(bytes) => Ok(Some(decode_record(&bytes)?)),
        None => Ok(None),
    }
}

/// Whether lease `id` exists.
pub(crate) fn exists<R: ReadTables + ?Sized>(tables: &R, id: i64) -> Result<bool, BackendError> {
    Ok(tables.get(Table::Leases, &encode_lease_id(id))?.is_some())
}

/// Lease `id`, if it exists.
pub(crate) fn get<R: ReadTables + ?Sized>(
    tables: &R,
    id: i64,
) -> Result<Option<LeaseInfo>, BackendError> {
    Ok(record(tables, id)?.map(|r| info(id, r)))
}

/// Every lease, in id order.
pub(crate) fn list<R: ReadTables + ?Sized>(tables: &R) -> Result<Vec<LeaseInfo>, BackendError> {
    let mut out = Vec::new();
    let mut bad = None;
    tables.scan(Table::Leases, &[], None, false, &mut |k, v| match (
        decode_lease_id(k),
        LeaseRecord::decode(v),
    ) {
        (Some(id), Some(r)) => {
            out.push(info(id, r));
            ControlFlow::Continue(())
        }
        _ => {
            bad = Some(format!("lease entry {k:?} -> {v:?}"));
            ControlFlow::Break(())
        }
    })?;
    match bad {
        Some(what) => Err(corrupt(Table::Leases, what)),
        None => Ok(out),
    }
}

/// The live keys attached to lease `id`, in key order (empty for an unknown lease).
pub(crate) fn keys<R: ReadTables + ?Sized>(
    tables: &R,
    id: i64,
) -> Result<Vec<Vec<u8>>, BackendError> {
    let (start, end) = lease_key_bounds(id);
    let mut out = Vec::new();
    let mut bad = None;
    tables.scan(
        Table::LeaseKeys,
        &start,
        end.as_ref().map(|e| e.as_slice()),
        false,
        &mut |k, _| match split_lease_key(k) {
            Some((_, key)) => {
                out.push(key.to_vec());
                ControlFlow::Continue(())
            }
            None => {
                bad = Some(format!("lease key {k:?}"));
                ControlFlow::Break(())
            }
        },
    )?;
    match bad {
        Some(what) => Err(corrupt(Table::LeaseKeys, what)),
        None => Ok(out),
    }
}

/// Attaches `key` to lease `id` (etcd's `lessor.Attach`).
pub(crate) fn attach(
    tables: &mut dyn WriteTables,
    id: i64,
    key: &[u8],
) -> Result<(), BackendError> {
    tables.put(Table::LeaseKeys, &lease_key(id, key), &[])
}

/// Detaches `key` from lease `id` (etcd's `lessor.Detach`); nothing if it was not attached.
pub(crate) fn detach(
    tables: &mut dyn WriteTables,
    id: i64,
    key: &[u8],
) -> Result<(), BackendError> {
    tables.delete(Table::LeaseKeys, &lease_key(id, key))
}

/// Applies a LeaseGrant at revision `head` (a grant makes no revision). etcd's checks, in
/// etcd's order: the id (0 is refused here, see the module doc), the TTL against
/// [`MAX_LEASE_TTL`], then whether the id is taken. The TTL is stored as given.
pub(crate) fn grant(
    tables: &mut dyn WriteTables,
    head: i64,
    req: &LeaseGrantRequest,
) -> Result<LeaseGrantResponse, StoreError> {
    if req.id == 0 {
        return Err(StoreError::Malformed(
            "lease grant with ID 0: the proposer must choose the lease ID".into(),
        ));
    }
    if req.ttl > MAX_LEASE_TTL {
        return Err(StoreError::LeaseTtlTooLarge);
    }
    if exists(&*tables, req.id)? {
        return Err(StoreError::LeaseExists);
    }
    let record = LeaseRecord {
        ttl: req.ttl,
        remaining_ttl: 0,
    };
    tables.put(Table::Leases, &encode_lease_id(req.id), &record.encode())?;
    Ok(LeaseGrantResponse {
        header: header(head),
        id: req.id,
        ttl: req.ttl,
        error: String::new(),
    })
}

/// Applies a LeaseRevoke: deletes every key attached to the lease, in key order, as one write
/// transaction (one revision with a sub revision per key; none if no key is attached), then
/// removes the lease. The header carries the revision after the deletes, as etcd's.
pub(crate) fn revoke(
    w: &mut Writer<'_>,
    req: &LeaseRevokeRequest,
) -> Result<LeaseRevokeResponse, StoreError> {
    if !exists(&*w.tables, req.id)? {
        return Err(StoreError::LeaseNotFound);
    }
    // etcd sorts the keys so that every member deletes them in the same order; the index
    // already holds them in key order.
    for key in keys(&*w.tables, req.id)? {
        // A DeleteRange of the one key, as etcd's revoke: deletes it if live and detaches
        // it; the index entry goes in any case, so nothing of the lease outlives it.
        w.delete_range(KeySpan::Single(&key))?;
        detach(w.tables, req.id, &key)?;
    }
    w.tables.delete(Table::Leases, &encode_lease_id(req.id))?;
    Ok(LeaseRevokeResponse {
        header: header(w.current()),
    })
}

/// Applies a LeaseCheckpoint at revision `head`: records each lease's remaining TTL; ids of
/// leases that do not exist (revoked since the leader took the checkpoint) are skipped.
pub(crate) fn checkpoint(
    tables: &mut dyn WriteTables,
    head: i64,
    req: &LeaseCheckpointRequest,
) -> Result<LeaseCheckpointResponse, StoreError> {
    for cp in &req.checkpoints {
        if let Some(mut r) = record(&*tables, cp.id)? {
            r.remaining_ttl = cp.remaining_ttl;
            tables.put(Table::Leases, &encode_lease_id(cp.id), &r.encode())?;
        }
    }
    Ok(LeaseCheckpointResponse {
        header: header(head),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mango_proto::etcdserverpb::PutRequest;
    use mango_proto::mangopb::RaftRequest;
    use mango_proto::mangopb::raft_request::Request;
    use prost::Message;

    use super::*;
    use crate::encoding::Revision;
    use crate::mvcc::{KIND_DELETE, decode_rev_record};
    use crate::{ApplyEntry, Response, Store};

    fn apply(store: &Store, request: Request) -> Result<Response, StoreError> {
        let index = store.read(0).unwrap().state().applied_index + 1;
        let data = RaftRequest {
            id: index,
            auth: None,
            request: Some(request),
        }
        .encode_to_vec();
        let entry = ApplyEntry {
            index,
            term: 1,
            data: &data,
        };
        store.apply(0, &[entry]).unwrap().remove(0).result
    }

    fn put(key: &str, lease: i64) -> Request {
        Request::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })
    }

    /// The revoke's changes as the revision log holds them: `(revision, kind, key)`.
    #[test]
    fn revoke_deletes_in_key_order_with_one_sub_revision_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(dir.path().join("db"), Default::default()).unwrap();
        apply(
            &store,
            Request::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 5 }),
        )
        .unwrap();
        for key in ["c", "a", "b"] {
            apply(&store, put(key, 5)).unwrap();
        }
        apply(&store, put("other", 0)).unwrap();
        let Response::LeaseRevoke(resp) =
            apply(&store, Request::LeaseRevoke(LeaseRevokeRequest { id: 5 })).unwrap()
        else {
            panic!("not a revoke response")
        };
        assert_eq!(resp.header.unwrap().revision, 6);
        let view = store.read(0).unwrap();
        let mut changes = Vec::new();
        let start = Revision::new(6, i64::MIN).encode();
        view.snapshot()
            .scan(Table::Revs, &start, None, false, &mut |k, v| {
                let (kind, kv) = decode_rev_record(v).unwrap();
                changes.push((Revision::decode(k).unwrap(), kind, kv.key));
                ControlFlow::Continue(())
            })
            .unwrap();
        let want: Vec<(Revision, u8, Vec<u8>)> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    Revision::new(6, i as i64),
                    KIND_DELETE,
                    k.as_bytes().to_vec(),
                )
            })
            .collect();
        assert_eq!(changes, want);
        // Nothing of the lease is left behind.
        assert!(view.lease(5).unwrap().is_none());
        let mut index = 0;
        view.snapshot()
            .scan(Table::LeaseKeys, &[], None, false, &mut |_, _| {
                index += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(index, 0);
    }
}
