//! Lease safety from a recorded history: a key attached to a lease is never gone while the
//! lease was certainly held, and once gone it never comes back.
//!
//! A lease is certainly held until `call + ttl` for every grant or keep-alive that answered
//! a TTL above zero: the leader started (or restarted) the lease's clock at some moment
//! after the request was sent, and etcd's leases never expire early (a new leader only
//! extends them). Times are one clock's (nanoseconds since the run began, say), so the
//! clients and the servers must share a machine.

use std::collections::BTreeSet;

/// One lease's life as a client saw it.
#[derive(Clone, Debug)]
pub struct LeaseLife {
    /// The key put with the lease (unique to this life).
    pub key: Vec<u8>,
    /// When the put with the lease returned.
    pub put_ret: u64,
    /// `(call, ttl)` of the grant and of every keep-alive that answered a TTL above zero.
    pub held: Vec<(u64, u64)>,
}

impl LeaseLife {
    /// Until when the lease was certainly held.
    pub fn held_until(&self) -> u64 {
        self.held
            .iter()
            .map(|(call, ttl)| call.saturating_add(*ttl))
            .max()
            .unwrap_or(0)
    }
}

/// One read of every leased key: which of them were present.
#[derive(Clone, Debug)]
pub struct KeysSeen {
    pub call: u64,
    pub ret: u64,
    pub present: BTreeSet<Vec<u8>>,
}

/// Checks every life against every read: never gone while held, never back once gone.
pub fn check_leases(lives: &[LeaseLife], reads: &[KeysSeen]) -> Result<(), String> {
    for life in lives {
        let held_until = life.held_until();
        let mut gone_by: Option<u64> = None;
        let mut ordered: Vec<&KeysSeen> = reads.iter().filter(|r| r.call > life.put_ret).collect();
        ordered.sort_by_key(|r| r.call);
        for read in ordered {
            let present = read.present.contains(&life.key);
            if !present && read.ret < held_until {
                return Err(format!(
                    "{}: gone in a read [{}, {}] although its lease was held until {held_until}",
                    String::from_utf8_lossy(&life.key),
                    read.call,
                    read.ret
                ));
            }
            if !present {
                gone_by = Some(gone_by.map_or(read.ret, |g| g.min(read.ret)));
            } else if let Some(gone) = gone_by
                && read.call > gone
            {
                return Err(format!(
                    "{}: back in a read [{}, {}] after a read that ended at {gone} found it gone",
                    String::from_utf8_lossy(&life.key),
                    read.call,
                    read.ret
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(call: u64, ret: u64, keys: &[&str]) -> KeysSeen {
        KeysSeen {
            call,
            ret,
            present: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        }
    }

    fn life() -> LeaseLife {
        LeaseLife {
            key: b"a".to_vec(),
            put_ret: 10,
            // Granted at 5 for 100, kept alive at 60 for 100: held until 160.
            held: vec![(5, 100), (60, 100)],
        }
    }

    #[test]
    fn gone_after_the_lease_lapsed_is_fine_gone_early_is_not() {
        let reads = [
            seen(20, 30, &["a"]),
            seen(150, 170, &[]),
            seen(200, 210, &[]),
        ];
        assert!(check_leases(&[life()], &reads).is_ok());
        let early = [seen(20, 30, &["a"]), seen(140, 150, &[])];
        let err = check_leases(&[life()], &early).expect_err("expired early");
        assert!(err.contains("held until 160"), "{err}");
    }

    #[test]
    fn a_key_that_comes_back_is_caught() {
        let reads = [seen(170, 180, &[]), seen(190, 200, &["a"])];
        assert!(check_leases(&[life()], &reads).is_err());
        // Overlapping reads may disagree: the later one may have been ordered first.
        let overlapping = [seen(170, 180, &[]), seen(175, 185, &["a"])];
        assert!(check_leases(&[life()], &overlapping).is_ok());
    }

    #[test]
    fn reads_before_the_put_returned_say_nothing() {
        let reads = [seen(0, 9, &[]), seen(20, 30, &["a"])];
        assert!(check_leases(&[life()], &reads).is_ok());
    }
}
