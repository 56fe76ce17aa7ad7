//! The leader's lessor: when each lease expires. Only the leader keeps time for leases; the
//! replicated part (which leases exist, their TTLs, attached keys, checkpointed remaining
//! TTLs) is the store's.
//!
//! - A leader takes over every lease when it is elected ([`Lessor::promote`]): each expires
//!   after its checkpointed remaining TTL if it has one, else its granted TTL, plus an
//!   extension of one election timeout (etcd's `Promote(extend)`: clients get time to find
//!   the new leader). So a lease never expires early across a failover; it may live up to one
//!   TTL longer, as in etcd.
//! - Grants applied while leader start their clock at apply ([`Lessor::granted`]); a
//!   keep-alive resets it ([`Lessor::renew`]).
//! - The leader's expiry task asks for the leases past their time ([`Lessor::expired`]) and
//!   proposes their revokes through Raft, so the delete of a lease's keys is one revision on
//!   every member.
//! - Remaining TTLs are checkpointed through Raft every checkpoint interval
//!   ([`Lessor::checkpoints`]), so the next leader resumes from them (etcd 3.4's lease
//!   checkpointing).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Why a renew was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewError {
    /// This member is not the leader's lessor: forward to the leader.
    NotPrimary,
    /// No such lease, or it expired (its revoke is under way).
    NotFound,
}

#[derive(Clone, Copy, Debug)]
struct Clock {
    /// The granted TTL in seconds.
    ttl: i64,
    /// When it expires.
    expiry: Instant,
    /// When a revoke was last proposed for it (retried after a while if it did not apply).
    revoking: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    /// The term this member leads in, while it is the primary lessor.
    primary: Option<u64>,
    leases: HashMap<i64, Clock>,
}

/// See the module doc. Shared between the apply thread, the API and the expiry task.
#[derive(Debug, Default)]
pub struct Lessor {
    state: Mutex<State>,
}

/// How long a proposed revoke may take to apply before it is proposed again.
const REVOKE_RETRY: Duration = Duration::from_secs(3);

impl Lessor {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The term this member is the primary lessor in, if it is.
    pub fn primary_term(&self) -> Option<u64> {
        self.lock().primary
    }

    /// This member became leader in `term`: it keeps time for `leases` (`(id, granted ttl,
    /// remaining ttl if checkpointed)`), each expiring after its remaining (else granted)
    /// TTL plus `extend`.
    pub fn promote(
        &self,
        term: u64,
        leases: impl IntoIterator<Item = (i64, i64, Option<i64>)>,
        extend: Duration,
        now: Instant,
    ) {
        let mut state = self.lock();
        state.primary = Some(term);
        // Grants applied since `primary` was set are kept; everything else restarts.
        for (id, ttl, remaining) in leases {
            let left = secs(remaining.unwrap_or(ttl)) + extend;
            state.leases.entry(id).or_insert(Clock {
                ttl,
                expiry: now + left,
                revoking: None,
            });
        }
    }

    /// Marks the lessor primary for `term` before the leases are read, so that grants applied
    /// meanwhile are kept by [`Lessor::granted`].
    pub fn begin_promotion(&self, term: u64) {
        let mut state = self.lock();
        state.primary = Some(term);
        state.leases.clear();
    }

    /// This member is no longer leader: it forgets every clock.
    pub fn demote(&self) {
        let mut state = self.lock();
        state.primary = None;
        state.leases.clear();
    }

    /// A grant applied here; its clock starts if this member is the primary.
    pub fn granted(&self, id: i64, ttl: i64, now: Instant) {
        let mut state = self.lock();
        if state.primary.is_some() {
            state.leases.insert(
                id,
                Clock {
                    ttl,
                    expiry: now + secs(ttl),
                    revoking: None,
                },
            );
        }
    }

    /// Forgets a lease (revoked, or found gone from the store).
    pub fn forget(&self, id: i64) {
        self.lock().leases.remove(&id);
    }

    /// A keep-alive: the lease lives another TTL from `now`; answers the TTL.
    pub fn renew(&self, id: i64, now: Instant) -> Result<i64, RenewError> {
        let mut state = self.lock();
        if state.primary.is_none() {
            return Err(RenewError::NotPrimary);
        }
        let clock = state.leases.get_mut(&id).ok_or(RenewError::NotFound)?;
        if clock.expiry <= now || clock.revoking.is_some() {
            // etcd: an expired lease cannot be renewed; its revoke is pending.
            return Err(RenewError::NotFound);
        }
        clock.expiry = now + secs(clock.ttl);
        Ok(clock.ttl)
    }

    /// Seconds left of a lease (rounded up, as etcd's `Remaining`), if this member is the
    /// primary and keeps time for it.
    pub fn remaining(&self, id: i64, now: Instant) -> Result<i64, RenewError> {
        let state = self.lock();
        if state.primary.is_none() {
            return Err(RenewError::NotPrimary);
        }
        let clock = state.leases.get(&id).ok_or(RenewError::NotFound)?;
        let left = clock.expiry.saturating_duration_since(now);
        Ok(ceil_secs(left))
    }

    /// Up to `limit` leases past their expiry and not being revoked, marked as being revoked
    /// (offered again after a while if the revoke does not apply).
    pub fn expired(&self, now: Instant, limit: usize) -> Vec<i64> {
        let mut state = self.lock();
        if state.primary.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (id, clock) in state.leases.iter_mut() {
            if out.len() >= limit {
                break;
            }
            let retry = clock
                .revoking
                .is_none_or(|at| now.duration_since(at) >= REVOKE_RETRY);
            if clock.expiry <= now && retry {
                clock.revoking = Some(now);
                out.push(*id);
            }
        }
        out.sort_unstable();
        out
    }

    /// `(id, remaining seconds)` of every lease whose remaining TTL is below its granted TTL,
    /// for a checkpoint proposal.
    pub fn checkpoints(&self, now: Instant) -> Vec<(i64, i64)> {
        let state = self.lock();
        if state.primary.is_none() {
            return Vec::new();
        }
        let mut out: Vec<(i64, i64)> = state
            .leases
            .iter()
            .filter(|(_, c)| c.revoking.is_none())
            .map(|(id, c)| {
                (
                    *id,
                    ceil_secs(c.expiry.saturating_duration_since(now)).max(1),
                    c.ttl,
                )
            })
            .filter(|(_, left, ttl)| left < ttl)
            .map(|(id, left, _)| (id, left))
            .collect();
        out.sort_unstable();
        out
    }
}

/// A TTL in seconds as a duration, clamped to what a lease may have: TTLs and checkpointed
/// remaining TTLs come from replicated entries, and an `Instant` plus an absurd duration
/// panics (it did, at election, on a checkpoint near `i64::MAX`).
fn secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s.clamp(0, mango_store::MAX_LEASE_TTL)).unwrap_or(0))
}

fn ceil_secs(d: Duration) -> i64 {
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(whole).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXTEND: Duration = Duration::from_secs(1);

    #[test]
    fn only_the_primary_keeps_time() {
        let l = Lessor::default();
        let now = Instant::now();
        l.granted(1, 10, now);
        assert_eq!(l.renew(1, now), Err(RenewError::NotPrimary));
        assert_eq!(l.remaining(1, now), Err(RenewError::NotPrimary));
        assert!(l.expired(now + Duration::from_secs(100), 10).is_empty());
    }

    #[test]
    fn promotion_resumes_from_checkpoints_plus_the_extension() {
        let l = Lessor::default();
        let now = Instant::now();
        l.begin_promotion(5);
        l.promote(5, [(1, 10, None), (2, 10, Some(3))], EXTEND, now);
        assert_eq!(l.primary_term(), Some(5));
        assert_eq!(l.remaining(1, now), Ok(11));
        assert_eq!(l.remaining(2, now), Ok(4));
        assert_eq!(l.expired(now + Duration::from_secs(4), 10), vec![2]);
        // Being revoked: not offered again until the retry time, not renewable.
        assert!(l.expired(now + Duration::from_secs(5), 10).is_empty());
        assert_eq!(
            l.renew(2, now + Duration::from_secs(5)),
            Err(RenewError::NotFound)
        );
        assert_eq!(l.expired(now + Duration::from_secs(8), 10), vec![2]);
        l.forget(2);
        assert!(l.expired(now + Duration::from_secs(9), 10).is_empty());
        assert_eq!(l.expired(now + Duration::from_secs(11), 10), vec![1]);
    }

    #[test]
    fn renew_restarts_the_clock_and_expired_leases_cannot_be_renewed() {
        let l = Lessor::default();
        let now = Instant::now();
        l.begin_promotion(1);
        l.granted(7, 5, now);
        assert_eq!(l.renew(7, now + Duration::from_secs(4)), Ok(5));
        assert_eq!(l.remaining(7, now + Duration::from_secs(4)), Ok(5));
        assert!(l.expired(now + Duration::from_secs(8), 10).is_empty());
        assert_eq!(
            l.renew(7, now + Duration::from_secs(9)),
            Err(RenewError::NotFound)
        );
        assert_eq!(l.renew(8, now), Err(RenewError::NotFound));
    }

    #[test]
    fn grants_during_promotion_are_kept_and_demotion_forgets() {
        let l = Lessor::default();
        let now = Instant::now();
        l.begin_promotion(2);
        l.granted(3, 100, now);
        // The store view read after the grant applied lists it too: the clock is kept.
        l.promote(2, [(3, 100, None)], EXTEND, now + Duration::from_secs(50));
        assert_eq!(l.remaining(3, now), Ok(100));
        assert_eq!(l.checkpoints(now + Duration::from_secs(40)), vec![(3, 60)]);
        l.demote();
        assert_eq!(l.primary_term(), None);
        assert_eq!(l.renew(3, now), Err(RenewError::NotPrimary));
    }

    #[test]
    fn expired_is_bounded() {
        let l = Lessor::default();
        let now = Instant::now();
        l.begin_promotion(1);
        for id in 1..=10 {
            l.granted(id, 1, now);
        }
        let later = now + Duration::from_secs(2);
        assert_eq!(l.expired(later, 4).len(), 4);
        assert_eq!(l.expired(later, 100).len(), 6);
    }

    #[test]
    fn absurd_replicated_ttls_are_clamped_not_a_panic() {
        let l = Lessor::default();
        let now = Instant::now();
        l.begin_promotion(1);
        l.promote(
            1,
            [
                (1, i64::MAX, Some(i64::MAX)),
                (2, i64::MAX, None),
                (3, 5, Some(-7)),
            ],
            EXTEND,
            now,
        );
        assert_eq!(l.remaining(1, now), Ok(mango_store::MAX_LEASE_TTL + 1));
        assert_eq!(l.renew(2, now), Ok(i64::MAX));
        assert_eq!(l.expired(now + Duration::from_secs(2), 10), vec![3]);
        l.granted(4, i64::MAX, now);
        // Only lease 3 (its revoke offered again), never the clamped ones.
        assert_eq!(l.expired(now + Duration::from_secs(100), 10), vec![3]);
    }
}
