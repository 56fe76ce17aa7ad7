//! HashKV: a checksum of the key-value history up to a revision, equal on every member that
//! applied the same log, whatever each one's physical compaction has reached (etcd uses it to
//! detect corruption across members).

use std::ops::ControlFlow;

use crate::backend::{BackendError, ReadTables, Table};
use crate::encoding::{Revision, split_history_key};
use crate::error::StoreError;
use crate::kv::check_revision;
use crate::mvcc::KIND_DELETE;

/// What HashKV answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKv {
    /// CRC-32 of the versions visible at or below `hash_revision`.
    pub hash: u32,
    /// The compacted revision the hash was taken under.
    pub compact_revision: i64,
    /// The revision hashed up to.
    pub hash_revision: i64,
}

/// Hashes every version at or below `rev` (0: the head) that compaction at `compacted` keeps:
/// per key, the versions above `compacted`, and the newest at or below it unless a tombstone.
pub(crate) fn hash_kv<R: ReadTables + ?Sized>(
    tables: &R,
    head: i64,
    compacted: i64,
    rev: i64,
) -> Result<HashKv, StoreError> {
    let at = check_revision(rev, head, compacted)?;
    let mut kept: Vec<Revision> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    // The newest version at or below the compacted revision of the current key.
    let mut base: Option<(Revision, u8)> = None;
    let mut corrupt = None;
    let flush = |base: &mut Option<(Revision, u8)>, kept: &mut Vec<Revision>, at: usize| {
        if let Some((rev, kind)) = base.take()
            && kind != KIND_DELETE
        {
            kept.insert(at, rev);
        }
    };
    let mut key_start = 0;
    tables.scan(Table::History, &[], None, false, &mut |k, v| {
        let Some((prefix, rev)) = split_history_key(k) else {
            corrupt = Some(format!("history key {k:?}"));
            return ControlFlow::Break(());
        };
        if prefix != current.as_slice() {
            flush(&mut base, &mut kept, key_start);
            current.clear();
            current.extend_from_slice(prefix);
            key_start = kept.len();
        }
        if rev.main <= compacted {
            base = Some((rev, v.first().copied().unwrap_or(0)));
        } else if rev.main <= at {
            kept.push(rev);
        }
        ControlFlow::Continue(())
    })?;
    flush(&mut base, &mut kept, key_start);
    if let Some(what) = corrupt {
        return Err(BackendError::Corrupt {
            table: Table::History,
            what,
        }
        .into());
    }
    let mut crc = crc32fast::Hasher::new();
    for rev in kept {
        let bytes =
            tables
                .get(Table::Revs, &rev.encode())?
                .ok_or_else(|| BackendError::Corrupt {
                    table: Table::Revs,
                    what: format!("revision {rev:?} is in history but missing"),
                })?;
        crc.update(&rev.encode());
        crc.update(&bytes);
    }
    Ok(HashKv {
        hash: crc.finalize(),
        compact_revision: compacted,
        hash_revision: at,
    })
}
