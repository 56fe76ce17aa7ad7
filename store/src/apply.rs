//! The one deterministic apply: a batch of committed Raft entries in one backend transaction.

use mango_proto::etcdserverpb::{
    AlarmType, CompactionResponse, DeleteRangeResponse, LeaseCheckpointResponse,
    LeaseGrantResponse, LeaseRevokeResponse, PutResponse, RangeResponse, TxnResponse,
};
use mango_proto::mangopb::RaftRequest;
use mango_proto::mangopb::raft_request::Request;
use prost::Message;

use crate::auth::{AuthCtx, AuthInfo, AuthResponse};
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
    /// An auth request (AuthEnable, UserAdd, Authenticate, RoleGet, ...).
    Auth(AuthResponse),
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
/// is a storage failure and the caller aborts the whole transaction. The caller saves `state`
/// and, once the transaction commits, publishes `auth`'s state and token changes.
pub(crate) fn apply_entries(
    tables: &mut dyn WriteTables,
    state: &mut GroupState,
    auth: &mut AuthCtx,
    entries: &[ApplyEntry<'_>],
) -> Result<Vec<Applied>, StoreError> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.index <= state.applied_index {
            continue;
        }
        let (id, result) = apply_one(tables, state, auth, entry.index, entry.data);
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
    auth: &mut AuthCtx,
    index: u64,
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
        Some(request) => match check(tables, auth, req.auth, &request) {
            Ok(()) => apply_request(tables, state, auth, index, request),
            Err(e) => Err(e),
        },
    };
    (req.id, result)
}

/// etcd's auth applier: a client's request is checked against the auth state as of its
/// entry, with the credentials it was proposed with. A member's own requests (no `auth`)
/// pass.
fn check(
    tables: &dyn WriteTables,
    auth: &AuthCtx,
    credentials: Option<mango_proto::mangopb::RequestAuth>,
    request: &Request,
) -> Result<(), StoreError> {
    let Some(credentials) = credentials else {
        return Ok(());
    };
    if !auth.state.enabled() {
        return Ok(());
    }
    let info = AuthInfo {
        username: credentials.username,
        revision: credentials.auth_revision,
    };
    let lease_keys = |id: i64| crate::lease::keys(tables, id);
    auth.state.check_request(&info, request, &lease_keys)
}

/// etcd's alarm appliers, at apply so every member refuses the same entries: while CORRUPT
/// is raised, writes, compactions and lease grants and revokes fail with "etcdserver:
/// corrupt cluster"; while NOSPACE is raised, puts, txns that write and lease grants fail
/// with "etcdserver: mvcc: database space exceeded" (deletes, compactions and revokes still
/// pass, so space can be freed).
fn check_alarms(tables: &dyn WriteTables, request: &Request) -> Result<(), StoreError> {
    let corrupt_blocks = matches!(
        request,
        Request::Put(_)
            | Request::DeleteRange(_)
            | Request::Txn(_)
            | Request::Compaction(_)
            | Request::LeaseGrant(_)
            | Request::LeaseRevoke(_)
    );
    let nospace_blocks = match request {
        Request::Put(_) | Request::LeaseGrant(_) => true,
        Request::Txn(t) => !crate::txn::is_txn_read_only(t),
        _ => false,
    };
    if !corrupt_blocks && !nospace_blocks {
        return Ok(());
    }
    let alarms = crate::members::alarms(tables)?;
    if corrupt_blocks && alarms.iter().any(|a| a.alarm == AlarmType::Corrupt as i32) {
        return Err(StoreError::Corrupt);
    }
    if nospace_blocks && alarms.iter().any(|a| a.alarm == AlarmType::Nospace as i32) {
        return Err(StoreError::NoSpace);
    }
    Ok(())
}

fn apply_request(
    tables: &mut dyn WriteTables,
    state: &mut GroupState,
    auth: &mut AuthCtx,
    index: u64,
    request: Request,
) -> Result<Response, StoreError> {
    check_alarms(&*tables, &request)?;
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
        auth_request @ (Request::AuthEnable(_)
        | Request::AuthDisable(_)
        | Request::AuthStatus(_)
        | Request::Authenticate(_)
        | Request::AuthUserAdd(_)
        | Request::AuthUserDelete(_)
        | Request::AuthUserGet(_)
        | Request::AuthUserChangePassword(_)
        | Request::AuthUserGrantRole(_)
        | Request::AuthUserRevokeRole(_)
        | Request::AuthUserList(_)
        | Request::AuthRoleList(_)
        | Request::AuthRoleAdd(_)
        | Request::AuthRoleDelete(_)
        | Request::AuthRoleGet(_)
        | Request::AuthRoleGrantPermission(_)
        | Request::AuthRoleRevokePermission(_)) => Response::Auth(crate::auth::apply(
            w.tables,
            auth,
            index,
            begin,
            auth_request,
        )?),
    };
    state.revision = state.revision.max(w.end_revision());
    Ok(response)
}
