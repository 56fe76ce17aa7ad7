//! etcd's snapshot file format, for mango.
//!
//! An etcd snapshot (`etcdctl snapshot save`, or a member's `member/snap/db`) is a bbolt
//! database file; the snapshot stream appends the SHA-256 of the file. This crate reads and
//! writes that format so that mango can hand etcd tools a file they accept, and take in a
//! `.db` saved from etcd 3.4 with its whole history.
//!
//! - [`Db`]: the reader. The file is read whole into memory and validated at its meta pages
//!   (magic, version, FNV-64a checksum; the valid meta with the higher txid wins). Buckets
//!   are walked lazily with every offset bounds-checked: malformed input is a [`ReadError`],
//!   never a panic. [`Db::check`] runs bbolt's own consistency check.
//! - [`write_db`]: the writer. A whole new file from a [`DbBuilder`] of buckets: meta pages 0
//!   and 1, an empty freelist, leaves and branches, overflow pages for large values, small
//!   buckets inline, as bbolt lays them out.
//! - [`sha`]: etcd's trailing SHA-256.
//! - [`etcd`]: etcd 3.4's buckets as typed records: [`etcd::EtcdSnapshot`] reads a snapshot
//!   into key revisions, leases, compaction, members and auth, and writes one back.
//!
//! Architecture invariant: this crate knows only file formats. It depends on `mango-proto`
//! for etcd's wire types and on nothing of mango's store, Raft or network; turning a snapshot
//! into a mango store (or back) is the caller's job.

#![forbid(unsafe_code)]

mod error;
pub mod etcd;
pub mod format;
mod read;
pub mod sha;
mod write;

pub use error::{ReadError, WriteError};
pub use read::{
    Bucket, Db, Entries, Entry, MAX_BUCKET_NESTING, MAX_PAGE_SIZE, MAX_TREE_DEPTH, MIN_PAGE_SIZE,
    Value,
};
pub use write::{BucketBuilder, DbBuilder, Item, WriteOptions, write_db, write_db_file};
