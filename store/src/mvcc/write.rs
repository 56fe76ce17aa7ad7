//! Writing inside one write transaction: puts and deletes at the next revision.

use mango_proto::mvccpb::KeyValue;
use prost::Message;

use super::read::{RangeOpts, range_keys};
use super::{KIND_DELETE, KIND_PUT, KeySpan, decode_meta};
use crate::backend::{BackendError, Table, WriteTables};
use crate::encoding::{KeyMeta, Revision, history_key};

/// The writes of one etcd write transaction (one Put, one DeleteRange or one Txn): all its
/// changes share main revision `begin + 1`, numbered by `sub` in the order they happen.
pub(crate) struct Writer<'a> {
    /// The group's tables inside the backend's write transaction.
    pub tables: &'a mut dyn WriteTables,
    /// The revision before this transaction.
    pub begin: i64,
    /// Changes made so far; the next one gets this as its sub revision.
    pub changes: i64,
}

impl<'a> Writer<'a> {
    /// A writer on top of revision `begin`.
    pub(crate) fn new(tables: &'a mut dyn WriteTables, begin: i64) -> Self {
        Self {
            tables,
            begin,
            changes: 0,
        }
    }

    /// The revision reads inside this transaction see: `begin + 1` once it changed something.
    pub(crate) fn current(&self) -> i64 {
        if self.changes > 0 {
            self.begin + 1
        } else {
            self.begin
        }
    }

    /// The revision the transaction ends at.
    pub(crate) fn end_revision(&self) -> i64 {
        self.current()
    }

    fn next_rev(&mut self) -> Revision {
        let rev = Revision::new(self.begin + 1, self.changes);
        self.changes += 1;
        rev
    }

    /// Puts `key`; the caller resolved `ignore_value`/`ignore_lease` into `value`/`lease` and
    /// checked that `lease` exists. The key moves from its previous lease to `lease`.
    pub(crate) fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
    ) -> Result<(), BackendError> {
        let old = match self.tables.get(Table::Live, key)? {
            Some(bytes) => Some(decode_meta(&bytes)?),
            None => None,
        };
        let old_lease = old.map_or(0, |m| m.lease);
        if old_lease != lease {
            if old_lease != 0 {
                crate::lease::detach(self.tables, old_lease, key)?;
            }
            if lease != 0 {
                crate::lease::attach(self.tables, lease, key)?;
            }
        }
        let rev = self.next_rev();
        let (create, version) = match old {
            Some(m) => (m.create, m.version + 1),
            None => (rev.main, 1),
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: create,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        let mut record = Vec::with_capacity(1 + kv.encoded_len());
        record.push(KIND_PUT);
        kv.encode(&mut record)
            .map_err(|e| BackendError::Engine(e.to_string()))?;
        self.tables.put(Table::Revs, &rev.encode(), &record)?;
        self.tables
            .put(Table::History, &history_key(key, rev), &[KIND_PUT])?;
        let meta = KeyMeta {
            create,
            modified: rev,
            version,
            lease,
        };
        self.tables.put(Table::Live, key, &meta.encode())
    }

    /// Deletes every live key in `span`, detaching each from its lease; returns how many.
    pub(crate) fn delete_range(&mut self, span: KeySpan<'_>) -> Result<i64, BackendError> {
        let head = self.current();
        let opts = RangeOpts {
            limit: 0,
            count_only: false,
            with_values: false,
        };
        let found = range_keys(&*self.tables, span, head, head, opts)?;
        for kv in &found.kvs {
            self.delete(&kv.key, kv.lease)?;
        }
        Ok(found.count)
    }

    /// Deletes live `key`, attached to `lease` (0: none).
    fn delete(&mut self, key: &[u8], lease: i64) -> Result<(), BackendError> {
        if lease != 0 {
            crate::lease::detach(self.tables, lease, key)?;
        }
        let rev = self.next_rev();
        let tombstone = KeyValue {
            key: key.to_vec(),
            mod_revision: rev.main,
            ..Default::default()
        };
        let mut record = Vec::with_capacity(1 + tombstone.encoded_len());
        record.push(KIND_DELETE);
        tombstone
            .encode(&mut record)
            .map_err(|e| BackendError::Engine(e.to_string()))?;
        self.tables.put(Table::Revs, &rev.encode(), &record)?;
        self.tables
            .put(Table::History, &history_key(key, rev), &[KIND_DELETE])?;
        self.tables.delete(Table::Live, key)
    }
}
