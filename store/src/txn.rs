//! etcd's Txn: validation (op count, duplicate keys), compares, and execution with one
//! revision for the whole transaction, nested transactions included.

use mango_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mango_proto::etcdserverpb::request_op::Request;
use mango_proto::etcdserverpb::response_op::Response;
use mango_proto::etcdserverpb::{
    Compare, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use mango_proto::mvccpb::KeyValue;

use crate::backend::{BackendError, ReadTables};
use crate::error::StoreError;
use crate::kv::{self, header};
use crate::mvcc::KeySpan;
use crate::mvcc::read::{RangeOpts, range_keys};
use crate::mvcc::write::Writer;

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

/// etcd's checks of a Txn before it is proposed: op counts, each op's own checks, and no key
/// written twice (or both put and deleted) in one branch.
pub fn validate_txn(req: &TxnRequest, max_ops: usize) -> Result<(), StoreError> {
    check_txn_ops(req, max_ops)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn_ops(req: &TxnRequest, max_ops: usize) -> Result<(), StoreError> {
    let opc = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    if opc > max_ops {
        return Err(StoreError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(StoreError::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => kv::validate_range(r)?,
            Some(Request::RequestPut(p)) => kv::validate_put(p)?,
            Some(Request::RequestDeleteRange(d)) => kv::validate_delete(d)?,
            Some(Request::RequestTxn(t)) => check_txn_ops(t, max_ops - opc)?,
            // etcd answers an empty op with "key not found".
            None => return Err(StoreError::KeyNotFound),
        }
    }
    Ok(())
}

/// A deleted span: `[key, range_end)`, the point `key`, or every key from `key` on when
/// `range_end` is `"\0"`. (etcd's interval tree reads `"\0"` literally, so a put after such a
/// delete passes its check and then panics the server when the put needs the deleted key;
/// mango refuses that txn up front as a duplicate key instead.)
struct Deleted {
    key: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Deleted {
    fn hits(&self, k: &[u8]) -> bool {
        match &self.end {
            None => self.key == k,
            Some(end) if end.as_slice() == [0] => self.key.as_slice() <= k,
            Some(end) => self.key.as_slice() <= k && k < end.as_slice(),
        }
    }
}

/// etcd's `checkIntervals`: returns the keys this level (and its children) puts, and the spans
/// it deletes.
fn check_intervals(ops: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Vec<Deleted>), StoreError> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Deleted {
                key: d.key.clone(),
                end: (!d.range_end.is_empty()).then(|| d.range_end.clone()),
            }),
            _ => None,
        })
        .collect();
    let mut puts: Vec<Vec<u8>> = Vec::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.iter().any(|d| d.hits(k)) {
                return Err(StoreError::DuplicateKey);
            }
            puts.push(k.clone());
        }
        for k in &puts_else {
            // The same key in both branches is fine: only one branch runs.
            if (puts.contains(k) && !puts_then.contains(k)) || dels.iter().any(|d| d.hits(k)) {
                return Err(StoreError::DuplicateKey);
            }
            puts.push(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || dels.iter().any(|d| d.hits(&p.key)) {
            return Err(StoreError::DuplicateKey);
        }
        puts.push(p.key.clone());
    }
    Ok((puts, dels))
}

/// Whether a txn writes nothing in either branch, at any depth.
fn is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
            Some(Request::RequestTxn(t)) => is_read_only(t),
            _ => true,
        })
}

/// Evaluates one compare against the keys it names at `head`.
fn compare<R: ReadTables + ?Sized>(
    tables: &R,
    head: i64,
    c: &Compare,
) -> Result<bool, BackendError> {
    let opts = RangeOpts {
        limit: 0,
        count_only: false,
        with_values: true,
    };
    let found = range_keys(tables, KeySpan::new(&c.key, &c.range_end), head, head, opts)?;
    if found.kvs.is_empty() {
        // A missing key has no value to compare: etcd fails value compares on it.
        if c.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(found.kvs.iter().all(|kv| compare_kv(c, kv)))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let int = |v: i64, f: fn(&TargetUnion) -> Option<i64>| {
        v.cmp(&c.target_union.as_ref().and_then(f).unwrap_or(0))
    };
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        Ok(CompareTarget::Version) => int(kv.version, |t| match t {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        }),
        Ok(CompareTarget::Create) => int(kv.create_revision, |t| match t {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        }),
        Ok(CompareTarget::Mod) => int(kv.mod_revision, |t| match t {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        }),
        Ok(CompareTarget::Lease) => int(kv.lease, |t| match t {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        }),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

/// etcd's `compareToPath`: every compare of the txn and of the nested txns on the chosen
/// branches, evaluated against the state before the txn, in depth-first order.
fn compare_path<R: ReadTables + ?Sized>(
    tables: &R,
    head: i64,
    req: &TxnRequest,
    path: &mut Vec<bool>,
) -> Result<(), BackendError> {
    let mut ok = true;
    for c in &req.compare {
        if !compare(tables, head, c)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    let ops = if ok { &req.success } else { &req.failure };
    for op in ops {
        if let Some(Request::RequestTxn(t)) = &op.request {
            compare_path(tables, head, t, path)?;
        }
    }
    Ok(())
}

/// etcd's `checkRequests`: the checks of puts (when the txn writes) and of ranges on the
/// branches the path chose, against the state before the txn.
fn check_path<R: ReadTables + ?Sized>(
    tables: &R,
    head: i64,
    compacted: i64,
    req: &TxnRequest,
    path: &mut std::slice::Iter<'_, bool>,
    writes: bool,
) -> Result<(), StoreError> {
    let ops = if path.next().copied().unwrap_or(false) {
        &req.success
    } else {
        &req.failure
    };
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) if writes => {
                kv::check_put(tables, head, p)?;
            }
            Some(Request::RequestRange(r)) => {
                kv::check_revision(r.revision, head, compacted)?;
            }
            Some(Request::RequestTxn(t)) => check_path(tables, head, compacted, t, path, writes)?,
            _ => {}
        }
    }
    Ok(())
}

/// Applies a Txn.
pub(crate) fn txn(
    w: &mut Writer<'_>,
    compacted: i64,
    req: &TxnRequest,
) -> Result<TxnResponse, StoreError> {
    validate_txn(req, MAX_TXN_OPS)?;
    let head = w.current();
    let mut path = Vec::new();
    compare_path(&*w.tables, head, req, &mut path)?;
    check_path(
        &*w.tables,
        head,
        compacted,
        req,
        &mut path.iter(),
        !is_read_only(req),
    )?;
    let mut resp = execute(w, compacted, req, &mut path.iter()).map_err(|e| match e {
        // Every domain error was ruled out by the checks above, and a write may already have
        // happened: surfacing it as a storage failure aborts the whole batch, as etcd panics.
        StoreError::Backend(b) => StoreError::Backend(b),
        other => StoreError::Backend(BackendError::Engine(format!(
            "txn failed after its checks passed: {other}"
        ))),
    })?;
    resp.header = header(w.end_revision());
    Ok(resp)
}

fn execute(
    w: &mut Writer<'_>,
    compacted: i64,
    req: &TxnRequest,
    path: &mut std::slice::Iter<'_, bool>,
) -> Result<TxnResponse, StoreError> {
    let succeeded = path.next().copied().unwrap_or(false);
    let ops = if succeeded {
        &req.success
    } else {
        &req.failure
    };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => {
                Response::ResponseRange(kv::range(&*w.tables, w.current(), compacted, r)?)
            }
            Some(Request::RequestPut(p)) => {
                let prev = kv::check_put(&*w.tables, w.current(), p)?;
                Response::ResponsePut(kv::put(w, p, prev)?)
            }
            Some(Request::RequestDeleteRange(d)) => {
                Response::ResponseDeleteRange(kv::delete_range(w, d)?)
            }
            Some(Request::RequestTxn(t)) => {
                let mut inner = execute(w, compacted, t, path)?;
                inner.header = Some(ResponseHeader::default());
                Response::ResponseTxn(inner)
            }
            None => return Err(StoreError::KeyNotFound),
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}

/// Serves a txn that writes nothing from a read view (etcd serves these without Raft).
/// The caller checked [`is_txn_read_only`].
pub(crate) fn txn_read_only<R: ReadTables + ?Sized>(
    tables: &R,
    head: i64,
    compacted: i64,
    req: &TxnRequest,
) -> Result<TxnResponse, StoreError> {
    validate_txn(req, MAX_TXN_OPS)?;
    let mut path = Vec::new();
    compare_path(tables, head, req, &mut path)?;
    check_path(tables, head, compacted, req, &mut path.iter(), false)?;
    let mut resp = execute_reads(tables, head, compacted, req, &mut path.iter())?;
    resp.header = header(head);
    Ok(resp)
}

fn execute_reads<R: ReadTables + ?Sized>(
    tables: &R,
    head: i64,
    compacted: i64,
    req: &TxnRequest,
    path: &mut std::slice::Iter<'_, bool>,
) -> Result<TxnResponse, StoreError> {
    let succeeded = path.next().copied().unwrap_or(false);
    let ops = if succeeded {
        &req.success
    } else {
        &req.failure
    };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => {
                Response::ResponseRange(kv::range(tables, head, compacted, r)?)
            }
            Some(Request::RequestTxn(t)) => {
                let mut inner = execute_reads(tables, head, compacted, t, path)?;
                inner.header = Some(ResponseHeader::default());
                Response::ResponseTxn(inner)
            }
            _ => return Err(StoreError::Malformed("a write in a read-only txn".into())),
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}

/// Whether a txn writes nothing in either branch, so it can be served from a read view.
pub fn is_txn_read_only(req: &TxnRequest) -> bool {
    is_read_only(req)
}
