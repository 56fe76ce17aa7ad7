//! Typed errors: one enum for reading a bbolt file, one for building one, and one for etcd's
//! layout on top (which wraps both).

/// Why a bbolt file could not be read. Every malformed input ends here, never in a panic.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read from disk.
    #[error("bbolt: reading the file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is smaller than the two meta pages.
    #[error("bbolt: file too small ({len} bytes)")]
    TooSmall {
        /// The file's length.
        len: usize,
    },
    /// A meta page does not start with bbolt's magic number.
    #[error("bbolt: invalid database (magic {0:#010x})")]
    BadMagic(u32),
    /// A meta page has a version other than 2.
    #[error("bbolt: unsupported file-format version {0}")]
    BadVersion(u32),
    /// A meta page's FNV-64a checksum does not match its content.
    #[error("bbolt: meta checksum mismatch (stored {stored:#x}, computed {computed:#x})")]
    BadChecksum {
        /// The checksum the page holds.
        stored: u64,
        /// The checksum of the page's content.
        computed: u64,
    },
    /// Neither meta page is valid; both reasons are kept.
    #[error("bbolt: no valid meta page (meta 0: {meta0}; meta 1: {meta1})")]
    NoValidMeta {
        /// Why meta page 0 was refused.
        meta0: Box<ReadError>,
        /// Why meta page 1 was refused.
        meta1: Box<ReadError>,
    },
    /// The meta page names a page size this reader refuses.
    #[error("bbolt: unsupported page size {0}")]
    BadPageSize(u32),
    /// The meta page points outside the database (root, freelist or high-water mark).
    #[error("bbolt: meta page is inconsistent: {0}")]
    BadMeta(&'static str),
    /// The file ends before the database's high-water mark.
    #[error("bbolt: file truncated: {len} bytes, the database needs {needed}")]
    Truncated {
        /// The file's length.
        len: usize,
        /// The length the meta page implies.
        needed: u64,
    },
    /// A structure reaches past the end of the page (or value) that holds it.
    #[error("bbolt: {what} reaches out of bounds")]
    OutOfBounds {
        /// Which structure was being read.
        what: &'static str,
    },
    /// A page id lies at or past the high-water mark.
    #[error("bbolt: page {id} is beyond the high-water mark {high_water}")]
    PageBeyondEnd {
        /// The page id referenced.
        id: u64,
        /// The database's high-water mark.
        high_water: u64,
    },
    /// A page's header names another id than its position.
    #[error("bbolt: page {expected} says it is page {found}")]
    PageIdMismatch {
        /// The id the page was looked up by.
        expected: u64,
        /// The id its header holds.
        found: u64,
    },
    /// A page has a type other than the one its position requires.
    #[error("bbolt: page {id} has flags {flags:#06x}, expected a {expected} page")]
    BadPageType {
        /// The page id (0 for an inline page).
        id: u64,
        /// The flags its header holds.
        flags: u16,
        /// What the page should be.
        expected: &'static str,
    },
    /// The same page is referenced twice (a cycle, or two trees sharing a page).
    #[error("bbolt: page {0} is referenced more than once")]
    PageReusedOrCycle(u64),
    /// The tree is deeper than this reader allows (real trees are a handful of levels).
    #[error("bbolt: tree or bucket nesting deeper than {0}")]
    TooDeep(usize),
    /// Keys of a bucket are not in strictly increasing order.
    #[error("bbolt: keys out of order in page {page}")]
    KeyOrder {
        /// The page holding the out-of-order key (0 for an inline page).
        page: u64,
    },
    /// A key is empty.
    #[error("bbolt: empty key in page {page}")]
    EmptyKey {
        /// The page holding the empty key.
        page: u64,
    },
    /// A bucket value is too short for its header, or an inline bucket for its page.
    #[error("bbolt: malformed bucket value ({len} bytes)")]
    BadBucketValue {
        /// The value's length.
        len: usize,
    },
    /// A page below the high-water mark is neither reachable nor free (bbolt's check).
    #[error("bbolt: page {0} is unreachable and not free")]
    UnreachableUnfreed(u64),
    /// A page is both reachable and on the freelist (bbolt's check).
    #[error("bbolt: page {0} is reachable but free")]
    ReachableFreed(u64),
    /// A page is on the freelist twice (bbolt's check).
    #[error("bbolt: page {0} is freed twice")]
    DoubleFree(u64),
}

/// Why a bbolt file could not be built from the given buckets.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Keys must be non-empty in bbolt.
    #[error("bbolt: empty key")]
    EmptyKey,
    /// A key longer than bbolt's limit of 32768 bytes.
    #[error("bbolt: key of {0} bytes exceeds 32768")]
    KeyTooLarge(usize),
    /// A value longer than bbolt's limit of 2^31 - 2 bytes.
    #[error("bbolt: value of {0} bytes exceeds 2^31 - 2")]
    ValueTooLarge(usize),
    /// A key is already a value and was asked for as a bucket, or the reverse.
    #[error("bbolt: key is already used by a {existing}")]
    IncompatibleValue {
        /// What the key already holds ("bucket" or "value").
        existing: &'static str,
    },
    /// Page sizes must be powers of two from 1 KiB to 64 KiB.
    #[error("bbolt: unsupported page size {0}")]
    BadPageSize(usize),
    /// The file would exceed what page ids, positions or sizes can express.
    #[error("bbolt: database too large to lay out")]
    TooLarge,
    /// Writing the file failed.
    #[error("bbolt: writing the file: {0}")]
    Io(#[from] std::io::Error),
}
