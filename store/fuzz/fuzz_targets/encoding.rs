//! Fuzzes the store's on-disk encodings: decoders never panic on any bytes, encodings round
//! trip, and the order of encoded history keys is the order of (key, revision).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mango_store::encoding::{
    KeyMeta, LeaseRecord, Revision, decode_key, decode_lease_id, history_key, lease_key,
    split_history_key, split_lease_key,
};

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes through every decoder.
    let _ = decode_key(data);
    let _ = split_history_key(data);
    let _ = Revision::decode(data);
    let _ = KeyMeta::decode(data);
    let _ = decode_lease_id(data);
    let _ = split_lease_key(data);
    let _ = LeaseRecord::decode(data);

    // Structured: two keys and two revisions carved from the input.
    if data.len() < 33 {
        return;
    }
    let (revs, rest) = data.split_at(32);
    let cut = usize::from(rest[0]) % rest.len();
    let (ka, kb) = rest[1..].split_at(cut.min(rest.len() - 1));
    let word = |i: usize| i64::from_le_bytes(revs[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let (ra, rb) = (Revision::new(word(0), word(1)), Revision::new(word(2), word(3)));

    assert_eq!(Revision::decode(&ra.encode()), Some(ra));
    let (ea, eb) = (history_key(ka, ra), history_key(kb, rb));
    assert_eq!(ea.cmp(&eb), (ka, ra).cmp(&(kb, rb)), "order of {ka:?}@{ra:?} vs {kb:?}@{rb:?}");
    let (prefix, rev) = split_history_key(&ea).expect("an encoded key splits");
    assert_eq!(rev, ra);
    assert_eq!(decode_key(prefix), Some((ka.to_vec(), prefix.len())));

    // Lease index keys: order by (lease, key), and split back.
    let (la, lb) = (ra.main, rb.main);
    let (ea, eb) = (lease_key(la, ka), lease_key(lb, kb));
    assert_eq!(ea.cmp(&eb), (la, ka).cmp(&(lb, kb)));
    assert_eq!(split_lease_key(&ea), Some((la, ka)));
});
