//! bbolt's on-disk structures: the page header, branch and leaf elements, the bucket header
//! and the meta page, with bounds-checked decoding and plain encoding.
//!
//! Every integer is little-endian (bbolt writes its structs in the host's byte order, and
//! every platform etcd ships for is little-endian). A page is `page_size` bytes; a page whose
//! content is larger spans `overflow` further pages that follow it in the file.

use crate::error::ReadError;

/// The magic number at the start of both meta pages.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The only file-format version bbolt (and so etcd) writes.
pub const VERSION: u32 = 2;
/// The page size this crate writes: bbolt's default on x86-64 and arm64 Linux.
pub const DEFAULT_PAGE_SIZE: usize = 4096;
/// The freelist page id meaning "the freelist is not stored" (bbolt's `NoFreelistSync`).
pub const NO_FREELIST: u64 = u64::MAX;

/// Size of a page header: id (u64), flags (u16), count (u16), overflow (u32).
pub const PAGE_HEADER_SIZE: usize = 16;
/// Size of one branch element: pos (u32), ksize (u32), child page id (u64).
pub const BRANCH_ELEMENT_SIZE: usize = 16;
/// Size of one leaf element: flags (u32), pos (u32), ksize (u32), vsize (u32).
pub const LEAF_ELEMENT_SIZE: usize = 16;
/// Size of a bucket header: root page id (u64, 0 for an inline bucket) and sequence (u64).
pub const BUCKET_HEADER_SIZE: usize = 16;
/// Size of the meta structure that follows the page header on a meta page.
pub const META_SIZE: usize = 64;
/// Bytes of the meta covered by its checksum (everything before the checksum field).
const META_CHECKSUMMED: usize = 56;

/// Page flag: a branch page of a B+tree.
pub const BRANCH_PAGE: u16 = 0x01;
/// Page flag: a leaf page of a B+tree.
pub const LEAF_PAGE: u16 = 0x02;
/// Page flag: one of the two meta pages.
pub const META_PAGE: u16 = 0x04;
/// Page flag: the freelist page.
pub const FREELIST_PAGE: u16 = 0x10;

/// Leaf element flag: the value is a nested bucket's header (plus its page when inline).
pub const BUCKET_LEAF_FLAG: u32 = 0x01;

/// bbolt's limit on a key's length.
pub const MAX_KEY_SIZE: usize = 32_768;
/// bbolt's limit on a value's length.
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

/// `bytes[at..at + len]`, or a typed error naming what was being read.
pub fn slice<'a>(
    bytes: &'a [u8],
    at: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], ReadError> {
    at.checked_add(len)
        .and_then(|end| bytes.get(at..end))
        .ok_or(ReadError::OutOfBounds { what })
}

fn read_u16(bytes: &[u8], at: usize, what: &'static str) -> Result<u16, ReadError> {
    let mut b = [0u8; 2];
    b.copy_from_slice(slice(bytes, at, 2, what)?);
    Ok(u16::from_le_bytes(b))
}

pub(crate) fn read_u32(bytes: &[u8], at: usize, what: &'static str) -> Result<u32, ReadError> {
    let mut b = [0u8; 4];
    b.copy_from_slice(slice(bytes, at, 4, what)?);
    Ok(u32::from_le_bytes(b))
}

pub(crate) fn read_u64(bytes: &[u8], at: usize, what: &'static str) -> Result<u64, ReadError> {
    let mut b = [0u8; 8];
    b.copy_from_slice(slice(bytes, at, 8, what)?);
    Ok(u64::from_le_bytes(b))
}

/// The 16-byte header at the start of every page (and of an inline bucket's page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// The page's own id; must equal its position in the file.
    pub id: u64,
    /// What the page holds (`BRANCH_PAGE`, `LEAF_PAGE`, `META_PAGE`, `FREELIST_PAGE`).
    pub flags: u16,
    /// Number of elements (or freelist ids; 0xFFFF means the count is in the first id).
    pub count: u16,
    /// Number of extra pages this page spans beyond the first.
    pub overflow: u32,
}

impl PageHeader {
    /// Decodes the header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReadError> {
        let what = "page header";
        Ok(Self {
            id: read_u64(bytes, 0, what)?,
            flags: read_u16(bytes, 8, what)?,
            count: read_u16(bytes, 10, what)?,
            overflow: read_u32(bytes, 12, what)?,
        })
    }

    /// Writes the header at the start of `out` (which must hold at least 16 bytes).
    pub fn encode(&self, out: &mut [u8]) {
        put(out, 0, &self.id.to_le_bytes());
        put(out, 8, &self.flags.to_le_bytes());
        put(out, 10, &self.count.to_le_bytes());
        put(out, 12, &self.overflow.to_le_bytes());
    }
}

/// Copies `src` into `out` at `at`; the writer sizes its buffers first, so this never fails
/// there (and is not used on input).
pub(crate) fn put(out: &mut [u8], at: usize, src: &[u8]) {
    if let Some(dst) = at
        .checked_add(src.len())
        .and_then(|end| out.get_mut(at..end))
    {
        dst.copy_from_slice(src);
    }
}

/// A bucket's header: where its tree starts, and its `NextSequence` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketHeader {
    /// Root page id of the bucket's tree; 0 means the tree is one leaf page stored inline
    /// right after this header, inside the parent's value.
    pub root: u64,
    /// The bucket's sequence counter (bbolt's `NextSequence`), kept so a copy is exact.
    pub sequence: u64,
}

impl BucketHeader {
    /// Decodes a bucket header from the first 16 bytes of a bucket value.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReadError> {
        let what = "bucket header";
        Ok(Self {
            root: read_u64(bytes, 0, what)?,
            sequence: read_u64(bytes, 8, what)?,
        })
    }

    /// The 16 encoded bytes.
    pub fn encode(&self) -> [u8; BUCKET_HEADER_SIZE] {
        let mut out = [0u8; BUCKET_HEADER_SIZE];
        put(&mut out, 0, &self.root.to_le_bytes());
        put(&mut out, 8, &self.sequence.to_le_bytes());
        out
    }
}

/// The content of a meta page: where the database's root bucket and freelist are, and how
/// far the file reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The page size every other offset is measured in.
    pub page_size: u32,
    /// bbolt's meta flags (unused by bbolt today; kept for an exact copy).
    pub flags: u32,
    /// The root bucket, whose keys are the top-level bucket names.
    pub root: BucketHeader,
    /// The freelist page id, or [`NO_FREELIST`].
    pub freelist: u64,
    /// The high-water mark: the first page id past the end of the database (bbolt's `pgid`).
    pub high_water: u64,
    /// The id of the transaction that wrote this meta; the valid meta with the higher one wins.
    pub txid: u64,
}

impl Meta {
    /// Decodes and validates the meta that follows a page header: magic, version, checksum.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReadError> {
        let what = "meta page";
        let magic = read_u32(bytes, 0, what)?;
        if magic != MAGIC {
            return Err(ReadError::BadMagic(magic));
        }
        let version = read_u32(bytes, 4, what)?;
        if version != VERSION {
            return Err(ReadError::BadVersion(version));
        }
        let stored = read_u64(bytes, META_CHECKSUMMED, what)?;
        let computed = fnv64a(slice(bytes, 0, META_CHECKSUMMED, what)?);
        if stored != computed {
            return Err(ReadError::BadChecksum { stored, computed });
        }
        Ok(Self {
            page_size: read_u32(bytes, 8, what)?,
            flags: read_u32(bytes, 12, what)?,
            root: BucketHeader::decode(slice(bytes, 16, BUCKET_HEADER_SIZE, what)?)?,
            freelist: read_u64(bytes, 32, what)?,
            high_water: read_u64(bytes, 40, what)?,
            txid: read_u64(bytes, 48, what)?,
        })
    }

    /// The 64 encoded bytes, checksum included.
    pub fn encode(&self) -> [u8; META_SIZE] {
        let mut out = [0u8; META_SIZE];
        put(&mut out, 0, &MAGIC.to_le_bytes());
        put(&mut out, 4, &VERSION.to_le_bytes());
        put(&mut out, 8, &self.page_size.to_le_bytes());
        put(&mut out, 12, &self.flags.to_le_bytes());
        put(&mut out, 16, &self.root.encode());
        put(&mut out, 32, &self.freelist.to_le_bytes());
        put(&mut out, 40, &self.high_water.to_le_bytes());
        put(&mut out, 48, &self.txid.to_le_bytes());
        let sum = fnv64a(out.get(..META_CHECKSUMMED).unwrap_or_default());
        put(&mut out, META_CHECKSUMMED, &sum.to_le_bytes());
        out
    }
}

/// FNV-1a, 64 bits: the checksum bbolt keeps in each meta page.
pub fn fnv64a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv64a_matches_reference_vectors() {
        assert_eq!(fnv64a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv64a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn meta_round_trips_and_detects_corruption() {
        let meta = Meta {
            page_size: 4096,
            flags: 0,
            root: BucketHeader {
                root: 3,
                sequence: 7,
            },
            freelist: 2,
            high_water: 4,
            txid: 9,
        };
        let mut bytes = meta.encode();
        assert_eq!(Meta::decode(&bytes).unwrap(), meta);
        bytes[40] ^= 1;
        assert!(matches!(
            Meta::decode(&bytes),
            Err(ReadError::BadChecksum { .. })
        ));
        bytes[0] ^= 1;
        assert!(matches!(Meta::decode(&bytes), Err(ReadError::BadMagic(_))));
        assert!(matches!(
            Meta::decode(&meta.encode()[..10]),
            Err(ReadError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn page_header_round_trips() {
        let h = PageHeader {
            id: 5,
            flags: LEAF_PAGE,
            count: 3,
            overflow: 2,
        };
        let mut out = [0u8; 16];
        h.encode(&mut out);
        assert_eq!(PageHeader::decode(&out).unwrap(), h);
    }
}
