//! The writer: a fresh bbolt file built whole from buckets of keys (not an update engine).

mod builder;
mod layout;

pub use builder::{BucketBuilder, DbBuilder, Item};
pub use layout::{WriteOptions, write_db};

use std::io::Write;
use std::path::Path;

use crate::error::WriteError;

/// Builds the file and writes it to `path` (replacing it), with etcd's trailing SHA-256 when
/// `with_sha256` is set (what `etcdctl snapshot restore` checks unless `--skip-hash-check`).
pub fn write_db_file(
    path: impl AsRef<Path>,
    db: &DbBuilder,
    opts: &WriteOptions,
    with_sha256: bool,
) -> Result<(), WriteError> {
    let mut bytes = write_db(db, opts)?;
    if with_sha256 {
        crate::sha::append_sha256(&mut bytes);
    }
    let mut file = std::fs::File::create(path)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    Ok(())
}

impl DbBuilder {
    /// A copy of everything in `db`: every bucket, nested bucket, key, value and sequence.
    /// Writing it back gives a file with the same content, freshly laid out.
    pub fn from_db(db: &crate::Db) -> Result<Self, crate::ReadError> {
        Ok(Self {
            root: copy_bucket(&db.root())?,
        })
    }
}

fn copy_bucket(bucket: &crate::Bucket<'_>) -> Result<BucketBuilder, crate::ReadError> {
    let mut out = BucketBuilder::new();
    out.sequence = bucket.sequence();
    for entry in bucket.iter() {
        let entry = entry?;
        let item = match entry.value {
            crate::Value::Data(v) => Item::Value(v.to_vec()),
            crate::Value::Bucket(b) => Item::Bucket(copy_bucket(&b)?),
        };
        out.entries.insert(entry.key.to_vec(), item);
    }
    Ok(out)
}
