//! etcd's KV requests on MVCC: validation, Range (filters, sort, limit), Put, DeleteRange and
//! Compaction, with etcd's responses and errors. Txn builds on these in [`crate::txn`].

use mango_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use mango_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader,
};
use mango_proto::mvccpb::KeyValue;

use crate::backend::ReadTables;
use crate::error::StoreError;
use crate::mvcc::read::{RangeOpts, range_keys};
use crate::mvcc::write::Writer;
use crate::mvcc::{GroupState, KeySpan};

/// A response header carrying only a revision; the API layer fills in the rest.
pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// etcd's checks of a Range before it reaches the store.
pub fn validate_range(req: &RangeRequest) -> Result<(), StoreError> {
    if req.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if SortOrder::try_from(req.sort_order).is_err()
        || SortTarget::try_from(req.sort_target).is_err()
    {
        return Err(StoreError::InvalidSortOption);
    }
    Ok(())
}

/// etcd's checks of a Put before it is proposed.
pub fn validate_put(req: &PutRequest) -> Result<(), StoreError> {
    if req.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(StoreError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(StoreError::LeaseProvided);
    }
    Ok(())
}

/// etcd's checks of a DeleteRange before it is proposed.
pub fn validate_delete(req: &DeleteRangeRequest) -> Result<(), StoreError> {
    if req.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    Ok(())
}

/// Checks a read revision against the view: `at` 0 or less means the head.
pub(crate) fn check_revision(at: i64, head: i64, compacted: i64) -> Result<i64, StoreError> {
    if at > head {
        return Err(StoreError::FutureRevision);
    }
    let at = if at <= 0 { head } else { at };
    if at < compacted {
        return Err(StoreError::Compacted);
    }
    Ok(at)
}

/// Serves a Range on tables at revision `head` with compacted revision `compacted`.
pub(crate) fn range<R: ReadTables + ?Sized>(
    tables: &R,
    head: i64,
    compacted: i64,
    req: &RangeRequest,
) -> Result<RangeResponse, StoreError> {
    validate_range(req)?;
    let at = check_revision(req.revision, head, compacted)?;
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // As etcd: sorting or filtering reads everything and truncates afterwards; otherwise read
    // one more than the limit to learn whether there is more.
    let limit = if order != SortOrder::None || filtered || req.limit <= 0 {
        0
    } else {
        usize::try_from(req.limit)
            .unwrap_or(usize::MAX - 1)
            .saturating_add(1)
    };
    let opts = RangeOpts {
        limit,
        count_only: req.count_only,
        with_values: !req.keys_only || target == SortTarget::Value,
    };
    let result = range_keys(
        tables,
        KeySpan::new(&req.key, &req.range_end),
        at,
        head,
        opts,
    )?;
    let mut kvs = result.kvs;
    kvs.retain(|kv| {
        !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
            || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
            || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
            || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
    });
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    sort(&mut kvs, order, target);
    let mut more = false;
    if req.limit > 0 && kvs.len() as i64 > req.limit {
        kvs.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: header(head),
        kvs,
        more,
        count: result.count,
    })
}

/// Sorts key-values as etcd does. Input is in key order; the sort is stable, so ties stay in
/// key order (etcd's sort is unstable there: any order of ties is etcd-correct).
fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let field = |kv: &KeyValue| -> i64 {
        match target {
            SortTarget::Version => kv.version,
            SortTarget::Create => kv.create_revision,
            SortTarget::Mod => kv.mod_revision,
            SortTarget::Key | SortTarget::Value => 0,
        }
    };
    let cmp = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Value => a.value.cmp(&b.value),
        _ => field(a).cmp(&field(b)),
    };
    match order {
        SortOrder::None => {}
        SortOrder::Ascend => kvs.sort_by(cmp),
        SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
    }
}

/// A lease a put names must exist (0 names none).
pub(crate) fn check_lease<R: ReadTables + ?Sized>(
    tables: &R,
    lease: i64,
) -> Result<(), StoreError> {
    if lease != 0 && !crate::lease::exists(tables, lease)? {
        return Err(StoreError::LeaseNotFound);
    }
    Ok(())
}

/// The checks etcd runs on a Put against the state before it (also for Puts inside a Txn):
/// `ignore_value`/`ignore_lease` need the key, then a lease must exist. (A Put outside a Txn
/// checks its lease first: the caller runs [`check_lease`] before.)
pub(crate) fn check_put<R: ReadTables + ?Sized>(
    tables: &R,
    head: i64,
    req: &PutRequest,
) -> Result<Option<KeyValue>, StoreError> {
    let prev = if req.prev_kv || req.ignore_value || req.ignore_lease {
        let opts = RangeOpts {
            limit: 0,
            count_only: false,
            with_values: true,
        };
        range_keys(tables, KeySpan::Single(&req.key), head, head, opts)?
            .kvs
            .pop()
    } else {
        None
    };
    if (req.ignore_value || req.ignore_lease) && prev.is_none() {
        return Err(StoreError::KeyNotFound);
    }
    check_lease(tables, req.lease)?;
    Ok(prev)
}

/// Applies a Put whose checks passed; `prev` is what [`check_put`] returned.
pub(crate) fn put(
    w: &mut Writer<'_>,
    req: &PutRequest,
    prev: Option<KeyValue>,
) -> Result<PutResponse, StoreError> {
    let (value, lease) = match &prev {
        Some(p) => (
            if req.ignore_value {
                p.value.clone()
            } else {
                req.value.clone()
            },
            if req.ignore_lease { p.lease } else { req.lease },
        ),
        None => (req.value.clone(), req.lease),
    };
    w.put(&req.key, value, lease)?;
    Ok(PutResponse {
        header: header(w.current()),
        prev_kv: if req.prev_kv { prev } else { None },
    })
}

/// Applies a DeleteRange.
pub(crate) fn delete_range(
    w: &mut Writer<'_>,
    req: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, StoreError> {
    validate_delete(req)?;
    let span = KeySpan::new(&req.key, &req.range_end);
    let prev_kvs = if req.prev_kv {
        let head = w.current();
        let opts = RangeOpts {
            limit: 0,
            count_only: false,
            with_values: true,
        };
        range_keys(&*w.tables, span, head, head, opts)?.kvs
    } else {
        Vec::new()
    };
    let deleted = w.delete_range(span)?;
    Ok(DeleteRangeResponse {
        header: header(w.current()),
        deleted,
        prev_kvs,
    })
}

/// Applies a Compaction: moves the compacted revision; physical removal follows in the
/// background ([`crate::Store::compact_step`]).
pub(crate) fn compact(
    state: &mut GroupState,
    req: &CompactionRequest,
) -> Result<CompactionResponse, StoreError> {
    if req.revision <= state.compact_revision {
        return Err(StoreError::Compacted);
    }
    if req.revision > state.revision {
        return Err(StoreError::FutureRevision);
    }
    state.compact_revision = req.revision;
    Ok(CompactionResponse {
        header: header(state.revision),
    })
}
