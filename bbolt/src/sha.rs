//! The SHA-256 that etcd appends to a snapshot: the Maintenance.Snapshot stream is the bbolt
//! file followed by the SHA-256 of its bytes, and `etcdctl snapshot restore` checks it.
//!
//! etcd tells a file with the hash from one without by its length: a bbolt file is a whole
//! number of pages, so its length is a multiple of 512, and 32 more bytes mean a hash.

use sha2::{Digest, Sha256};

/// Length of the trailing hash.
pub const SHA256_LEN: usize = 32;

/// What the end of a snapshot file says about its integrity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCheck {
    /// The file ends with the SHA-256 of what precedes it.
    Valid,
    /// The file has no trailing hash (a copy of a data directory's `db`, or our own output
    /// written without one).
    Missing,
    /// The file ends with 32 bytes that are not the SHA-256 of the rest: it is damaged.
    Mismatch,
}

/// Whether a file of `len` bytes carries etcd's trailing hash (etcd's own rule).
pub fn has_sha256(len: usize) -> bool {
    len % 512 == SHA256_LEN
}

/// Appends the SHA-256 of `bytes` to them, as etcd's server does when it streams a snapshot.
pub fn append_sha256(bytes: &mut Vec<u8>) {
    let digest = Sha256::digest(bytes.as_slice());
    bytes.extend_from_slice(&digest);
}

/// Checks the trailing hash of a snapshot file, and returns the database bytes without it.
pub fn check_sha256(bytes: &[u8]) -> (&[u8], HashCheck) {
    if !has_sha256(bytes.len()) {
        return (bytes, HashCheck::Missing);
    }
    let (db, hash) = bytes.split_at(bytes.len() - SHA256_LEN);
    let check = if Sha256::digest(db).as_slice() == hash {
        HashCheck::Valid
    } else {
        HashCheck::Mismatch
    };
    (db, check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_hash_checks_and_damage_is_seen() {
        let mut bytes = vec![7u8; 4096];
        assert_eq!(check_sha256(&bytes).1, HashCheck::Missing);
        append_sha256(&mut bytes);
        assert_eq!(bytes.len(), 4096 + 32);
        let (db, check) = check_sha256(&bytes);
        assert_eq!((db.len(), check), (4096, HashCheck::Valid));
        bytes[10] ^= 1;
        assert_eq!(check_sha256(&bytes).1, HashCheck::Mismatch);
    }
}
