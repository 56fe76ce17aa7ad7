//! Key permissions as etcd 3.4 reads them (`auth/range_perm_cache.go`): each user's
//! permissions, from all its roles, merged into sorted sets of key intervals, one for reading
//! and one for writing, built once per auth change so a check is a binary search.
//!
//! etcd's intervals are half-open `[key, end)` in "bytes affine" order, where the empty key
//! stands above every key: a permission with an empty `range_end` is the single key (the
//! interval `[key, key + "\0")`), `range_end = "\0"` means every key from `key` on, anything
//! else `[key, range_end)`. A request is allowed when its interval lies inside the union of
//! the permitted ones (etcd's `IntervalTree.Contains`; adjacent intervals join). A request
//! whose range is empty or inverted (`range_end <= key`) is allowed exactly when its `key`
//! is, which is what etcd's interval comparison makes of it.

use mango_proto::authpb::Permission;
use mango_proto::authpb::permission::Type as PermType;

/// A key bound in etcd's affine order: `Infinite` (the empty key) above every key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Bound {
    /// A key.
    Key(Vec<u8>),
    /// Above every key.
    Infinite,
}

impl Bound {
    /// etcd's reading of a key as a bound: empty is infinite.
    pub(crate) fn of(key: &[u8]) -> Self {
        if key.is_empty() {
            Bound::Infinite
        } else {
            Bound::Key(key.to_vec())
        }
    }

    /// The bound just after `key` (`key + "\0"`): the end of the single-key interval.
    fn after(key: &[u8]) -> Self {
        let mut k = key.to_vec();
        k.push(0);
        Bound::Key(k)
    }
}

/// The interval `[begin, end)` a permission or a request names (etcd's conventions).
pub(crate) fn interval(key: &[u8], range_end: &[u8]) -> (Bound, Bound) {
    let end = match range_end {
        [] => Bound::after(key),
        [0] => Bound::Infinite,
        end => Bound::Key(end.to_vec()),
    };
    (Bound::of(key), end)
}

/// A set of keys: sorted, disjoint, non-adjacent intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeySet {
    /// `[begin, end)` spans in ascending order, each ending before the next one begins.
    spans: Vec<(Bound, Bound)>,
}

impl KeySet {
    /// The union of `intervals` (empty ones ignored).
    pub(crate) fn from_intervals(mut intervals: Vec<(Bound, Bound)>) -> Self {
        intervals.retain(|(b, e)| b < e);
        intervals.sort();
        let mut spans: Vec<(Bound, Bound)> = Vec::with_capacity(intervals.len());
        for (b, e) in intervals {
            match spans.last_mut() {
                Some((_, last_end)) if b <= *last_end => {
                    if e > *last_end {
                        *last_end = e;
                    }
                }
                _ => spans.push((b, e)),
            }
        }
        Self { spans }
    }

    /// The span that starts at or before `key`, if any.
    fn span_at(&self, key: &Bound) -> Option<&(Bound, Bound)> {
        let after = self.spans.partition_point(|(b, _)| b <= key);
        after.checked_sub(1).and_then(|i| self.spans.get(i))
    }

    /// Whether `key` is in the set (etcd's `checkKeyPoint`).
    pub(crate) fn contains_key(&self, key: &[u8]) -> bool {
        let key = Bound::of(key);
        self.span_at(&key).is_some_and(|(_, e)| key < *e)
    }

    /// Whether the keys a request's `key` and `range_end` name are all in the set (etcd's
    /// `checkKeyInterval`; an empty `range_end` is a single key, as `checkKeyPoint`).
    pub(crate) fn contains_range(&self, key: &[u8], range_end: &[u8]) -> bool {
        if range_end.is_empty() {
            return self.contains_key(key);
        }
        let (begin, end) = interval(key, range_end);
        if end <= begin {
            return self.contains_key(key);
        }
        self.span_at(&begin).is_some_and(|(_, e)| end <= *e)
    }
}

/// What one user may read and write: the union of its roles' permissions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UserPerms {
    /// Keys the user may read.
    pub(crate) read: KeySet,
    /// Keys the user may write.
    pub(crate) write: KeySet,
}

impl UserPerms {
    /// Merges the permissions of every role (etcd's `getMergedPerms`). Unknown permission
    /// types grant nothing, as in etcd.
    pub(crate) fn merge<'a>(perms: impl IntoIterator<Item = &'a Permission>) -> Self {
        let mut read = Vec::new();
        let mut write = Vec::new();
        for p in perms {
            let iv = interval(&p.key, &p.range_end);
            match PermType::try_from(p.perm_type) {
                Ok(PermType::Read) => read.push(iv),
                Ok(PermType::Write) => write.push(iv),
                Ok(PermType::Readwrite) => {
                    read.push(iv.clone());
                    write.push(iv);
                }
                Err(_) => {}
            }
        }
        Self {
            read: KeySet::from_intervals(read),
            write: KeySet::from_intervals(write),
        }
    }
}

/// Whether a permission's range is one etcd lets a role be granted (`isValidPermissionRange`):
/// a non-empty key, and a single key, an open end (`"\0"`), or an end above the key.
pub(crate) fn is_valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    if key.is_empty() {
        return false;
    }
    match range_end {
        [] | [0] => true,
        end => key < end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &[u8], end: &[u8]) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.to_vec(),
            range_end: end.to_vec(),
        }
    }

    #[test]
    fn single_keys_ranges_and_open_ends() {
        let p = UserPerms::merge(&[
            perm(PermType::Read, b"a", b""),
            perm(PermType::Readwrite, b"k", b"m"),
            perm(PermType::Write, b"x", b"\0"),
        ]);
        assert!(p.read.contains_key(b"a"));
        assert!(!p.read.contains_key(b"a\0"));
        assert!(!p.read.contains_key(b"ab"));
        assert!(p.read.contains_range(b"k", b"m"));
        assert!(p.read.contains_range(b"kz", b"l"));
        assert!(!p.read.contains_range(b"k", b"m\0"));
        assert!(p.write.contains_range(b"x", b"\0"));
        assert!(p.write.contains_range(b"y", b"\0"));
        assert!(p.write.contains_key(b"zzz"));
        assert!(!p.write.contains_range(b"w", b"\0"));
        assert!(!p.read.contains_key(b"x"));
    }

    #[test]
    fn adjacent_and_overlapping_ranges_join() {
        let p = UserPerms::merge(&[
            perm(PermType::Read, b"a", b"c"),
            perm(PermType::Read, b"c", b"e"),
            perm(PermType::Read, b"d", b"g"),
            perm(PermType::Read, b"g", b""),
        ]);
        assert!(p.read.contains_range(b"a", b"g"));
        assert!(p.read.contains_range(b"a", b"g\0"));
        assert!(!p.read.contains_range(b"a", b"g\0\0"));
        assert!(!p.read.contains_range(b"0", b"b"));
    }

    #[test]
    fn empty_and_inverted_requests_are_their_first_key() {
        let p = UserPerms::merge(&[perm(PermType::Read, b"b", b"c")]);
        assert!(p.read.contains_range(b"b", b"a"));
        assert!(p.read.contains_range(b"b", b"b"));
        assert!(!p.read.contains_range(b"d", b"a"));
        assert!(!p.read.contains_key(b""));
    }

    #[test]
    fn valid_permission_ranges() {
        assert!(is_valid_permission_range(b"a", b""));
        assert!(is_valid_permission_range(b"a", b"\0"));
        assert!(is_valid_permission_range(b"a", b"b"));
        assert!(!is_valid_permission_range(b"b", b"a"));
        assert!(!is_valid_permission_range(b"a", b"a"));
        assert!(!is_valid_permission_range(b"", b"a"));
    }
}
