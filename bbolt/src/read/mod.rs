//! The reader: a whole bbolt file in memory, its meta, and its buckets.

mod bucket;
mod check;
mod page;

pub use bucket::{Bucket, Entries, Entry, Value};

use std::path::Path;

use crate::error::ReadError;
use crate::format::{self, Meta, NO_FREELIST, PAGE_HEADER_SIZE, PageHeader};
use page::Page;

/// How deep a B+tree may be (pages from root to leaf). bbolt's trees are a handful of levels
/// even for gigabytes; the limit turns a cycle or a hostile file into an error, not a hang.
pub const MAX_TREE_DEPTH: usize = 64;
/// How deeply buckets may nest. etcd nests none; the limit bounds recursion on hostile input.
pub const MAX_BUCKET_NESTING: usize = 64;
/// The smallest page size accepted (read and written).
pub const MIN_PAGE_SIZE: usize = 1024;
/// The largest page size accepted (read and written).
pub const MAX_PAGE_SIZE: usize = 65_536;

/// A bbolt database read whole into memory and validated at its meta pages.
///
/// Pages are decoded lazily, each access bounds-checked, so a malformed file yields a
/// [`ReadError`] at the first structure that does not hold. Bytes past the high-water mark
/// (such as the SHA-256 that etcd appends to a snapshot) are ignored.
#[derive(Debug)]
pub struct Db {
    /// The file's bytes; every borrowed key and value points into them.
    data: Vec<u8>,
    /// The valid meta page with the highest transaction id: the database's current state.
    meta: Meta,
    /// The page size from the meta, as a usize for offset arithmetic.
    page_size: usize,
}

impl Db {
    /// Reads and validates the bbolt file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ReadError> {
        Self::from_bytes(std::fs::read(path)?)
    }

    /// Validates `data` as a bbolt file: both meta pages are tried, the valid one with the
    /// higher transaction id is used (as bbolt does), and it must point inside the file.
    pub fn from_bytes(data: Vec<u8>) -> Result<Self, ReadError> {
        if data.len() < 2 * MIN_PAGE_SIZE {
            return Err(ReadError::TooSmall { len: data.len() });
        }
        // Meta 0 gives the page size, which places meta 1. If meta 0 is damaged, bbolt
        // assumes the default page size; we then also try the other page sizes, so a file
        // with 1 KiB or 16 KiB pages survives a damaged meta 0 as well.
        let meta0 = meta_at(&data, 0, None);
        let meta1 = match &meta0 {
            Ok(m) => meta_at(&data, m.page_size as usize, Some(m.page_size as usize)),
            Err(_) => {
                let mut sizes = std::iter::successors(Some(MIN_PAGE_SIZE), |s| Some(s * 2))
                    .take_while(|s| *s <= MAX_PAGE_SIZE);
                let first = meta_at(
                    &data,
                    format::DEFAULT_PAGE_SIZE,
                    Some(format::DEFAULT_PAGE_SIZE),
                );
                match first {
                    Ok(m) => Ok(m),
                    Err(e) => sizes.find_map(|s| meta_at(&data, s, Some(s)).ok()).ok_or(e),
                }
            }
        };
        let meta = match (meta0, meta1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(a), Err(b)) => {
                return Err(ReadError::NoValidMeta {
                    meta0: Box::new(a),
                    meta1: Box::new(b),
                });
            }
        };
        let page_size = meta.page_size as usize;
        check_meta(&meta, data.len())?;
        Ok(Self {
            data,
            meta,
            page_size,
        })
    }

    /// The meta in use.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The page size of the file.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The database's size as bbolt counts it (`Tx.Size`): high-water mark × page size.
    pub fn size(&self) -> u64 {
        self.meta.high_water.saturating_mul(self.page_size as u64)
    }

    /// The bytes of the database proper: the file up to its high-water mark.
    pub fn bytes(&self) -> &[u8] {
        let end = usize::try_from(self.size()).unwrap_or(usize::MAX);
        self.data.get(..end).unwrap_or(&self.data)
    }

    /// The root bucket, whose keys are the names of the top-level buckets.
    pub fn root(&self) -> Bucket<'_> {
        Bucket::root(self, self.meta.root)
    }

    /// The top-level bucket `name`, if there is one.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'_>>, ReadError> {
        self.root().bucket(name)
    }

    /// The free page ids: the stored freelist, or, when the file stores none (etcd 3.4 runs
    /// bbolt with `NoFreelistSync`), every page from 2 that no tree reaches, as bbolt
    /// rebuilds it.
    pub fn free_pages(&self) -> Result<Vec<u64>, ReadError> {
        if self.meta.freelist == NO_FREELIST {
            let seen = check::reachable(self)?;
            return Ok((2..self.meta.high_water)
                .filter(|&id| !seen.get(id as usize).copied().unwrap_or(false))
                .collect());
        }
        let (header, bytes) = self.raw_page(self.meta.freelist)?;
        if header.flags & format::FREELIST_PAGE == 0 {
            return Err(ReadError::BadPageType {
                id: header.id,
                flags: header.flags,
                expected: "freelist",
            });
        }
        let (first, count) = if header.count == 0xFFFF {
            // The count overflowed u16: the real count is the first id slot.
            let n = format::read_u64(bytes, PAGE_HEADER_SIZE, "freelist count")?;
            (
                1usize,
                usize::try_from(n).map_err(|_| ReadError::OutOfBounds { what: "freelist" })?,
            )
        } else {
            (0, usize::from(header.count))
        };
        let start = first
            .checked_mul(8)
            .and_then(|o| o.checked_add(PAGE_HEADER_SIZE))
            .ok_or(ReadError::OutOfBounds { what: "freelist" })?;
        let len = count
            .checked_mul(8)
            .ok_or(ReadError::OutOfBounds { what: "freelist" })?;
        let ids = format::slice(bytes, start, len, "freelist")?;
        let mut out = Vec::with_capacity(count);
        for chunk in ids.chunks_exact(8) {
            out.push(format::read_u64(chunk, 0, "freelist id")?);
        }
        Ok(out)
    }

    /// Runs bbolt's consistency check (`Tx.Check`, which `etcdctl snapshot status` runs):
    /// every page below the high-water mark is reachable exactly once or free, never both.
    pub fn check(&self) -> Result<(), ReadError> {
        check::check(self)
    }

    /// A page's header and its bytes (all `overflow + 1` pages of it).
    fn raw_page(&self, id: u64) -> Result<(PageHeader, &[u8]), ReadError> {
        let high_water = self.meta.high_water;
        let beyond = ReadError::PageBeyondEnd { id, high_water };
        if id >= high_water {
            return Err(beyond);
        }
        let ps = self.page_size as u64;
        let start = usize::try_from(
            id.checked_mul(ps)
                .ok_or(ReadError::OutOfBounds { what: "page" })?,
        )
        .map_err(|_| ReadError::OutOfBounds { what: "page" })?;
        let header = PageHeader::decode(format::slice(&self.data, start, self.page_size, "page")?)?;
        if header.id != id {
            return Err(ReadError::PageIdMismatch {
                expected: id,
                found: header.id,
            });
        }
        let last = id.checked_add(u64::from(header.overflow));
        if last.is_none_or(|last| last >= high_water) {
            return Err(ReadError::PageBeyondEnd {
                id: last.unwrap_or(u64::MAX),
                high_water,
            });
        }
        let span = (u64::from(header.overflow) + 1)
            .checked_mul(ps)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or(ReadError::OutOfBounds { what: "page" })?;
        Ok((header, format::slice(&self.data, start, span, "page")?))
    }

    /// A branch or leaf page by id.
    fn tree_page(&self, id: u64) -> Result<Page<'_>, ReadError> {
        let (_, bytes) = self.raw_page(id)?;
        Page::tree(id, bytes)
    }
}

/// The meta on the page at `offset`; `page_size`, when known, must match the meta's own.
fn meta_at(data: &[u8], offset: usize, page_size: Option<usize>) -> Result<Meta, ReadError> {
    let at = offset
        .checked_add(PAGE_HEADER_SIZE)
        .ok_or(ReadError::OutOfBounds { what: "meta page" })?;
    let meta = Meta::decode(format::slice(data, at, format::META_SIZE, "meta page")?)?;
    let ps = meta.page_size as usize;
    if !ps.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&ps) {
        return Err(ReadError::BadPageSize(meta.page_size));
    }
    if page_size.is_some_and(|p| p != ps) {
        return Err(ReadError::BadMeta(
            "the meta pages disagree on the page size",
        ));
    }
    Ok(meta)
}

/// The meta's pointers must lie inside the database, and the file must reach its end.
fn check_meta(meta: &Meta, len: usize) -> Result<(), ReadError> {
    if meta.high_water < 3 {
        return Err(ReadError::BadMeta(
            "high-water mark below the first data page",
        ));
    }
    if meta.root.root < 2 || meta.root.root >= meta.high_water {
        return Err(ReadError::BadMeta("root bucket page outside the database"));
    }
    if meta.freelist != NO_FREELIST && (meta.freelist < 2 || meta.freelist >= meta.high_water) {
        return Err(ReadError::BadMeta("freelist page outside the database"));
    }
    let needed = meta.high_water.checked_mul(u64::from(meta.page_size));
    match needed {
        Some(n) if n <= len as u64 => Ok(()),
        _ => Err(ReadError::Truncated {
            len,
            needed: needed.unwrap_or(u64::MAX),
        }),
    }
}
