//! bbolt's consistency check (`Tx.Check`): every page below the high-water mark is either
//! reachable from the meta exactly once, or on the freelist, and never both.
//!
//! `etcdctl snapshot status` refuses a file that fails it, so the writer's output is held to
//! it in tests. The same walk gives the free pages of a file that stores no freelist.

use super::page::Kind;
use super::{Bucket, Db, MAX_TREE_DEPTH, Value};
use crate::error::ReadError;
use crate::format::NO_FREELIST;

/// Pages reached from the meta: meta pages, the stored freelist, tree pages and their
/// overflow. A page reached twice is an error (a cycle, or two trees sharing a page).
pub(super) fn reachable(db: &Db) -> Result<Vec<bool>, ReadError> {
    // The high-water mark was checked against the file's length, so this is bounded by it.
    let n =
        usize::try_from(db.meta.high_water).map_err(|_| ReadError::OutOfBounds { what: "page" })?;
    let mut seen = vec![false; n];
    reach(&mut seen, 0, 0)?;
    reach(&mut seen, 1, 0)?;
    if db.meta.freelist != NO_FREELIST {
        let (header, _) = db.raw_page(db.meta.freelist)?;
        reach(&mut seen, db.meta.freelist, header.overflow)?;
    }
    check_bucket(&db.root(), &mut seen)?;
    Ok(seen)
}

/// Marks page `id` and its `overflow` pages as reached, refusing a second reference.
fn reach(seen: &mut [bool], id: u64, overflow: u32) -> Result<(), ReadError> {
    let high_water = seen.len() as u64;
    for i in 0..=u64::from(overflow) {
        let page = id.saturating_add(i);
        let slot = usize::try_from(page)
            .ok()
            .and_then(|p| seen.get_mut(p))
            .ok_or(ReadError::PageBeyondEnd {
                id: page,
                high_water,
            })?;
        if *slot {
            return Err(ReadError::PageReusedOrCycle(page));
        }
        *slot = true;
    }
    Ok(())
}

/// bbolt's check. With a stored freelist, every page is reachable or free and never both.
/// Without one (etcd 3.4 runs bbolt with `NoFreelistSync`), bbolt takes every unreachable
/// page as free, so only the references themselves are checked.
pub(super) fn check(db: &Db) -> Result<(), ReadError> {
    let seen = reachable(db)?;
    if db.meta.freelist == NO_FREELIST {
        return Ok(());
    }
    let mut free = vec![false; seen.len()];
    for id in db.free_pages()? {
        let high_water = db.meta.high_water;
        let i = usize::try_from(id).ok().filter(|&i| i < free.len());
        let i = i.ok_or(ReadError::PageBeyondEnd { id, high_water })?;
        if free.get(i).copied().unwrap_or(false) {
            return Err(ReadError::DoubleFree(id));
        }
        if seen.get(i).copied().unwrap_or(false) {
            return Err(ReadError::ReachableFreed(id));
        }
        if let Some(slot) = free.get_mut(i) {
            *slot = true;
        }
    }
    match seen.iter().zip(&free).position(|(s, f)| !s && !f) {
        Some(i) => Err(ReadError::UnreachableUnfreed(i as u64)),
        None => Ok(()),
    }
}

fn check_bucket(bucket: &Bucket<'_>, seen: &mut [bool]) -> Result<(), ReadError> {
    let db = bucket.db();
    if !bucket.is_inline() {
        let mut stack = vec![(bucket.root_page_id(), 1usize)];
        while let Some((id, depth)) = stack.pop() {
            if depth > MAX_TREE_DEPTH {
                return Err(ReadError::TooDeep(MAX_TREE_DEPTH));
            }
            let page = db.tree_page(id)?;
            reach(seen, id, page.overflow)?;
            if page.kind == Kind::Branch {
                for i in 0..page.count {
                    stack.push((page.branch(i)?.1, depth + 1));
                }
            }
        }
    }
    for entry in bucket.iter() {
        if let Value::Bucket(child) = entry?.value {
            check_bucket(&child, seen)?;
        }
    }
    Ok(())
}
