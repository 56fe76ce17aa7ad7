//! On-disk encodings: revisions, order-preserving user keys, per-key metadata, and leases.
//!
//! Every encoding here preserves order where the tables rely on it, and decoding never panics
//! on bad input: a corrupt record is an error value (the fuzz target `encoding` checks both).

/// A revision: `main` is the store-wide revision a write transaction creates, `sub` orders the
/// changes inside that transaction (etcd's `revision{main, sub}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The revision clients see as `mod_revision` and in response headers.
    pub main: i64,
    /// The index of this change within its transaction, from 0.
    pub sub: i64,
}

/// Length of an encoded [`Revision`].
pub const REVISION_LEN: usize = 16;

impl Revision {
    /// A revision with the given main and sub parts.
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// Big-endian encoding with the sign bit flipped, so byte order is numeric order even for
    /// negative values (which the store never writes, but decoding must not care).
    pub fn encode(&self) -> [u8; REVISION_LEN] {
        let mut out = [0u8; REVISION_LEN];
        out[..8].copy_from_slice(&order_i64(self.main).to_be_bytes());
        out[8..].copy_from_slice(&order_i64(self.sub).to_be_bytes());
        out
    }

    /// Decodes [`Revision::encode`]'s output; `None` unless `bytes` is exactly 16 bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != REVISION_LEN {
            return None;
        }
        let main = u64::from_be_bytes(bytes[..8].try_into().ok()?);
        let sub = u64::from_be_bytes(bytes[8..].try_into().ok()?);
        Some(Self {
            main: unorder_i64(main),
            sub: unorder_i64(sub),
        })
    }
}

fn order_i64(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

fn unorder_i64(v: u64) -> i64 {
    (v ^ (1 << 63)) as i64
}

/// Escapes a user key so that encoded keys sort like the raw keys and no encoded key is a
/// prefix of another: each 0x00 becomes 0x00 0xFF, and 0x00 0x01 terminates. A revision can
/// then follow the key and versions of one key stay together, in revision order.
pub fn encode_key(key: &[u8], out: &mut Vec<u8>) {
    out.reserve(key.len() + 2);
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Decodes the escaped key at the start of `bytes`: returns the key and the number of bytes it
/// took, or `None` if `bytes` does not start with a well-formed escaped key.
pub fn decode_key(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut key = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != 0 {
            key.push(b);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(0xFF) => {
                key.push(0);
                i += 2;
            }
            Some(0x01) => return Some((key, i + 2)),
            _ => return None,
        }
    }
    None
}

/// The history-table key of one version of `key`: the escaped key, then the revision.
pub fn history_key(key: &[u8], rev: Revision) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + REVISION_LEN);
    encode_key(key, &mut out);
    out.extend_from_slice(&rev.encode());
    out
}

/// Splits a history-table key into the escaped-key prefix and the revision.
pub fn split_history_key(bytes: &[u8]) -> Option<(&[u8], Revision)> {
    if bytes.len() < REVISION_LEN + 2 {
        return None;
    }
    let (prefix, rev) = bytes.split_at(bytes.len() - REVISION_LEN);
    if !prefix.ends_with(&[0x00, 0x01]) {
        return None;
    }
    Some((prefix, Revision::decode(rev)?))
}

/// The current state of a live key, the value of the live table (the value bytes live once,
/// in the revision table, at `modified`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyMeta {
    /// `create_revision`: main revision of the put that created this generation of the key.
    pub create: i64,
    /// The revision of the latest put; `mod_revision` is its main part.
    pub modified: Revision,
    /// Number of puts since creation (1 after the first).
    pub version: i64,
    /// Attached lease id, 0 for none.
    pub lease: i64,
}

/// Length of an encoded [`KeyMeta`].
pub const KEY_META_LEN: usize = 40;

impl KeyMeta {
    /// Fixed-width big-endian encoding.
    pub fn encode(&self) -> [u8; KEY_META_LEN] {
        let mut out = [0u8; KEY_META_LEN];
        out[..8].copy_from_slice(&self.create.to_be_bytes());
        out[8..24].copy_from_slice(&self.modified.encode());
        out[24..32].copy_from_slice(&self.version.to_be_bytes());
        out[32..].copy_from_slice(&self.lease.to_be_bytes());
        out
    }

    /// Decodes [`KeyMeta::encode`]'s output; `None` on a wrong length.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != KEY_META_LEN {
            return None;
        }
        Some(Self {
            create: i64::from_be_bytes(bytes[..8].try_into().ok()?),
            modified: Revision::decode(&bytes[8..24])?,
            version: i64::from_be_bytes(bytes[24..32].try_into().ok()?),
            lease: i64::from_be_bytes(bytes[32..].try_into().ok()?),
        })
    }
}

/// Length of an encoded lease id.
pub const LEASE_ID_LEN: usize = 8;

/// A lease id as the lease tables key it: big-endian with the sign bit flipped, so byte order
/// is numeric order (clients may choose negative ids).
pub fn encode_lease_id(id: i64) -> [u8; LEASE_ID_LEN] {
    order_i64(id).to_be_bytes()
}

/// Decodes [`encode_lease_id`]'s output; `None` unless `bytes` is exactly 8 bytes.
pub fn decode_lease_id(bytes: &[u8]) -> Option<i64> {
    Some(unorder_i64(u64::from_be_bytes(bytes.try_into().ok()?)))
}

/// The key of `key`'s entry in the lease-to-key index: the encoded lease id, then the raw key
/// (the id is fixed-width, so no escaping is needed: the entries of one lease are exactly the
/// keys starting with its id, in key order).
pub fn lease_key(id: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEASE_ID_LEN + key.len());
    out.extend_from_slice(&encode_lease_id(id));
    out.extend_from_slice(key);
    out
}

/// Splits a lease-to-key index key into the lease id and the raw key.
pub fn split_lease_key(bytes: &[u8]) -> Option<(i64, &[u8])> {
    if bytes.len() < LEASE_ID_LEN {
        return None;
    }
    let (id, key) = bytes.split_at(LEASE_ID_LEN);
    Some((decode_lease_id(id)?, key))
}

/// The bounds `[start, end)` of every lease-to-key index entry of lease `id` (`end: None`
/// for the largest id, whose entries run to the end of the table).
pub fn lease_key_bounds(id: i64) -> ([u8; LEASE_ID_LEN], Option<[u8; LEASE_ID_LEN]>) {
    let start = encode_lease_id(id);
    let end = order_i64(id).checked_add(1).map(u64::to_be_bytes);
    (start, end)
}

/// A granted lease, the value of the lease table (etcd's `leasepb.Lease` without the id,
/// which is the key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The TTL the lease was granted with, in seconds.
    pub ttl: i64,
    /// The remaining TTL its last checkpoint recorded; 0 (or less) for none, as in etcd,
    /// where a renewal clears a checkpoint by checkpointing 0.
    pub remaining_ttl: i64,
}

/// Length of an encoded [`LeaseRecord`].
pub const LEASE_RECORD_LEN: usize = 16;

impl LeaseRecord {
    /// Fixed-width big-endian encoding.
    pub fn encode(&self) -> [u8; LEASE_RECORD_LEN] {
        let mut out = [0u8; LEASE_RECORD_LEN];
        out[..8].copy_from_slice(&self.ttl.to_be_bytes());
        out[8..].copy_from_slice(&self.remaining_ttl.to_be_bytes());
        out
    }

    /// Decodes [`LeaseRecord::encode`]'s output; `None` on a wrong length.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LEASE_RECORD_LEN {
            return None;
        }
        Some(Self {
            ttl: i64::from_be_bytes(bytes[..8].try_into().ok()?),
            remaining_ttl: i64::from_be_bytes(bytes[8..].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn revision_roundtrip_and_order(a in any::<(i64, i64)>(), b in any::<(i64, i64)>()) {
            let (ra, rb) = (Revision::new(a.0, a.1), Revision::new(b.0, b.1));
            prop_assert_eq!(Revision::decode(&ra.encode()), Some(ra));
            prop_assert_eq!(ra.encode().cmp(&rb.encode()), ra.cmp(&rb));
        }

        #[test]
        fn history_keys_order_by_key_then_revision(
            ka in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xFFu8), any::<u8>()], 0..6),
            kb in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xFFu8), any::<u8>()], 0..6),
            ra in any::<(i64, i64)>(),
            rb in any::<(i64, i64)>(),
        ) {
            let (ra, rb) = (Revision::new(ra.0, ra.1), Revision::new(rb.0, rb.1));
            let (ea, eb) = (history_key(&ka, ra), history_key(&kb, rb));
            prop_assert_eq!(ea.cmp(&eb), (&ka, ra).cmp(&(&kb, rb)));
            let (prefix, rev) = split_history_key(&ea).expect("well-formed");
            prop_assert_eq!(rev, ra);
            prop_assert_eq!(decode_key(prefix), Some((ka.clone(), prefix.len())));
        }

        #[test]
        fn key_meta_roundtrip(c in any::<i64>(), m in any::<(i64, i64)>(), v in any::<i64>(), l in any::<i64>()) {
            let meta = KeyMeta { create: c, modified: Revision::new(m.0, m.1), version: v, lease: l };
            prop_assert_eq!(KeyMeta::decode(&meta.encode()), Some(meta));
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_key(&bytes);
            let _ = split_history_key(&bytes);
            let _ = Revision::decode(&bytes);
            let _ = KeyMeta::decode(&bytes);
            let _ = LeaseRecord::decode(&bytes);
            let _ = decode_lease_id(&bytes);
            let _ = split_lease_key(&bytes);
        }

        #[test]
        fn lease_keys_order_by_id_then_key_and_stay_in_their_bounds(
            ia in prop_oneof![Just(i64::MIN), Just(-1i64), Just(0i64), Just(i64::MAX), any::<i64>()],
            ib in prop_oneof![Just(i64::MIN), Just(-1i64), Just(0i64), Just(i64::MAX), any::<i64>()],
            ka in proptest::collection::vec(any::<u8>(), 0..6),
            kb in proptest::collection::vec(any::<u8>(), 0..6),
        ) {
            let (ea, eb) = (lease_key(ia, &ka), lease_key(ib, &kb));
            prop_assert_eq!(ea.cmp(&eb), (ia, &ka).cmp(&(ib, &kb)));
            prop_assert_eq!(split_lease_key(&ea), Some((ia, ka.as_slice())));
            let (start, end) = lease_key_bounds(ia);
            let inside = |e: &[u8]| e >= start.as_slice() && end.is_none_or(|end| e < end.as_slice());
            prop_assert!(inside(&ea));
            prop_assert_eq!(inside(&eb), ia == ib);
        }

        #[test]
        fn lease_record_roundtrip(ttl in any::<i64>(), remaining in any::<i64>()) {
            let r = LeaseRecord { ttl, remaining_ttl: remaining };
            prop_assert_eq!(LeaseRecord::decode(&r.encode()), Some(r));
        }
    }

    #[test]
    fn encoded_key_is_never_a_prefix_of_another() {
        let keys: [&[u8]; 5] = [b"", b"a", b"a\0", b"a\0\x01", b"ab"];
        for a in keys {
            for b in keys {
                if a != b {
                    let (mut ea, mut eb) = (Vec::new(), Vec::new());
                    encode_key(a, &mut ea);
                    encode_key(b, &mut eb);
                    assert!(!eb.starts_with(&ea), "{a:?} {b:?}");
                }
            }
        }
    }
}
