//! Upstreams (voters or learners) and the choice among them: least load by the power of two
//! choices over in-flight counts, among the upstreams not ejected.
//!
//! An upstream is ejected after `eject_after` consecutive failures (failed health checks, or
//! transport errors seen by requests) and readmitted by the first health check that succeeds.
//! When every upstream is ejected the pool still answers with one of them: a request that
//! might succeed beats a certain refusal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mango_tls::{GrpcClientTls, Target};
use tonic::transport::Channel;

/// One upstream member: its URL, a lazily connected channel and its load and health.
pub struct Upstream {
    /// The client URL, for logs and errors.
    pub url: String,
    /// One HTTP/2 connection (reconnected by tonic when it breaks), shared by every request.
    channel: Channel,
    /// Requests and streams in flight: the load the power of two choices compares.
    in_flight: AtomicUsize,
    /// Consecutive failures since the last success.
    failures: AtomicU32,
    /// Out of the rotation until a health check succeeds.
    ejected: AtomicBool,
    /// The member id this upstream reported in its last Status header (0: not yet known).
    member_id: AtomicU64,
}

impl Upstream {
    /// An upstream at `url` (the channel connects on first use), reached over `tls` when
    /// the URL is `https://`.
    pub fn new(url: &str, tls: Option<&GrpcClientTls>) -> anyhow::Result<Self> {
        let channel = Target::new(url, tls, None)?
            .map_endpoint(|e| {
                e.connect_timeout(Duration::from_millis(500))
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(3))
            })
            .connect_lazy();
        Ok(Self {
            url: url.to_string(),
            channel,
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected: AtomicBool::new(false),
            member_id: AtomicU64::new(0),
        })
    }

    /// The channel to send on.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Counts a request or stream as in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Requests and streams in flight.
    pub fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the upstream is out of the rotation.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// A success: readmits the upstream.
    pub fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.ejected.swap(false, Ordering::Relaxed) {
            tracing::info!(upstream = %self.url, "upstream readmitted");
        }
    }

    /// A failure: ejects the upstream after `eject_after` in a row.
    pub fn failed(&self, eject_after: u32) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= eject_after.max(1) && !self.ejected.swap(true, Ordering::Relaxed) {
            tracing::warn!(upstream = %self.url, failures = n, "upstream ejected");
        }
    }

    /// The member id last reported (0: unknown).
    pub fn member_id(&self) -> u64 {
        self.member_id.load(Ordering::Relaxed)
    }

    /// Records the member id from a Status header.
    pub fn set_member_id(&self, id: u64) {
        self.member_id.store(id, Ordering::Relaxed);
    }
}

/// Holds one unit of an upstream's load.
pub struct InFlight(Arc<Upstream>);

impl InFlight {
    /// The upstream carrying the load.
    pub fn upstream(&self) -> &Upstream {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A set of interchangeable upstreams.
pub struct Pool {
    /// The members, in configuration order; an index names one in `tried` lists.
    members: Vec<Arc<Upstream>>,
    /// State of the xorshift generator behind the random choices.
    rng: AtomicU64,
}

impl Pool {
    /// A pool over `urls` (`https://` ones reached over `tls`).
    pub fn new(urls: &[String], tls: Option<&GrpcClientTls>) -> anyhow::Result<Self> {
        let members = urls
            .iter()
            .map(|u| Upstream::new(u, tls).map(Arc::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Ok(Self {
            members,
            rng: AtomicU64::new(seed | 1),
        })
    }

    /// The members.
    pub fn members(&self) -> &[Arc<Upstream>] {
        &self.members
    }

    /// Whether the pool has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn random(&self, n: usize) -> usize {
        // xorshift64: not cryptographic, only spreads choices. A lost update between two
        // threads only repeats a number.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x % n.max(1) as u64) as usize
    }

    /// The less loaded of two random members not in `tried`, preferring members not ejected;
    /// `None` when every member was tried.
    pub fn pick(&self, tried: &[Arc<Upstream>]) -> Option<Arc<Upstream>> {
        let untried: Vec<&Arc<Upstream>> = self
            .members
            .iter()
            .filter(|u| !tried.iter().any(|t| Arc::ptr_eq(t, u)))
            .collect();
        let healthy: Vec<&Arc<Upstream>> = untried
            .iter()
            .copied()
            .filter(|u| !u.is_ejected())
            .collect();
        let candidates = if healthy.is_empty() {
            &untried
        } else {
            &healthy
        };
        let chosen = match candidates.len() {
            0 => return None,
            1 => candidates[0],
            n => {
                let a = self.random(n);
                let b = (a + 1 + self.random(n - 1)) % n;
                let (a, b) = (candidates[a], candidates[b]);
                if b.load() < a.load() { b } else { a }
            }
        };
        Some(chosen.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("http://127.0.0.1:{}", 1 + i))
            .collect();
        Pool::new(&urls, None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn index(p: &Pool, u: Option<Arc<Upstream>>) -> Option<usize> {
        let u = u?;
        p.members().iter().position(|m| Arc::ptr_eq(m, &u))
    }

    #[tokio::test]
    async fn picks_the_less_loaded_and_skips_ejected_and_tried() {
        let p = pool(2);
        let m = p.members().to_vec();
        let _busy: Vec<InFlight> = (0..5).map(|_| m[0].start()).collect();
        for _ in 0..50 {
            assert_eq!(index(&p, p.pick(&[])), Some(1));
        }
        m[1].failed(1);
        for _ in 0..20 {
            assert_eq!(index(&p, p.pick(&[])), Some(0));
        }
        assert_eq!(index(&p, p.pick(&m[..1])), Some(1), "ejected beats none");
        assert!(p.pick(&m).is_none());
        p.members()[1].succeeded();
        assert!(!p.members()[1].is_ejected());
        drop(_busy);
        assert_eq!(p.members()[0].load(), 0);
    }

    #[tokio::test]
    async fn spreads_over_equal_members() {
        let p = pool(3);
        let mut seen = [0usize; 3];
        for _ in 0..300 {
            if let Some(i) = index(&p, p.pick(&[])) {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n > 30), "{seen:?}");
    }
}
