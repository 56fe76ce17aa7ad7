//! bbolt's consistency check (`Tx.Check`): every page below the high-water mark is either
//! reachable from the meta exactly once, or on the freelist, and never both.
//!
//! `etcdctl snapshot status` refuses a file that fails it, so the writer's output is held to
//! it in tests.

use super::page::Kind;
use super::{Bucket, Db, MAX_TREE_DEPTH, Value};
use crate::error::ReadError;

/// Marks for every page below the high-water mark.
struct Pages {
    /// Pages reached from the meta (meta pages, freelist, tree pages and their overflow).
    reachable: Vec<bool>,
    /// Pages on the freelist.
    free: Vec<bool>,
}

impl Pages {
    fn slot(v: &mut [bool], id: u64) -> Option<&mut bool> {
        usize::try_from(id).ok().and_then(|i| v.get_mut(i))
    }

    fn reach(&mut self, id: u64, high_water: u64) -> Result<(), ReadError> {
        if Self::slot(&mut self.free, id).is_some_and(|f| *f) {
            return Err(ReadError::ReachableFreed(id));
        }
        let slot = Self::slot(&mut self.reachable, id)
            .ok_or(ReadError::PageBeyondEnd { id, high_water })?;
        if *slot {
            return Err(ReadError::PageReusedOrCycle(id));
        }
        *slot = true;
        Ok(())
    }
}

pub(super) fn check(db: &Db) -> Result<(), ReadError> {
    let high_water = db.meta.high_water;
    // The high-water mark was checked against the file's length, so this is bounded by it.
    let n = usize::try_from(high_water).map_err(|_| ReadError::OutOfBounds { what: "page" })?;
    let mut pages = Pages {
        reachable: vec![false; n],
        free: vec![false; n],
    };
    for id in db.free_pages()? {
        let slot =
            Pages::slot(&mut pages.free, id).ok_or(ReadError::PageBeyondEnd { id, high_water })?;
        if *slot {
            return Err(ReadError::DoubleFree(id));
        }
        *slot = true;
    }
    pages.reach(0, high_water)?;
    pages.reach(1, high_water)?;
    if db.meta.freelist != crate::format::NO_FREELIST {
        let (header, _) = db.raw_page(db.meta.freelist)?;
        for i in 0..=u64::from(header.overflow) {
            pages.reach(db.meta.freelist + i, high_water)?;
        }
    }
    check_bucket(&db.root(), &mut pages)?;
    for id in 0..high_water {
        let i = id as usize;
        let seen = pages.reachable.get(i).copied().unwrap_or(false);
        let free = pages.free.get(i).copied().unwrap_or(false);
        if !seen && !free {
            return Err(ReadError::UnreachableUnfreed(id));
        }
    }
    Ok(())
}

fn check_bucket(bucket: &Bucket<'_>, pages: &mut Pages) -> Result<(), ReadError> {
    let db = bucket.db();
    let high_water = db.meta.high_water;
    if !bucket.is_inline() {
        let mut stack = vec![(bucket.root_page_id(), 1usize)];
        while let Some((id, depth)) = stack.pop() {
            if depth > MAX_TREE_DEPTH {
                return Err(ReadError::TooDeep(MAX_TREE_DEPTH));
            }
            let page = db.tree_page(id)?;
            for i in 0..=u64::from(page.overflow) {
                pages.reach(id + i, high_water)?;
            }
            if page.kind == Kind::Branch {
                for i in 0..page.count {
                    stack.push((page.branch(i)?.1, depth + 1));
                }
            }
        }
    }
    for entry in bucket.iter() {
        if let Value::Bucket(child) = entry?.value {
            check_bucket(&child, pages)?;
        }
    }
    Ok(())
}
