//! The one deterministic apply: a batch of committed Raft entries in one backend transaction.

use mango_proto::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, LeaseCheckpointResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, RangeResponse, TxnResponse,
};
use mango_proto::mangopb::RaftRequest;
use mango_proto::mangopb::raft_request::Request;
use prost::Message;

use crate::backend::WriteTables;
use crate::error::StoreError;
use crate::mvcc::GroupState;
use crate::mvcc::write::Writer;
use crate::txn;
use crate::{kv, lease};

/// One committed Raft entry, as the store sees it.
#[derive(Clone, Copy, Debug)]
pub struct ApplyEntry<'a> {
    /// Raft log index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// An encoded `mangopb.RaftRequest`; empty for entries that carry no request (Raft's
    /// empty entries, configuration changes), which only advance the applied index.
    pub data: &'a [u8],
}

/// What applying one request answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// The entry carried no request.
    Empty,
    /// A Range (a read ordered through the log).
    Range(RangeResponse),
    /// A Put.
    Put(PutResponse),
    /// A DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// A Txn.
    Txn(TxnResponse),
    /// A Compaction.
    Compaction(CompactionResponse),
    /// A LeaseGrant (the header carries the revision; `ID` and `TTL` as granted).
    LeaseGrant(LeaseGrantResponse),
    /// A LeaseRevoke (the header carries the revision after the attached keys' deletion).
    LeaseRevoke(LeaseRevokeResponse),
    /// A LeaseCheckpoint.
    LeaseCheckpoint(LeaseCheckpointResponse),
}

/// The outcome of one applied entry.
#[derive(Debug)]
pub struct Applied {
    /// The entry's index.
    pub index: u64,
    /// The request id its proposer chose (0 when none).
    pub id: u64,
    /// The response, or the error etcd would answer. Errors here change nothing.
    pub result: Result<Response, StoreError>,
}

/// Applies `entries` on top of `state` inside one write transaction. Entries at or below the
/// applied index are skipped (replay after a restart). Returns the outcomes in order; an `Err`
/// is a storage failure and the caller aborts the whole transaction. The caller saves `state`.
pub(crate) fn apply_entries(
    tables: &mut dyn WriteTables,
    state: &mut GroupState,
    entries: &[ApplyEntry<'_>],
) -> Result<Vec<Applied>, StoreError> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.index <= state.applied_index {
            continue;
        }
        let (id, result) = apply_one(tables, state, entry.data);
        if let Err(StoreError::Backend(e)) = result {
            return Err(StoreError::Backend(e));
        }
        state.applied_index = entry.index;
        state.applied_term = entry.term;
        out.push(Applied {
            index: entry.index,
            id,
            result,
        });
    }
    Ok(out)
}

fn apply_one(
    tables: &mut dyn WriteTables,
    state: &mut GroupState,
    data: &[u8],
) -> (u64, Result<Response, StoreError>) {
    if data.is_empty() {
        return (0, Ok(Response::Empty));
    }
    let req = match RaftRequest::decode(data) {
        Ok(req) => req,
        Err(e) => return (0, Err(StoreError::Malformed(e.to_string()))),
    };
    let result = match req.request {
        None => Ok(Response::Empty),
        Some(request) => apply_request(tables, state, request),
    };
    (req.id, result)
}

fn apply_request(
    tables: &mut dyn WriteTables,
    state: &mut GroupState,
    request: Request,
) -> Result<Response, StoreError> {
    let begin = state.revision;
    let compacted = state.compact_revision;
    let mut w = Writer::new(tables, begin);
    let response = match request {
        Request::Range(r) => Response::Range(kv::range(&*w.tables, begin, compacted, &r)?),
        Request::Put(p) => {
            kv::validate_put(&p)?;
            // etcd checks a Put's lease before its key (a Put in a Txn the other way round).
            kv::check_lease(&*w.tables, p.lease)?;
            let prev = kv::check_put(&*w.tables, begin, &p)?;
            Response::Put(kv::put(&mut w, &p, prev)?)
        }
        Request::DeleteRange(d) => Response::DeleteRange(kv::delete_range(&mut w, &d)?),
        Request::Txn(t) => Response::Txn(txn::txn(&mut w, compacted, &t)?),
        Request::Compaction(c) => Response::Compaction(kv::compact(state, &c)?),
        Request::MemberChange(change) => {
            crate::members::apply(w.tables, &change)?;
            Response::Empty
        }
        Request::Alarm(alarm) => {
            crate::members::apply_alarm(w.tables, &alarm)?;
            Response::Empty
        }
        Request::LeaseGrant(g) => Response::LeaseGrant(lease::grant(w.tables, begin, &g)?),
        Request::LeaseRevoke(r) => Response::LeaseRevoke(lease::revoke(&mut w, &r)?),
        Request::LeaseCheckpoint(c) => {
            Response::LeaseCheckpoint(lease::checkpoint(w.tables, begin, &c)?)
        }
    };
    state.revision = state.revision.max(w.end_revision());
    Ok(response)
}
