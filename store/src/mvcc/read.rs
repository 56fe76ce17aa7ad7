//! Reading keys at a revision: the head from `Live`, older revisions from `History`.

use std::ops::ControlFlow;

use mango_proto::mvccpb::KeyValue;

use super::{KIND_PUT, KeySpan, decode_meta, load_rev};
use crate::backend::{BackendError, ReadTables, Table};
use crate::encoding::{KeyMeta, Revision, encode_key, split_history_key};

/// The keys of a range read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RangeResult {
    /// The key-values found, in key order, at most `limit` of them.
    pub kvs: Vec<KeyValue>,
    /// How many keys the span holds at that revision, whatever the limit.
    pub count: i64,
}

/// What a range read collects.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RangeOpts {
    /// Collect at most this many key-values (0: all); `count` still counts them all.
    pub limit: usize,
    /// Count only, collect nothing.
    pub count_only: bool,
    /// Load values (otherwise `value` is left empty).
    pub with_values: bool,
}

impl RangeOpts {
    fn wants(&self, collected: usize) -> bool {
        !self.count_only && (self.limit == 0 || collected < self.limit)
    }
}

/// Reads `span` as of revision `at`, where `head` is the revision the tables are at. The caller
/// has checked `at` against the compacted and current revisions.
pub(crate) fn range_keys<R: ReadTables + ?Sized>(
    tables: &R,
    span: KeySpan<'_>,
    at: i64,
    head: i64,
    opts: RangeOpts,
) -> Result<RangeResult, BackendError> {
    if at >= head {
        range_live(tables, span, opts)
    } else {
        range_history(tables, span, at, opts)
    }
}

fn kv_from_meta<R: ReadTables + ?Sized>(
    tables: &R,
    key: Vec<u8>,
    meta: &KeyMeta,
    with_values: bool,
) -> Result<KeyValue, BackendError> {
    if with_values {
        let (_, kv) = load_rev(tables, meta.modified)?;
        return Ok(kv);
    }
    Ok(KeyValue {
        key,
        create_revision: meta.create,
        mod_revision: meta.modified.main,
        version: meta.version,
        value: Vec::new(),
        lease: meta.lease,
    })
}

fn range_live<R: ReadTables + ?Sized>(
    tables: &R,
    span: KeySpan<'_>,
    opts: RangeOpts,
) -> Result<RangeResult, BackendError> {
    let mut found: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut count = 0i64;
    match span {
        KeySpan::Single(key) => {
            if let Some(meta) = tables.get(Table::Live, key)? {
                count = 1;
                if opts.wants(0) {
                    found.push((key.to_vec(), meta));
                }
            }
        }
        KeySpan::From(start) | KeySpan::Between(start, _) => {
            let end = match span {
                KeySpan::Between(_, end) => Some(end),
                _ => None,
            };
            tables.scan(Table::Live, start, end, false, &mut |k, v| {
                if opts.wants(found.len()) {
                    found.push((k.to_vec(), v.to_vec()));
                }
                count += 1;
                ControlFlow::Continue(())
            })?;
        }
    }
    let mut kvs = Vec::with_capacity(found.len());
    for (key, meta) in found {
        let meta = decode_meta(&meta)?;
        kvs.push(kv_from_meta(tables, key, &meta, opts.with_values)?);
    }
    Ok(RangeResult { kvs, count })
}

/// The `History` key bounds of a span.
fn history_bounds(span: KeySpan<'_>) -> (Vec<u8>, Option<Vec<u8>>) {
    let enc = |k: &[u8]| {
        let mut out = Vec::with_capacity(k.len() + 2);
        encode_key(k, &mut out);
        out
    };
    match span {
        KeySpan::Single(key) => {
            let start = enc(key);
            // The escaped key ends with the terminator 0x00 0x01; bumping it to 0x00 0x02 bounds
            // exactly the entries of this key.
            let mut end = start.clone();
            if let Some(last) = end.last_mut() {
                *last = 0x02;
            }
            (start, Some(end))
        }
        KeySpan::From(start) => (enc(start), None),
        KeySpan::Between(start, end) => (enc(start), Some(enc(end))),
    }
}

fn range_history<R: ReadTables + ?Sized>(
    tables: &R,
    span: KeySpan<'_>,
    at: i64,
    opts: RangeOpts,
) -> Result<RangeResult, BackendError> {
    if let KeySpan::Between(start, end) = span
        && end <= start
    {
        return Ok(RangeResult::default());
    }
    let (start, end) = history_bounds(span);
    // Per key: the newest version at or below `at`; a key counts if that version is a put.
    let mut visible: Vec<Revision> = Vec::new();
    let mut count = 0i64;
    let mut current: Vec<u8> = Vec::new();
    let mut best: Option<(Revision, u8)> = None;
    let mut corrupt = None;
    let mut finish = |best: Option<(Revision, u8)>, visible: &mut Vec<Revision>| {
        if let Some((rev, KIND_PUT)) = best {
            if opts.wants(visible.len()) {
                visible.push(rev);
            }
            count += 1;
        }
    };
    tables.scan(
        Table::History,
        &start,
        end.as_deref(),
        false,
        &mut |k, v| {
            let Some((prefix, rev)) = split_history_key(k) else {
                corrupt = Some(format!("history key {k:?}"));
                return ControlFlow::Break(());
            };
            if prefix != current.as_slice() {
                finish(best.take(), &mut visible);
                current.clear();
                current.extend_from_slice(prefix);
            }
            if rev.main <= at {
                best = Some((rev, v.first().copied().unwrap_or(KIND_PUT)));
            }
            ControlFlow::Continue(())
        },
    )?;
    finish(best.take(), &mut visible);
    if let Some(what) = corrupt {
        return Err(BackendError::Corrupt {
            table: Table::History,
            what,
        });
    }
    let mut kvs = Vec::with_capacity(visible.len());
    for rev in visible {
        let (_, mut kv) = load_rev(tables, rev)?;
        if !opts.with_values {
            kv.value.clear();
        }
        kvs.push(kv);
    }
    Ok(RangeResult { kvs, count })
}
