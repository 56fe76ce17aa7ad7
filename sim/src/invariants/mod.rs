//! The safety invariants, one module each. Each keeps what it needs of the run's
//! observations and says, at the end, whether the invariant held.
//!
//! - [`election_safety`]: at most one leader per term (Raft §5.2).
//! - [`log_matching`]: two logs with an entry of the same index and term hold the same
//!   entry there and are identical before it (Raft §5.3).
//! - [`state_machine_safety`]: no two nodes apply different entries at the same index, and a
//!   node that applies an index again after a restart applies the same entry (Raft §5.4.3).
//! - [`store_convergence`]: every node's store hashes the same at the same revision
//!   (etcd's HashKV), so applying the same log built the same key-value state everywhere.
//! - [`linearizable`]: the clients' history of puts and linearizable gets, key by key, is
//!   linearizable, unknown outcomes kept as such (mango-checker).

pub mod election_safety;
pub mod linearizable;
pub mod log_matching;
pub mod state_machine_safety;
pub mod store_convergence;

/// FNV-1a: a stable digest of entry data (the same in every run and build).
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
