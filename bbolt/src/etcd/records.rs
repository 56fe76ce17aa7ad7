//! The records etcd 3.4 keeps in its buckets, as typed values with their exact encodings.

use serde::{Deserialize, Deserializer, Serialize};

use super::EtcdError;

/// Length of a revision in the `key` bucket: 8-byte main, `_`, 8-byte sub.
pub const REVISION_LEN: usize = 17;
/// The byte that follows a revision to mark a deletion.
pub const TOMBSTONE_MARK: u8 = b't';

/// An etcd revision: `main` counts write transactions, `sub` the changes inside one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    /// The revision of the transaction (what clients see as a key's mod_revision).
    pub main: i64,
    /// The index of the change within its transaction, from 0.
    pub sub: i64,
}

impl Revision {
    /// A revision with sub 0, as etcd stores compaction revisions.
    pub fn new(main: i64) -> Self {
        Self { main, sub: 0 }
    }

    /// etcd's 17 bytes: big-endian main, `_`, big-endian sub (so byte order is revision order).
    pub fn to_bytes(self) -> [u8; REVISION_LEN] {
        let mut out = [0u8; REVISION_LEN];
        out[..8].copy_from_slice(&self.main.to_be_bytes());
        out[8] = b'_';
        out[9..].copy_from_slice(&self.sub.to_be_bytes());
        out
    }

    /// Parses the first 17 bytes of `bytes` (etcd ignores the separator byte, and so do we).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let main = bytes.get(..8)?.try_into().ok()?;
        let sub = bytes.get(9..REVISION_LEN)?.try_into().ok()?;
        Some(Self {
            main: i64::from_be_bytes(main),
            sub: i64::from_be_bytes(sub),
        })
    }
}

/// One entry of the `key` bucket: a key's state as a revision wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRevision {
    /// The revision that wrote this entry (the bucket key).
    pub revision: Revision,
    /// Whether the revision deleted the key (the bucket key ends with `t`).
    pub tombstone: bool,
    /// The key-value as etcd stored it; for a tombstone only `key` is set.
    pub kv: mango_proto::mvccpb::KeyValue,
}

impl KeyRevision {
    /// The bucket key: the revision's bytes, plus `t` for a tombstone.
    pub fn bucket_key(&self) -> Vec<u8> {
        let mut key = self.revision.to_bytes().to_vec();
        if self.tombstone {
            key.push(TOMBSTONE_MARK);
        }
        key
    }

    /// Parses a bucket key of the `key` bucket into its revision and tombstone mark.
    pub fn parse_bucket_key(key: &[u8]) -> Result<(Revision, bool), EtcdError> {
        let bad = |reason| EtcdError::BadKey {
            bucket: "key",
            key: key.to_vec(),
            reason,
        };
        let tombstone = match key.len() {
            REVISION_LEN => false,
            18 if key.get(REVISION_LEN) == Some(&TOMBSTONE_MARK) => true,
            _ => return Err(bad("not a revision (17 bytes, or 18 ending in 't')")),
        };
        let rev = Revision::from_bytes(key).ok_or_else(|| bad("not a revision"))?;
        if rev.main < 0 || rev.sub < 0 {
            return Err(bad("negative revision"));
        }
        Ok((rev, tombstone))
    }
}

/// etcd's `leasepb.Lease`, the value of the `lease` bucket (keyed by the id, 8 bytes BE).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Lease {
    /// The lease id.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// The TTL granted, in seconds.
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    /// The remaining TTL at the last checkpoint (0 if never checkpointed).
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// A cluster member as etcd 3.4 keeps it in the `members` bucket: Go's JSON of its
/// `membership.Member`, keyed by the id in hex. Field order and omissions follow Go's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Member {
    /// The member id.
    pub id: u64,
    /// The URLs peers reach it at.
    #[serde(rename = "peerURLs", default, deserialize_with = "null_as_empty")]
    pub peer_urls: Vec<String>,
    /// Whether it is a Raft learner (omitted when false).
    #[serde(rename = "isLearner", default, skip_serializing_if = "is_false")]
    pub is_learner: bool,
    /// The member's name (omitted when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The URLs clients reach it at (omitted when empty).
    #[serde(rename = "clientURLs", default, skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

impl Member {
    /// The bucket key: the id in lowercase hex, as etcd's `types.ID` prints it.
    pub fn bucket_key(id: u64) -> Vec<u8> {
        format!("{id:x}").into_bytes()
    }

    /// The id a bucket key names.
    pub fn parse_bucket_key(bucket: &'static str, key: &[u8]) -> Result<u64, EtcdError> {
        std::str::from_utf8(key)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| EtcdError::BadKey {
                bucket,
                key: key.to_vec(),
                reason: "not a member id in hex",
            })
    }

    /// The JSON etcd stores, byte for byte: Go's encoder escapes `<`, `>`, `&`, U+2028 and
    /// U+2029, which can only occur inside strings, so replacing them after the fact is exact.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let json = serde_json::to_string(self)?;
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            match c {
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c => out.push(c),
            }
        }
        Ok(out.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn revision_bytes_sort_like_revisions() {
        let a = Revision { main: 5, sub: 1 };
        let b = Revision { main: 256, sub: 0 };
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(Revision::from_bytes(&b.to_bytes()), Some(b));
        let tomb = KeyRevision {
            revision: a,
            tombstone: true,
            kv: Default::default(),
        };
        assert_eq!(
            KeyRevision::parse_bucket_key(&tomb.bucket_key()).unwrap(),
            (a, true)
        );
        assert!(KeyRevision::parse_bucket_key(b"short").is_err());
    }

    #[test]
    fn lease_encodes_as_etcd() {
        // gogoproto: fields in order, zero values omitted.
        let lease = Lease {
            id: 1,
            ttl: 60,
            remaining_ttl: 0,
        };
        assert_eq!(lease.encode_to_vec(), [0x08, 0x01, 0x10, 0x3c]);
    }

    #[test]
    fn member_json_matches_go() {
        let m = Member {
            id: 10_276_657_743_932_975_437,
            peer_urls: vec!["http://localhost:2380".into()],
            is_learner: false,
            name: "default".into(),
            client_urls: vec!["http://a?x=1&y=<2>".into()],
        };
        let json = String::from_utf8(m.to_json().unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"id":10276657743932975437,"peerURLs":["http://localhost:2380"],"name":"default","clientURLs":["http://a?x=1\u0026y=\u003c2\u003e"]}"#
        );
        let back: Member = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        let null: Member = serde_json::from_str(r#"{"id":1,"peerURLs":null}"#).unwrap();
        assert!(null.peer_urls.is_empty());
        assert_eq!(Member::bucket_key(255), b"ff");
    }
}
