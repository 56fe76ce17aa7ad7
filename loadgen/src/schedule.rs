//! Open-loop schedule and coordinated-omission-correct latency.
//!
//! With `--rate R`, request number `k` (counted across all clients) is due at `k / R` seconds
//! after the start. A client takes the next request number when it is free, waits until that
//! request is due, and sends it. Its latency is measured from when it was *due*, not from when
//! it was actually sent: when the server stalls, the requests that should have gone out during
//! the stall are charged for the time they waited, as a real client population would have
//! experienced (no coordinated omission). In closed loop there is no schedule and latency is
//! measured from the send.

use std::time::{Duration, Instant};

/// A fixed-rate schedule of intended start times.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    rate: f64,
}

impl Schedule {
    /// `rate` in requests per second; must be positive and finite.
    pub fn new(rate: f64) -> Self {
        debug_assert!(rate.is_finite() && rate > 0.0);
        Schedule { rate }
    }

    /// When request `op` is due, relative to the start of the run.
    pub fn offset(&self, op: u64) -> Duration {
        // f64 keeps nanosecond precision for any run shorter than ~100 days.
        Duration::from_secs_f64(op as f64 / self.rate)
    }
}

/// The latency to record for one request: from its intended start (open loop) or from its
/// send (closed loop) to its completion.
pub fn latency(intended: Option<Instant>, sent: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(intended.unwrap_or(sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_evenly_spaced() {
        let s = Schedule::new(1000.0);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(1));
        assert_eq!(s.offset(2500), Duration::from_millis(2500));
        let s = Schedule::new(3.0);
        assert_eq!(s.offset(3), Duration::from_secs(1));
        let third = s.offset(1).as_nanos();
        assert!((333_333_332..=333_333_334).contains(&third), "{third}");
    }

    /// One client, 100 requests/s, every request takes 1 ms except number 10, which stalls
    /// for one second. Returns (open-loop latencies, closed-loop latencies) in ms.
    fn simulate_stall() -> (Vec<u64>, Vec<u64>) {
        let base = Instant::now();
        let schedule = Schedule::new(100.0);
        let mut free_at = base;
        let (mut open, mut closed) = (Vec::new(), Vec::new());
        for op in 0..200u64 {
            let due = base + schedule.offset(op);
            let sent = due.max(free_at);
            let service = if op == 10 {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(1)
            };
            let done = sent + service;
            free_at = done;
            open.push(latency(Some(due), sent, done).as_millis() as u64);
            closed.push(latency(None, sent, done).as_millis() as u64);
        }
        (open, closed)
    }

    #[test]
    fn a_stall_is_charged_to_every_request_it_delayed() {
        let (open, closed) = simulate_stall();
        // Closed loop sees one slow request: the stall hides the ones that were never sent.
        assert_eq!(closed.iter().filter(|&&l| l > 1).count(), 1);
        // Open loop: request 10 took 1000 ms; request 11 was due 10 ms later, sent when 10
        // finished (at 1100 ms), so it waited 990 ms and took 1 ms more; and so on, until
        // the backlog drains (one request per ms of catch-up against one per 10 ms due).
        assert_eq!(open[10], 1000);
        assert_eq!(open[11], 991);
        assert_eq!(open[12], 982);
        let delayed = open.iter().filter(|&&l| l > 1).count();
        assert!((100..=115).contains(&delayed), "{delayed} delayed");
        assert_eq!(*open.last().unwrap(), 1);
    }

    #[test]
    fn on_schedule_requests_measure_service_time() {
        let base = Instant::now();
        let due = base + Duration::from_millis(5);
        let done = due + Duration::from_millis(2);
        assert_eq!(latency(Some(due), due, done), Duration::from_millis(2));
        // Completion before the due time (clock skew) saturates to zero.
        assert_eq!(latency(Some(done), due, due), Duration::ZERO);
    }
}
