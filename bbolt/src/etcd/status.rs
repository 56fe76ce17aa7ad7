//! `etcdctl snapshot status`, computed the way etcd 3.4 computes it, so mango can report the
//! same hash, revision and key count for a file without etcd's tools.

use super::records::Revision;
use super::{EtcdError, KEY};
use crate::{Db, Value};

/// What `etcdctl snapshot status -w json` prints for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// CRC-32C over every bucket name, key and value, in order.
    pub hash: u32,
    /// The main revision of the last entry of the `key` bucket (0 if it is empty).
    pub revision: i64,
    /// The number of keys over all top-level buckets.
    pub total_key: u64,
    /// The database's size as bbolt counts it: high-water mark × page size.
    pub total_size: u64,
}

/// The status of `db`: runs bbolt's check first, as etcd does, then hashes every bucket.
pub fn status(db: &Db) -> Result<SnapshotStatus, EtcdError> {
    db.check()?;
    let mut hash = Crc32c::new();
    let (mut revision, mut total_key) = (0, 0u64);
    for bucket in db.root().iter() {
        let bucket = bucket?;
        let Value::Bucket(b) = bucket.value else {
            return Err(EtcdError::NotABucket(bucket.key.to_vec()));
        };
        hash.update(bucket.key);
        let is_key = bucket.key == KEY.as_bytes();
        for entry in b.iter() {
            let entry = entry?;
            hash.update(entry.key);
            if let Value::Data(v) = entry.value {
                hash.update(v);
            }
            if is_key {
                revision = Revision::from_bytes(entry.key)
                    .ok_or_else(|| EtcdError::BadKey {
                        bucket: KEY,
                        key: entry.key.to_vec(),
                        reason: "not a revision",
                    })?
                    .main;
            }
            total_key += 1;
        }
    }
    Ok(SnapshotStatus {
        hash: hash.finish(),
        revision,
        total_key,
        total_size: db.size(),
    })
}

/// CRC-32 with the Castagnoli polynomial (Go's `crc32.Castagnoli`), table-driven.
struct Crc32c {
    /// 256 entries for the reflected polynomial 0x82F63B78.
    table: [u32; 256],
    /// The running value (before the final inversion).
    state: u32,
}

impl Crc32c {
    fn new() -> Self {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        Self { table, state: !0 }
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let i = usize::from((self.state as u8) ^ b);
            self.state = (self.state >> 8) ^ self.table.get(i).copied().unwrap_or(0);
        }
    }

    fn finish(&self) -> u32 {
        !self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        let mut c = Crc32c::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0xE306_9283);
    }
}
