//! [`Backend`] on redb: one database file holds every group's tables, named `g<id>/<table>`.
//!
//! redb gives what the trait asks for directly: a write transaction commits atomically (with
//! an fsync under `Durability::Immediate`), and a read transaction is an MVCC snapshot that
//! never blocks the single writer.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle,
};

use super::{Backend, BackendError, BackendSize, GroupId, ReadTables, Table, Visit, WriteTables};

/// One item of a redb range iterator.
type Item<'a> = Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

type Def<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;

fn table_name(group: GroupId, table: Table) -> String {
    format!("g{group}/{}", table.name())
}

fn engine<E: Into<redb::Error>>(e: E) -> BackendError {
    BackendError::Engine(e.into().to_string())
}

/// The redb backend.
pub struct RedbBackend {
    /// The database. Transactions take the read side; defragment needs `&mut` and takes the
    /// write side, waiting for in-flight transactions to begin first.
    db: RwLock<Database>,
    /// The database file, for its size.
    path: PathBuf,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbBackend {
    /// Opens (creating if absent) the database file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(engine)?;
        Ok(Self {
            db: RwLock::new(db),
            path,
        })
    }

    /// Opens (creating if absent) the database file at `path` behind a fault switch, for
    /// simulated crashes and power losses (see [`super::redb_faults`]).
    pub fn open_with_faults(
        path: impl AsRef<Path>,
        faults: super::redb_faults::StoreFaults,
    ) -> Result<Self, BackendError> {
        let path = path.as_ref().to_path_buf();
        let file = super::redb_faults::FaultyFile::open(&path, faults)
            .map_err(|e| BackendError::Engine(format!("open {}: {e}", path.display())))?;
        let db = Database::builder()
            .create_with_backend(file)
            .map_err(engine)?;
        Ok(Self {
            db: RwLock::new(db),
            path,
        })
    }

    fn db(&self) -> Result<std::sync::RwLockReadGuard<'_, Database>, BackendError> {
        self.db
            .read()
            .map_err(|_| BackendError::Engine("database lock poisoned".into()))
    }
}

/// A read snapshot of one group: the group's tables opened in one redb read transaction.
/// A table that did not exist at snapshot time reads as empty.
pub struct RedbSnapshot {
    tables: [Option<ReadOnlyTable<&'static [u8], &'static [u8]>>; TABLES],
}

/// How many tables a group has.
const TABLES: usize = Table::ALL.len();

/// The position of `table` in [`Table::ALL`], which is also its slot in the arrays here.
fn index(table: Table) -> usize {
    match table {
        Table::Meta => 0,
        Table::Live => 1,
        Table::History => 2,
        Table::Revs => 3,
        Table::Leases => 4,
        Table::LeaseKeys => 5,
        Table::AuthUsers => 6,
        Table::AuthRoles => 7,
    }
}

fn scan_table<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    start: &[u8],
    end: Option<&[u8]>,
    reverse: bool,
    visit: &mut Visit<'_>,
) -> Result<(), BackendError> {
    if let Some(end) = end
        && end <= start
    {
        return Ok(());
    }
    let iter = match end {
        Some(end) => t.range::<&[u8]>(start..end),
        None => t.range::<&[u8]>(start..),
    }
    .map_err(engine)?;
    let mut step = |item: Item<'_>| {
        let (k, v) = item.map_err(engine)?;
        Ok::<_, BackendError>(visit(k.value(), v.value()))
    };
    if reverse {
        for item in iter.rev() {
            if step(item)?.is_break() {
                break;
            }
        }
    } else {
        for item in iter {
            if step(item)?.is_break() {
                break;
            }
        }
    }
    Ok(())
}

impl ReadTables for RedbSnapshot {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        match &self.tables[index(table)] {
            Some(t) => Ok(t.get(key).map_err(engine)?.map(|v| v.value().to_vec())),
            None => Ok(None),
        }
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut Visit<'_>,
    ) -> Result<(), BackendError> {
        match &self.tables[index(table)] {
            Some(t) => scan_table(t, start, end, reverse, visit),
            None => Ok(()),
        }
    }
}

/// One group's tables opened in a redb write transaction.
struct RedbWrite<'txn> {
    tables: [redb::Table<'txn, &'static [u8], &'static [u8]>; TABLES],
}

impl ReadTables for RedbWrite<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let t = &self.tables[index(table)];
        Ok(t.get(key).map_err(engine)?.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut Visit<'_>,
    ) -> Result<(), BackendError> {
        scan_table(&self.tables[index(table)], start, end, reverse, visit)
    }
}

impl WriteTables for RedbWrite<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        self.tables[index(table)]
            .insert(key, value)
            .map_err(engine)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), BackendError> {
        self.tables[index(table)].remove(key).map_err(engine)?;
        Ok(())
    }

    fn clear(&mut self, table: Table) -> Result<(), BackendError> {
        self.tables[index(table)]
            .retain(|_, _| false)
            .map_err(engine)
    }
}

impl Backend for RedbBackend {
    type Snapshot = RedbSnapshot;

    fn read(&self, group: GroupId) -> Result<RedbSnapshot, BackendError> {
        let txn = self.db()?.begin_read().map_err(engine)?;
        let open = |table: Table| -> Result<_, BackendError> {
            let name = table_name(group, table);
            match txn.open_table(Def::new(&name)) {
                Ok(t) => Ok(Some(t)),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(engine(e)),
            }
        };
        Ok(RedbSnapshot {
            tables: [
                open(Table::Meta)?,
                open(Table::Live)?,
                open(Table::History)?,
                open(Table::Revs)?,
                open(Table::Leases)?,
                open(Table::LeaseKeys)?,
                open(Table::AuthUsers)?,
                open(Table::AuthRoles)?,
            ],
        })
    }

    fn write<R, E: From<BackendError>>(
        &self,
        group: GroupId,
        durable: bool,
        f: impl FnOnce(&mut dyn WriteTables) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut txn = self.db()?.begin_write().map_err(engine)?;
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability)
            .map_err(|e| BackendError::Engine(e.to_string()))?;
        let result = {
            let names = Table::ALL.map(|t| table_name(group, t));
            let open = |i: usize| txn.open_table(Def::new(&names[i])).map_err(engine);
            let mut tables = RedbWrite {
                tables: [
                    open(0)?,
                    open(1)?,
                    open(2)?,
                    open(3)?,
                    open(4)?,
                    open(5)?,
                    open(6)?,
                    open(7)?,
                ],
            };
            f(&mut tables)
        };
        match result {
            Ok(r) => {
                txn.commit().map_err(engine)?;
                Ok(r)
            }
            Err(e) => {
                txn.abort().map_err(engine)?;
                Err(e)
            }
        }
    }

    fn groups(&self) -> Result<Vec<GroupId>, BackendError> {
        let txn = self.db()?.begin_read().map_err(engine)?;
        let mut groups: Vec<GroupId> = txn
            .list_tables()
            .map_err(engine)?
            .filter_map(|h| {
                let name = h.name().to_string();
                let id = name.strip_prefix('g')?.strip_suffix("/meta")?;
                id.parse().ok()
            })
            .collect();
        groups.sort_unstable();
        Ok(groups)
    }

    fn size(&self) -> Result<BackendSize, BackendError> {
        let file_bytes = std::fs::metadata(&self.path)
            .map_err(|e| BackendError::Engine(format!("stat {}: {e}", self.path.display())))?
            .len();
        let txn = self.db()?.begin_write().map_err(engine)?;
        let stats = txn.stats().map_err(engine)?;
        txn.abort().map_err(engine)?;
        let in_use_bytes = stats.allocated_pages() * stats.page_size() as u64;
        Ok(BackendSize {
            file_bytes,
            in_use_bytes,
        })
    }

    fn file_bytes(&self) -> Result<u64, BackendError> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| BackendError::Engine(format!("stat {}: {e}", self.path.display())))
    }

    fn defragment(&self) -> Result<(), BackendError> {
        let mut db = self
            .db
            .write()
            .map_err(|_| BackendError::Engine("database lock poisoned".into()))?;
        while db.compact().map_err(engine)? {}
        Ok(())
    }
}

/// Number of entries in a table, for tests and status.
pub fn table_len(snapshot: &RedbSnapshot, table: Table) -> Result<u64, BackendError> {
    match &snapshot.tables[index(table)] {
        Some(t) => t.len().map_err(engine),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_table_all_and_tags_round_trip() {
        for (i, table) in Table::ALL.into_iter().enumerate() {
            assert_eq!(index(table), i, "{table:?}");
            assert_eq!(Table::from_tag(table.tag()), Some(table));
        }
    }
}
