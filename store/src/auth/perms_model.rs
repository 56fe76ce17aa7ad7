//! Property test: `is_range_permitted` (merged intervals, binary search) against a brute-force
//! model that asks, key by key over a small alphabet, whether some permission covers it.
//!
//! The universe is every key of 1..=4 bytes over `{0x00, 'a', 'b'}`; permissions and requests
//! use keys of 1..=3 bytes, so every interval end (`range_end`, or `key + "\0"` for a single
//! key) is in the universe, and the first key of any gap in a request's range is too: checking
//! the universe's keys decides coverage exactly.

use std::collections::{BTreeMap, HashMap};

use mango_proto::authpb::permission::Type as PermType;
use mango_proto::authpb::{Permission, Role, User};
use proptest::prelude::*;

use super::checks::Access;
use super::perms::UserPerms;
use super::state::{AuthInfo, AuthState};

const ALPHABET: [u8; 3] = [0, b'a', b'b'];

fn universe() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![vec![]];
    let mut all = Vec::new();
    for _ in 0..4 {
        out = out
            .iter()
            .flat_map(|k| {
                ALPHABET.iter().map(move |c| {
                    let mut k = k.clone();
                    k.push(*c);
                    k
                })
            })
            .collect();
        all.extend(out.iter().cloned());
    }
    all
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::sample::select(ALPHABET.to_vec()), 1..=3)
}

fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(vec![]), Just(vec![0]), key()]
}

fn perm_type() -> impl Strategy<Value = PermType> {
    prop_oneof![
        Just(PermType::Read),
        Just(PermType::Write),
        Just(PermType::Readwrite)
    ]
}

/// Whether `[key, range_end)` (etcd's conventions) holds `k`.
fn holds(key: &[u8], range_end: &[u8], k: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => key <= k && k < end,
    }
}

/// The model: every key the request names is held by a permission of the right type.
fn model(perms: &[Permission], access: Access, key: &[u8], range_end: &[u8]) -> bool {
    let grants = |p: &Permission| match PermType::try_from(p.perm_type) {
        Ok(PermType::Readwrite) => true,
        Ok(PermType::Read) => access == Access::Read,
        Ok(PermType::Write) => access == Access::Write,
        Err(_) => false,
    };
    let covered = |k: &[u8]| {
        perms
            .iter()
            .any(|p| grants(p) && holds(&p.key, &p.range_end, k))
    };
    let empty_or_inverted = match range_end {
        [] | [0] => false,
        end => end <= key,
    };
    if range_end.is_empty() || empty_or_inverted {
        return covered(key);
    }
    universe()
        .iter()
        .filter(|k| holds(key, range_end, k))
        .all(|k| covered(k))
}

/// A state with auth enabled and user `u` holding `roles`.
fn state(roles: &[Vec<Permission>]) -> AuthState {
    let roles: BTreeMap<String, Role> = roles
        .iter()
        .enumerate()
        .map(|(i, perms)| {
            let name = format!("r{i}");
            let role = Role {
                name: name.clone().into_bytes(),
                key_permission: perms.clone(),
            };
            (name, role)
        })
        .collect();
    let user = User {
        name: b"u".to_vec(),
        roles: roles.keys().cloned().collect(),
        ..Default::default()
    };
    let merged = UserPerms::merge(roles.values().flat_map(|r| r.key_permission.iter()));
    AuthState {
        enabled: true,
        revision: 3,
        users: BTreeMap::from([("u".to_string(), user)]),
        roles,
        perms: HashMap::from([("u".to_string(), merged)]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn is_range_permitted_matches_the_model(
        roles in proptest::collection::vec(
            proptest::collection::vec((perm_type(), key(), range_end()), 0..4),
            1..3,
        ),
        requests in proptest::collection::vec((key(), range_end()), 1..16),
    ) {
        let roles: Vec<Vec<Permission>> = roles
            .into_iter()
            .map(|perms| {
                perms
                    .into_iter()
                    .map(|(t, key, range_end)| Permission {
                        perm_type: t as i32,
                        key,
                        range_end,
                    })
                    .collect()
            })
            .collect();
        let all: Vec<Permission> = roles.iter().flatten().cloned().collect();
        let state = state(&roles);
        let info = AuthInfo { username: "u".into(), revision: 3 };
        for (key, range_end) in &requests {
            for access in [Access::Read, Access::Write] {
                let got = state.is_range_permitted_for(&info, key, range_end, access).is_ok();
                prop_assert_eq!(
                    got,
                    model(&all, access, key, range_end),
                    "{:?} {:?}..{:?} with {:?}", access, key, range_end, all
                );
            }
        }
    }
}
