//! MVCC over the backend tables: etcd's revisions, versions and tombstones.
//!
//! Layout of one group (see [`Table`]):
//! - `Revs`: revision -> kind byte ++ encoded `mvccpb.KeyValue`. The log of every change in
//!   revision order (etcd's `key` bucket): history reads and, later, watches read it.
//! - `History`: escaped key ++ revision -> kind byte. Every version of a key, together and in
//!   revision order, so a read at an old revision finds each key's version with one scan.
//! - `Live`: raw key -> [`KeyMeta`] of the current version, for head reads, puts and counts
//!   without touching history. Deleted keys are absent.
//! - `Meta`: the group's [`GroupState`], written in the same transaction as the data.
//! - `Leases`, `LeaseKeys`: the leases and the keys attached to each (see `crate::lease`); a
//!   put or delete here keeps `LeaseKeys` in step with `KeyMeta::lease`.

pub(crate) mod read;
pub(crate) mod write;

use crate::backend::{BackendError, ReadTables, Table, WriteTables};
use crate::encoding::{KeyMeta, Revision};

pub use read::RangeResult;

/// Kind byte of a put record in `Revs` and `History`.
pub(crate) const KIND_PUT: u8 = 0;
/// Kind byte of a tombstone record.
pub(crate) const KIND_DELETE: u8 = 1;

/// The key under which [`GroupState`] lives in `Meta`.
const STATE_KEY: &[u8] = b"state";
/// Encoded length of [`GroupState`].
const STATE_LEN: usize = 40;

/// Per-group state, stored in `Meta` and updated in the same transaction as the data, so that
/// after a crash the applied index and the data always agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupState {
    /// Index of the last Raft entry applied.
    pub applied_index: u64,
    /// Term of that entry.
    pub applied_term: u64,
    /// The current revision (etcd starts at 1: the first write creates revision 2).
    pub revision: i64,
    /// The compacted revision: reads below it fail (-1 before any compaction).
    pub compact_revision: i64,
    /// Physical compaction has removed what it must from every revision below this one.
    pub compacted_through: i64,
}

impl Default for GroupState {
    fn default() -> Self {
        Self {
            applied_index: 0,
            applied_term: 0,
            revision: 1,
            compact_revision: -1,
            compacted_through: 0,
        }
    }
}

impl GroupState {
    fn encode(&self) -> [u8; STATE_LEN] {
        let mut out = [0u8; STATE_LEN];
        out[..8].copy_from_slice(&self.applied_index.to_be_bytes());
        out[8..16].copy_from_slice(&self.applied_term.to_be_bytes());
        out[16..24].copy_from_slice(&self.revision.to_be_bytes());
        out[24..32].copy_from_slice(&self.compact_revision.to_be_bytes());
        out[32..].copy_from_slice(&self.compacted_through.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != STATE_LEN {
            return None;
        }
        let u = |i: usize| bytes[i..i + 8].try_into().ok().map(u64::from_be_bytes);
        let s = |i: usize| bytes[i..i + 8].try_into().ok().map(i64::from_be_bytes);
        Some(Self {
            applied_index: u(0)?,
            applied_term: u(8)?,
            revision: s(16)?,
            compact_revision: s(24)?,
            compacted_through: s(32)?,
        })
    }

    /// Reads the state of a group (the default for a group never written).
    pub fn load<R: ReadTables + ?Sized>(tables: &R) -> Result<Self, BackendError> {
        match tables.get(Table::Meta, STATE_KEY)? {
            None => Ok(Self::default()),
            Some(bytes) => Self::decode(&bytes).ok_or_else(|| BackendError::Corrupt {
                table: Table::Meta,
                what: format!("group state of {} bytes", bytes.len()),
            }),
        }
    }

    /// Writes the state.
    pub fn save(&self, tables: &mut dyn WriteTables) -> Result<(), BackendError> {
        tables.put(Table::Meta, STATE_KEY, &self.encode())
    }
}

/// Decodes a `Live` value.
pub(crate) fn decode_meta(bytes: &[u8]) -> Result<KeyMeta, BackendError> {
    KeyMeta::decode(bytes).ok_or_else(|| BackendError::Corrupt {
        table: Table::Live,
        what: format!("key meta of {} bytes", bytes.len()),
    })
}

/// Reads the `Revs` record at `rev`: its kind byte and the encoded KeyValue.
pub(crate) fn load_rev<R: ReadTables + ?Sized>(
    tables: &R,
    rev: Revision,
) -> Result<(u8, mango_proto::mvccpb::KeyValue), BackendError> {
    let bytes = tables
        .get(Table::Revs, &rev.encode())?
        .ok_or_else(|| BackendError::Corrupt {
            table: Table::Revs,
            what: format!("revision {rev:?} is referenced but missing"),
        })?;
    decode_rev_record(&bytes)
}

/// Decodes a `Revs` value.
pub(crate) fn decode_rev_record(
    bytes: &[u8],
) -> Result<(u8, mango_proto::mvccpb::KeyValue), BackendError> {
    use prost::Message;
    let corrupt = |what: String| BackendError::Corrupt {
        table: Table::Revs,
        what,
    };
    let (&kind, rest) = bytes
        .split_first()
        .ok_or_else(|| corrupt("empty record".into()))?;
    let kv = mango_proto::mvccpb::KeyValue::decode(rest).map_err(|e| corrupt(e.to_string()))?;
    Ok((kind, kv))
}

/// Which keys a request names, from etcd's `key` and `range_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeySpan<'a> {
    /// Exactly `key` (`range_end` empty).
    Single(&'a [u8]),
    /// Every key `>= start` (`range_end` is `"\0"`).
    From(&'a [u8]),
    /// `[start, end)`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeySpan<'a> {
    /// etcd's reading of a key and range end.
    pub(crate) fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeySpan::Single(key),
            [0] => KeySpan::From(key),
            end => KeySpan::Between(key, end),
        }
    }
}
