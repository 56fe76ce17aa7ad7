//! A borrowed view of one page (or of an inline bucket's page) and its elements.

use crate::error::ReadError;
use crate::format::{
    BRANCH_ELEMENT_SIZE, BRANCH_PAGE, LEAF_ELEMENT_SIZE, LEAF_PAGE, PAGE_HEADER_SIZE, PageHeader,
    read_u32, read_u64, slice,
};

/// Whether a tree page holds keys with children or keys with values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Keys and child page ids.
    Branch,
    /// Keys and values (or nested buckets).
    Leaf,
}

/// One tree page: its header and every byte it spans (header, elements, overflow pages).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page<'a> {
    /// The page id (0 for an inline page), for error messages and reference tracking.
    pub id: u64,
    /// Branch or leaf.
    pub kind: Kind,
    /// Number of elements.
    pub count: usize,
    /// Number of pages spanned beyond the first (0 for inline pages).
    pub overflow: u32,
    /// The page's bytes, starting with its header; element offsets are relative to these.
    bytes: &'a [u8],
}

/// One element of a leaf page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeafElement<'a> {
    /// The element's flags (`BUCKET_LEAF_FLAG` for a nested bucket).
    pub flags: u32,
    /// The key.
    pub key: &'a [u8],
    /// The value, or the nested bucket's header and inline page.
    pub value: &'a [u8],
}

impl<'a> Page<'a> {
    /// A tree page from its bytes: `id` is where it was found (0 for an inline page).
    pub fn tree(id: u64, bytes: &'a [u8]) -> Result<Self, ReadError> {
        let header = PageHeader::decode(bytes)?;
        let kind = match header.flags & (BRANCH_PAGE | LEAF_PAGE) {
            BRANCH_PAGE => Kind::Branch,
            LEAF_PAGE => Kind::Leaf,
            _ => {
                return Err(ReadError::BadPageType {
                    id,
                    flags: header.flags,
                    expected: "branch or leaf",
                });
            }
        };
        Ok(Self {
            id,
            kind,
            count: usize::from(header.count),
            overflow: header.overflow,
            bytes,
        })
    }

    /// The page of an inline bucket: always a single leaf, stored inside the parent's value.
    pub fn inline(bytes: &'a [u8]) -> Result<Self, ReadError> {
        let page = Self::tree(0, bytes)?;
        if page.kind != Kind::Leaf {
            return Err(ReadError::BadPageType {
                id: 0,
                flags: BRANCH_PAGE,
                expected: "leaf (inline bucket)",
            });
        }
        Ok(Self {
            overflow: 0,
            ..page
        })
    }

    fn element_offset(index: usize, size: usize) -> Result<usize, ReadError> {
        index
            .checked_mul(size)
            .and_then(|o| o.checked_add(PAGE_HEADER_SIZE))
            .ok_or(ReadError::OutOfBounds {
                what: "page element",
            })
    }

    /// Bytes at `pos` relative to the element at `elem`, as bbolt addresses them.
    fn data(
        &self,
        elem: usize,
        pos: u32,
        len: u32,
        what: &'static str,
    ) -> Result<&'a [u8], ReadError> {
        let at = elem
            .checked_add(pos as usize)
            .ok_or(ReadError::OutOfBounds { what })?;
        slice(self.bytes, at, len as usize, what)
    }

    /// The `index`-th element of a leaf page.
    pub fn leaf(&self, index: usize) -> Result<LeafElement<'a>, ReadError> {
        let elem = Self::element_offset(index, LEAF_ELEMENT_SIZE)?;
        let what = "leaf element";
        let flags = read_u32(self.bytes, elem, what)?;
        let pos = read_u32(self.bytes, elem + 4, what)?;
        let ksize = read_u32(self.bytes, elem + 8, what)?;
        let vsize = read_u32(self.bytes, elem + 12, what)?;
        let key = self.data(elem, pos, ksize, "leaf key")?;
        let value_pos = pos
            .checked_add(ksize)
            .ok_or(ReadError::OutOfBounds { what: "leaf value" })?;
        let value = self.data(elem, value_pos, vsize, "leaf value")?;
        Ok(LeafElement { flags, key, value })
    }

    /// The `index`-th element of a branch page: the first key of a child and its page id.
    pub fn branch(&self, index: usize) -> Result<(&'a [u8], u64), ReadError> {
        let elem = Self::element_offset(index, BRANCH_ELEMENT_SIZE)?;
        let what = "branch element";
        let pos = read_u32(self.bytes, elem, what)?;
        let ksize = read_u32(self.bytes, elem + 4, what)?;
        let child = read_u64(self.bytes, elem + 8, what)?;
        let key = self.data(elem, pos, ksize, "branch key")?;
        Ok((key, child))
    }

    /// The key of the `index`-th element, whatever the page kind.
    pub fn key(&self, index: usize) -> Result<&'a [u8], ReadError> {
        match self.kind {
            Kind::Leaf => Ok(self.leaf(index)?.key),
            Kind::Branch => Ok(self.branch(index)?.0),
        }
    }

    /// The first index whose key is `>= key` (`count` if none), by binary search.
    pub fn search(&self, key: &[u8]) -> Result<usize, ReadError> {
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid)? < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::put;

    fn leaf_page(items: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; 256];
        PageHeader {
            id: 0,
            flags: LEAF_PAGE,
            count: items.len() as u16,
            overflow: 0,
        }
        .encode(&mut out);
        let mut data = PAGE_HEADER_SIZE + items.len() * LEAF_ELEMENT_SIZE;
        for (i, (k, v)) in items.iter().enumerate() {
            let elem = PAGE_HEADER_SIZE + i * LEAF_ELEMENT_SIZE;
            put(&mut out, elem + 4, &((data - elem) as u32).to_le_bytes());
            put(&mut out, elem + 8, &(k.len() as u32).to_le_bytes());
            put(&mut out, elem + 12, &(v.len() as u32).to_le_bytes());
            put(&mut out, data, k);
            put(&mut out, data + k.len(), v);
            data += k.len() + v.len();
        }
        out
    }

    #[test]
    fn reads_leaf_elements_and_searches() {
        let bytes = leaf_page(&[(b"a", b"1"), (b"c", b"3")]);
        let page = Page::inline(&bytes).unwrap();
        assert_eq!(page.leaf(1).unwrap().value, b"3");
        assert_eq!(page.search(b"b").unwrap(), 1);
        assert_eq!(page.search(b"d").unwrap(), 2);
        assert!(page.leaf(20).is_err());
    }

    #[test]
    fn element_pointing_past_the_page_is_an_error() {
        let mut bytes = leaf_page(&[(b"a", b"1")]);
        put(&mut bytes, PAGE_HEADER_SIZE + 12, &u32::MAX.to_le_bytes());
        let page = Page::inline(&bytes).unwrap();
        assert!(matches!(page.leaf(0), Err(ReadError::OutOfBounds { .. })));
    }
}
