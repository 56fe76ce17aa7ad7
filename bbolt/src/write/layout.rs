//! Lays buckets out as bbolt pages: leaves packed in key order, branch levels above them
//! until one root page, small buckets inline in their parent, then the freelist and the two
//! meta pages.
//!
//! The page layout of a file this writes:
//!
//! | page | holds |
//! |---|---|
//! | 0, 1 | meta pages (same content; meta 0 has the higher txid) |
//! | 2 | the freelist, empty: every page is in use |
//! | 3.. | each bucket's leaves then its branches, nested buckets before their parent, the root bucket last |

use std::borrow::Cow;

use super::builder::{BucketBuilder, DbBuilder, Item};
use crate::error::WriteError;
use crate::format::{
    BRANCH_ELEMENT_SIZE, BRANCH_PAGE, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, BucketHeader,
    DEFAULT_PAGE_SIZE, FREELIST_PAGE, LEAF_ELEMENT_SIZE, LEAF_PAGE, META_PAGE, Meta,
    PAGE_HEADER_SIZE, PageHeader, put,
};
use crate::read::{MAX_PAGE_SIZE, MIN_PAGE_SIZE};

/// How the file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Page size: a power of two from 1 KiB to 64 KiB. 4096 by default, as etcd on Linux.
    pub page_size: usize,
    /// How full (percent, 10..=100) a page is packed before the next one starts. 100 makes
    /// the smallest file; bbolt splits pages again when they are written later.
    pub fill_percent: u8,
    /// The transaction id written into meta 0 (meta 1 gets one less), at least 1.
    pub txid: u64,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            page_size: DEFAULT_PAGE_SIZE,
            fill_percent: 100,
            txid: 2,
        }
    }
}

/// Builds the whole file in memory.
pub fn write_db(db: &DbBuilder, opts: &WriteOptions) -> Result<Vec<u8>, WriteError> {
    let ps = opts.page_size;
    if !ps.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&ps) {
        return Err(WriteError::BadPageSize(ps));
    }
    let fill = usize::from(opts.fill_percent.clamp(10, 100));
    let mut layout = Layout {
        page_size: ps,
        threshold: (ps * fill / 100).max(PAGE_HEADER_SIZE + 1),
        buf: vec![0u8; 3 * ps],
        next: 3,
    };
    let root = layout.write_bucket(&db.root)?;
    // The freelist: page 2, no ids.
    if let Some(page) = layout.buf.get_mut(2 * ps..) {
        PageHeader {
            id: 2,
            flags: FREELIST_PAGE,
            count: 0,
            overflow: 0,
        }
        .encode(page);
    }
    let txid = opts.txid.max(1);
    for (id, txid) in [(0u64, txid), (1, txid - 1)] {
        let meta = Meta {
            page_size: u32::try_from(ps).map_err(|_| WriteError::BadPageSize(ps))?,
            flags: 0,
            root: BucketHeader {
                root,
                sequence: db.root.sequence,
            },
            freelist: 2,
            high_water: layout.next,
            txid,
        };
        let at = id as usize * ps;
        if let Some(page) = layout.buf.get_mut(at..) {
            PageHeader {
                id,
                flags: META_PAGE,
                count: 0,
                overflow: 0,
            }
            .encode(page);
        }
        put(&mut layout.buf, at + PAGE_HEADER_SIZE, &meta.encode());
    }
    Ok(layout.buf)
}

/// One element of a node being written.
struct Element<'a> {
    /// The key.
    key: &'a [u8],
    /// Leaf flags (`BUCKET_LEAF_FLAG` for a nested bucket); unused in branches.
    flags: u32,
    /// The value (leaf) or empty (branch).
    value: Cow<'a, [u8]>,
    /// The child page (branch) or 0 (leaf).
    child: u64,
}

impl Element<'_> {
    fn size(&self) -> usize {
        // Both element headers are 16 bytes.
        LEAF_ELEMENT_SIZE + self.key.len() + self.value.len()
    }
}

/// Whether a tree level holds keys with values or keys with children.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Leaf,
    Branch,
}

/// The file being built.
struct Layout {
    /// The page size.
    page_size: usize,
    /// The byte size a page is packed up to before the next one starts.
    threshold: usize,
    /// The file so far: `next` pages.
    buf: Vec<u8>,
    /// The next free page id, and at the end the high-water mark.
    next: u64,
}

impl Layout {
    /// Writes `bucket`'s tree (nested buckets first) and returns its root page id.
    fn write_bucket(&mut self, bucket: &BucketBuilder) -> Result<u64, WriteError> {
        let mut elements = Vec::with_capacity(bucket.len());
        for (key, item) in bucket.iter() {
            let (flags, value) = match item {
                Item::Value(v) => (0, Cow::Borrowed(v.as_slice())),
                Item::Bucket(child) => (BUCKET_LEAF_FLAG, Cow::Owned(self.bucket_value(child)?)),
            };
            elements.push(Element {
                key,
                flags,
                value,
                child: 0,
            });
        }
        self.write_tree(elements)
    }

    /// The value a nested bucket is stored as: its header, plus its page when it is small
    /// enough to live inline (no nested buckets, a quarter page at most: bbolt's rule).
    fn bucket_value(&mut self, bucket: &BucketBuilder) -> Result<Vec<u8>, WriteError> {
        let inline_size = bucket
            .iter()
            .try_fold(PAGE_HEADER_SIZE, |size, (k, item)| match item {
                Item::Value(v) => Some(size + LEAF_ELEMENT_SIZE + k.len() + v.len()),
                Item::Bucket(_) => None,
            });
        match inline_size {
            Some(size) if size <= self.page_size / 4 => {
                let elements: Vec<Element<'_>> = bucket
                    .iter()
                    .filter_map(|(key, item)| match item {
                        Item::Value(v) => Some(Element {
                            key,
                            flags: 0,
                            value: Cow::Borrowed(v.as_slice()),
                            child: 0,
                        }),
                        Item::Bucket(_) => None,
                    })
                    .collect();
                let mut out = vec![0u8; BUCKET_HEADER_SIZE + size];
                put(
                    &mut out,
                    0,
                    &BucketHeader {
                        root: 0,
                        sequence: bucket.sequence,
                    }
                    .encode(),
                );
                let page = out.get_mut(BUCKET_HEADER_SIZE..).unwrap_or_default();
                encode_node(page, 0, Level::Leaf, &elements)?;
                Ok(out)
            }
            _ => {
                let root = self.write_bucket(bucket)?;
                Ok(BucketHeader {
                    root,
                    sequence: bucket.sequence,
                }
                .encode()
                .to_vec())
            }
        }
    }

    /// Writes the leaves, then branch levels until a single root, whose id it returns.
    fn write_tree(&mut self, elements: Vec<Element<'_>>) -> Result<u64, WriteError> {
        // A leaf page may hold a single (large) element.
        let mut children = Vec::new();
        for group in pack(&elements, self.threshold, 1) {
            let nodes = elements.get(group).unwrap_or_default();
            let id = self.write_node(Level::Leaf, nodes)?;
            children.push((
                nodes.first().map(|e| e.key.to_vec()).unwrap_or_default(),
                id,
            ));
        }
        self.write_branches(children)
    }

    /// Writes branch levels over `children` (first key, page id) until one root page. A
    /// branch page holds at least two children, so each level is smaller than the one below.
    fn write_branches(&mut self, mut children: Vec<(Vec<u8>, u64)>) -> Result<u64, WriteError> {
        while children.len() > 1 {
            let elements: Vec<Element<'_>> = children
                .iter()
                .map(|(key, child)| Element {
                    key,
                    flags: 0,
                    value: Cow::Borrowed(&[]),
                    child: *child,
                })
                .collect();
            let mut next = Vec::new();
            for group in pack(&elements, self.threshold, 2) {
                let nodes = elements.get(group).unwrap_or_default();
                let id = self.write_node(Level::Branch, nodes)?;
                next.push((
                    nodes.first().map(|e| e.key.to_vec()).unwrap_or_default(),
                    id,
                ));
            }
            children = next;
        }
        Ok(children.first().map(|c| c.1).unwrap_or(0))
    }

    /// Allocates pages for one node, writes it, and returns its page id.
    fn write_node(&mut self, level: Level, elements: &[Element<'_>]) -> Result<u64, WriteError> {
        let size = node_size(elements);
        let pages = size.div_ceil(self.page_size).max(1);
        let id = self.next;
        let start = usize::try_from(id)
            .ok()
            .and_then(|i| i.checked_mul(self.page_size))
            .ok_or(WriteError::TooLarge)?;
        let len = pages
            .checked_mul(self.page_size)
            .ok_or(WriteError::TooLarge)?;
        let end = start.checked_add(len).ok_or(WriteError::TooLarge)?;
        self.buf.resize(end, 0);
        self.next = id.checked_add(pages as u64).ok_or(WriteError::TooLarge)?;
        let page = self.buf.get_mut(start..end).ok_or(WriteError::TooLarge)?;
        encode_node(page, id, level, elements)?;
        let overflow = u32::try_from(pages - 1).map_err(|_| WriteError::TooLarge)?;
        put(page, 12, &overflow.to_le_bytes());
        Ok(id)
    }
}

/// Bytes a node takes: page header, element headers, keys and values.
fn node_size(elements: &[Element<'_>]) -> usize {
    PAGE_HEADER_SIZE + elements.iter().map(Element::size).sum::<usize>()
}

/// Splits `elements` into page-sized runs: a run ends when the next element would pass
/// `threshold`, once it holds at least `min` elements (and never reaches 0xFFFF of them).
fn pack(elements: &[Element<'_>], threshold: usize, min: usize) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut size) = (0, PAGE_HEADER_SIZE);
    for (i, e) in elements.iter().enumerate() {
        let count = i - start;
        if count >= 0xFFFE || (count >= min && size + e.size() > threshold) {
            groups.push(start..i);
            start = i;
            size = PAGE_HEADER_SIZE;
        }
        size += e.size();
    }
    groups.push(start..elements.len());
    groups
}

/// Encodes a node into `page` (sized by the caller): header, elements, then keys and values,
/// each element's `pos` counted from the element itself as bbolt does.
fn encode_node(
    page: &mut [u8],
    id: u64,
    level: Level,
    elements: &[Element<'_>],
) -> Result<(), WriteError> {
    let count = u16::try_from(elements.len()).map_err(|_| WriteError::TooLarge)?;
    let flags = if level == Level::Leaf {
        LEAF_PAGE
    } else {
        BRANCH_PAGE
    };
    PageHeader {
        id,
        flags,
        count,
        overflow: 0,
    }
    .encode(page);
    let mut data = PAGE_HEADER_SIZE + elements.len() * BRANCH_ELEMENT_SIZE;
    for (i, e) in elements.iter().enumerate() {
        let at = PAGE_HEADER_SIZE + i * LEAF_ELEMENT_SIZE;
        let pos = u32::try_from(data - at).map_err(|_| WriteError::TooLarge)?;
        let ksize = u32::try_from(e.key.len()).map_err(|_| WriteError::TooLarge)?;
        match level {
            Level::Leaf => {
                let vsize = u32::try_from(e.value.len()).map_err(|_| WriteError::TooLarge)?;
                put(page, at, &e.flags.to_le_bytes());
                put(page, at + 4, &pos.to_le_bytes());
                put(page, at + 8, &ksize.to_le_bytes());
                put(page, at + 12, &vsize.to_le_bytes());
            }
            Level::Branch => {
                put(page, at, &pos.to_le_bytes());
                put(page, at + 4, &ksize.to_le_bytes());
                put(page, at + 8, &e.child.to_le_bytes());
            }
        }
        put(page, data, e.key);
        put(page, data + e.key.len(), &e.value);
        data += e.key.len() + e.value.len();
    }
    Ok(())
}
