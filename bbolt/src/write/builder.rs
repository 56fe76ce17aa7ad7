//! What the writer is given: buckets of keys, each holding a value or a nested bucket, kept
//! in bbolt's key order (bytewise) whatever order they are added in.

use std::collections::BTreeMap;

use crate::error::WriteError;
use crate::format::{MAX_KEY_SIZE, MAX_VALUE_SIZE};

/// The content of one bucket to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketBuilder {
    /// The bucket's sequence counter (bbolt's `NextSequence`), written into its header.
    pub sequence: u64,
    /// Keys in byte order, as bbolt stores them.
    pub(crate) entries: BTreeMap<Vec<u8>, Item>,
}

/// What a key of a [`BucketBuilder`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A plain value.
    Value(Vec<u8>),
    /// A nested bucket.
    Bucket(BucketBuilder),
}

fn check_key(key: &[u8]) -> Result<(), WriteError> {
    if key.is_empty() {
        return Err(WriteError::EmptyKey);
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(WriteError::KeyTooLarge(key.len()));
    }
    Ok(())
}

impl BucketBuilder {
    /// An empty bucket.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, replacing a previous value. Fails on a key bbolt would refuse,
    /// or one that already names a nested bucket.
    pub fn put(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), WriteError> {
        let key = key.into();
        let value = value.into();
        check_key(&key)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(WriteError::ValueTooLarge(value.len()));
        }
        if let Some(Item::Bucket(_)) = self.entries.get(&key) {
            return Err(WriteError::IncompatibleValue { existing: "bucket" });
        }
        self.entries.insert(key, Item::Value(value));
        Ok(())
    }

    /// The nested bucket `name`, created empty if absent. Fails if `name` holds a value.
    pub fn bucket_mut(
        &mut self,
        name: impl Into<Vec<u8>>,
    ) -> Result<&mut BucketBuilder, WriteError> {
        let name = name.into();
        check_key(&name)?;
        match self
            .entries
            .entry(name)
            .or_insert_with(|| Item::Bucket(BucketBuilder::new()))
        {
            Item::Bucket(b) => Ok(b),
            Item::Value(_) => Err(WriteError::IncompatibleValue { existing: "value" }),
        }
    }

    /// Number of keys (values and nested buckets).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the bucket has no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys and what they hold, in byte order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Item)> {
        self.entries.iter().map(|(k, v)| (k.as_slice(), v))
    }
}

/// A whole database to write: its top-level buckets. bbolt's root bucket holds only buckets,
/// so this type offers no way to put a plain value there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbBuilder {
    /// The root bucket; every key in it is a nested bucket.
    pub(crate) root: BucketBuilder,
}

impl DbBuilder {
    /// A database with no buckets.
    pub fn new() -> Self {
        Self::default()
    }

    /// The top-level bucket `name`, created empty if absent.
    pub fn bucket_mut(
        &mut self,
        name: impl Into<Vec<u8>>,
    ) -> Result<&mut BucketBuilder, WriteError> {
        self.root.bucket_mut(name)
    }

    /// The top-level buckets, in byte order of their names.
    pub fn buckets(&self) -> impl Iterator<Item = (&[u8], &BucketBuilder)> {
        self.root.iter().filter_map(|(k, v)| match v {
            Item::Bucket(b) => Some((k, b)),
            Item::Value(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_sorted_and_conflicts_are_refused() {
        let mut b = BucketBuilder::new();
        b.put("b", "2").unwrap();
        b.put("a", "1").unwrap();
        b.bucket_mut("c").unwrap().put("x", "y").unwrap();
        let keys: Vec<&[u8]> = b.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [b"a".as_slice(), b"b", b"c"]);
        assert!(matches!(
            b.bucket_mut("a"),
            Err(WriteError::IncompatibleValue { .. })
        ));
        assert!(matches!(
            b.put("c", "v"),
            Err(WriteError::IncompatibleValue { .. })
        ));
        assert!(matches!(b.put("", "v"), Err(WriteError::EmptyKey)));
        assert!(matches!(
            b.put(vec![1u8; MAX_KEY_SIZE + 1], "v"),
            Err(WriteError::KeyTooLarge(_))
        ));
    }
}
