//! Buckets: lookups by key and in-order iteration over a bucket's B+tree.

use std::collections::HashSet;

use super::page::{Kind, Page};
use super::{Db, MAX_BUCKET_NESTING, MAX_TREE_DEPTH};
use crate::error::ReadError;
use crate::format::{BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, BucketHeader, PAGE_HEADER_SIZE};

/// A bucket of a [`Db`]: a B+tree of keys in byte order, each holding a value or a nested
/// bucket. Cheap to copy; it borrows the database.
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    /// The database the bucket's pages live in.
    db: &'a Db,
    /// Where the tree starts, and the bucket's sequence.
    header: BucketHeader,
    /// For an inline bucket (root 0), its single leaf page, held in the parent's value.
    inline: Option<&'a [u8]>,
    /// How deeply this bucket is nested (the root bucket is 0), to bound recursion.
    nesting: usize,
}

/// What a key of a bucket holds.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// A plain value.
    Data(&'a [u8]),
    /// A nested bucket.
    Bucket(Bucket<'a>),
}

/// One key of a bucket and what it holds.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Its value or nested bucket.
    pub value: Value<'a>,
}

impl<'a> Value<'a> {
    /// The plain value, if this is not a bucket.
    pub fn data(&self) -> Option<&'a [u8]> {
        match self {
            Value::Data(d) => Some(d),
            Value::Bucket(_) => None,
        }
    }
}

impl<'a> Bucket<'a> {
    /// The root bucket of `db`, from its meta.
    pub(super) fn root(db: &'a Db, header: BucketHeader) -> Self {
        Self {
            db,
            header,
            inline: None,
            nesting: 0,
        }
    }

    /// Opens the nested bucket whose header (and inline page) is `value`.
    fn nested(&self, value: &'a [u8]) -> Result<Self, ReadError> {
        let nesting = self.nesting + 1;
        if nesting > MAX_BUCKET_NESTING {
            return Err(ReadError::TooDeep(MAX_BUCKET_NESTING));
        }
        let bad = ReadError::BadBucketValue { len: value.len() };
        let header = BucketHeader::decode(value).map_err(|_| bad)?;
        let inline = if header.root == 0 {
            let page = value
                .get(BUCKET_HEADER_SIZE..)
                .filter(|p| p.len() >= PAGE_HEADER_SIZE)
                .ok_or(ReadError::BadBucketValue { len: value.len() })?;
            Some(page)
        } else {
            None
        };
        Ok(Self {
            db: self.db,
            header,
            inline,
            nesting,
        })
    }

    /// The bucket's sequence counter (bbolt's `Sequence`).
    pub fn sequence(&self) -> u64 {
        self.header.sequence
    }

    /// Whether the bucket is stored inline in its parent's value.
    pub fn is_inline(&self) -> bool {
        self.inline.is_some()
    }

    /// The root page id of the bucket's tree (0 for an inline bucket).
    pub fn root_page_id(&self) -> u64 {
        self.header.root
    }

    /// How deeply this bucket is nested (the root bucket is 0).
    pub fn nesting(&self) -> usize {
        self.nesting
    }

    pub(super) fn db(&self) -> &'a Db {
        self.db
    }

    fn root_page(&self) -> Result<Page<'a>, ReadError> {
        match self.inline {
            Some(bytes) => Page::inline(bytes),
            None => self.db.tree_page(self.header.root),
        }
    }

    fn entry(&self, key: &'a [u8], flags: u32, value: &'a [u8]) -> Result<Entry<'a>, ReadError> {
        let value = if flags & BUCKET_LEAF_FLAG != 0 {
            Value::Bucket(self.nested(value)?)
        } else {
            Value::Data(value)
        };
        Ok(Entry { key, value })
    }

    /// The entry at `key`, by descending the tree.
    pub fn get(&self, key: &[u8]) -> Result<Option<Entry<'a>>, ReadError> {
        let mut page = self.root_page()?;
        for _ in 0..MAX_TREE_DEPTH {
            match page.kind {
                Kind::Leaf => {
                    let i = page.search(key)?;
                    if i >= page.count {
                        return Ok(None);
                    }
                    let elem = page.leaf(i)?;
                    if elem.key != key {
                        return Ok(None);
                    }
                    return self.entry(elem.key, elem.flags, elem.value).map(Some);
                }
                Kind::Branch => {
                    if page.count == 0 {
                        return Ok(None);
                    }
                    // The child whose first key is the greatest not above `key`.
                    let mut i = page.search(key)?;
                    if i >= page.count || page.key(i)? != key {
                        i = i.saturating_sub(1);
                    }
                    let (_, child) = page.branch(i)?;
                    page = self.db.tree_page(child)?;
                }
            }
        }
        Err(ReadError::TooDeep(MAX_TREE_DEPTH))
    }

    /// The plain value at `key` (`None` if absent or a bucket).
    pub fn get_value(&self, key: &[u8]) -> Result<Option<&'a [u8]>, ReadError> {
        Ok(self.get(key)?.and_then(|e| e.value.data()))
    }

    /// The nested bucket at `name` (`None` if absent or a plain value).
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'a>>, ReadError> {
        Ok(match self.get(name)? {
            Some(Entry {
                value: Value::Bucket(b),
                ..
            }) => Some(b),
            _ => None,
        })
    }

    /// Every entry in key order. The iterator yields an error at the first malformed
    /// structure (and nothing after it), including keys out of order and pages reached twice.
    pub fn iter(&self) -> Entries<'a> {
        Entries {
            bucket: *self,
            stack: Vec::new(),
            visited: HashSet::new(),
            last_key: None,
            state: State::Start,
        }
    }
}

/// Where an [`Entries`] iterator stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The root page is not loaded yet.
    Start,
    /// Walking the tree.
    Running,
    /// Finished, or stopped at an error.
    Done,
}

/// In-order iteration over a bucket's entries, depth-first with an explicit stack.
#[derive(Debug)]
pub struct Entries<'a> {
    /// The bucket walked.
    bucket: Bucket<'a>,
    /// The path from the root to the current page, with the next element index in each.
    stack: Vec<(Page<'a>, usize)>,
    /// Pages already entered, so a cycle or a shared page is an error rather than a loop.
    visited: HashSet<u64>,
    /// The previous key, to check the order.
    last_key: Option<&'a [u8]>,
    /// Where the walk stands.
    state: State,
}

impl<'a> Entries<'a> {
    fn enter(&mut self, page: Page<'a>) -> Result<(), ReadError> {
        if self.stack.len() >= MAX_TREE_DEPTH {
            return Err(ReadError::TooDeep(MAX_TREE_DEPTH));
        }
        if self.bucket.inline.is_none() && !self.visited.insert(page.id) {
            return Err(ReadError::PageReusedOrCycle(page.id));
        }
        self.stack.push((page, 0));
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Entry<'a>>, ReadError> {
        if self.state == State::Start {
            self.state = State::Running;
            let root = self.bucket.root_page()?;
            self.enter(root)?;
        }
        loop {
            let Some((page, index)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let (page, i) = (*page, *index);
            if i >= page.count {
                self.stack.pop();
                continue;
            }
            *index += 1;
            match page.kind {
                Kind::Leaf => {
                    let elem = page.leaf(i)?;
                    if elem.key.is_empty() {
                        return Err(ReadError::EmptyKey { page: page.id });
                    }
                    if self.last_key.is_some_and(|last| last >= elem.key) {
                        return Err(ReadError::KeyOrder { page: page.id });
                    }
                    self.last_key = Some(elem.key);
                    return self
                        .bucket
                        .entry(elem.key, elem.flags, elem.value)
                        .map(Some);
                }
                Kind::Branch => {
                    let (_, child) = page.branch(i)?;
                    let child = self.bucket.db.tree_page(child)?;
                    self.enter(child)?;
                }
            }
        }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.state == State::Done {
            return None;
        }
        match self.step() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.state = State::Done;
                None
            }
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for Entries<'_> {}
