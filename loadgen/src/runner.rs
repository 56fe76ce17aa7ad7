//! Drives request/response workloads: `--clients` workers, closed or open loop, until the
//! total is issued or the duration is over.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::{Code, Status};

use crate::cli::Stop;
use crate::progress::Progress;
use crate::schedule::{Schedule, latency};
use crate::stats::Stats;

/// How long a client pauses after an `Unavailable` answer before its next request.
const UNAVAILABLE_PAUSE: Duration = Duration::from_millis(10);

/// One client's state for a workload: issues request number `op` and waits for its answer.
pub trait Worker: Send + 'static {
    fn call(&mut self, op: u64) -> impl Future<Output = Result<(), Status>> + Send;
}

/// How a run is paced and sized.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub stop: Stop,
    /// Open-loop rate (requests/s across all clients); `None` is closed loop.
    pub rate: Option<f64>,
    /// A request that takes longer is abandoned and counted as `DeadlineExceeded`.
    pub timeout: Duration,
}

/// What a run produced; the workers come back for clean-up (e.g. revoking leases).
#[derive(Debug)]
pub struct Outcome<W> {
    pub stats: Stats,
    pub elapsed: Duration,
    pub workers: Vec<W>,
}

struct Shared {
    plan: Plan,
    schedule: Option<Schedule>,
    start: Instant,
    deadline: Option<Instant>,
    /// The next request number to claim, across all clients.
    next: AtomicU64,
    progress: Arc<Progress>,
}

impl Shared {
    /// Claims the next request: its number and, in open loop, when it is due. `None` when the
    /// run is over.
    fn claim(&self) -> Option<(u64, Option<Instant>)> {
        let op = self.next.fetch_add(1, Ordering::Relaxed);
        if let Stop::Total(n) = self.plan.stop
            && op >= n
        {
            return None;
        }
        let due = self.schedule.map(|s| self.start + s.offset(op));
        let begins = due.unwrap_or_else(Instant::now);
        match self.deadline {
            Some(deadline) if begins >= deadline => None,
            _ => Some((op, due)),
        }
    }
}

/// Runs `workers` (one per client) to completion under `plan`.
pub async fn run<W: Worker>(plan: Plan, workers: Vec<W>, progress: Arc<Progress>) -> Outcome<W> {
    let start = Instant::now();
    let deadline = match plan.stop {
        Stop::Duration(d) => Some(start + d),
        Stop::Total(_) => None,
    };
    let shared = Arc::new(Shared {
        plan,
        schedule: plan.rate.map(Schedule::new),
        start,
        deadline,
        next: AtomicU64::new(0),
        progress,
    });
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(drive(w, Arc::clone(&shared))))
        .collect();
    let mut stats = Stats::new();
    let mut workers = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok((w, s)) => {
                stats.merge(&s);
                workers.push(w);
            }
            // A worker that panicked is a bug; report it rather than hide it.
            Err(e) => panic!("a load worker failed: {e}"),
        }
    }
    Outcome {
        stats,
        elapsed: start.elapsed(),
        workers,
    }
}

/// One client's loop.
async fn drive<W: Worker>(mut worker: W, shared: Arc<Shared>) -> (W, Stats) {
    let mut stats = Stats::new();
    while let Some((op, due)) = shared.claim() {
        // A client that is ahead of the schedule waits for the request's due time, and its
        // latency is then timed from the send: the timer's wake-up slack (tokio rounds to the
        // millisecond) is the client's, not the server's. A client that is behind (the due
        // time passed while it waited for earlier answers) sends at once and is timed from
        // the due time, so a stall is charged to every request it delayed.
        let intended = match due {
            Some(due) if Instant::now() < due => {
                tokio::time::sleep_until(due.into()).await;
                None
            }
            other => other,
        };
        let sent = Instant::now();
        let result = tokio::time::timeout(shared.plan.timeout, worker.call(op)).await;
        let done = Instant::now();
        match result {
            Ok(Ok(())) => {
                stats.ok(latency(intended, sent, done));
                shared.progress.ok();
            }
            Ok(Err(status)) => {
                stats.error(status.code());
                shared.progress.failed();
                if status.code() == Code::Unavailable {
                    // The server is down or unreachable and answers instantly: pause so the
                    // client does not spin (the pause is far below any failover time).
                    tokio::time::sleep(UNAVAILABLE_PAUSE).await;
                }
            }
            Err(_elapsed) => {
                stats.error(Code::DeadlineExceeded);
                shared.progress.failed();
            }
        }
    }
    (worker, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers instantly; fails every `fail_every`-th request with Unavailable.
    struct Fake {
        fail_every: u64,
        seen: Vec<u64>,
    }

    impl Worker for Fake {
        async fn call(&mut self, op: u64) -> Result<(), Status> {
            self.seen.push(op);
            if self.fail_every > 0 && op.is_multiple_of(self.fail_every) {
                Err(Status::unavailable("down"))
            } else {
                Ok(())
            }
        }
    }

    fn fakes(n: usize, fail_every: u64) -> Vec<Fake> {
        (0..n)
            .map(|_| Fake {
                fail_every,
                seen: Vec::new(),
            })
            .collect()
    }

    fn plan(stop: Stop, rate: Option<f64>) -> Plan {
        Plan {
            stop,
            rate,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn closed_loop_issues_each_request_exactly_once() {
        let progress = Arc::new(Progress::default());
        let out = run(plan(Stop::Total(1000), None), fakes(4, 0), progress.clone()).await;
        assert_eq!(out.stats.ops, 1000);
        assert_eq!(progress.counts(), (1000, 0));
        let mut seen: Vec<u64> = out.workers.iter().flat_map(|w| w.seen.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn errors_are_counted_by_code_and_do_not_stop_the_run() {
        let out = run(
            plan(Stop::Total(100), None),
            fakes(3, 10),
            Arc::new(Progress::default()),
        )
        .await;
        assert_eq!(out.stats.ops, 90);
        assert_eq!(out.stats.errors.get("Unavailable"), Some(&10));
    }

    #[tokio::test]
    async fn open_loop_keeps_to_the_rate() {
        // 50 requests at 500/s take about 0.1 s however many clients there are.
        let out = run(
            plan(Stop::Total(50), Some(500.0)),
            fakes(8, 0),
            Arc::new(Progress::default()),
        )
        .await;
        assert_eq!(out.stats.ops, 50);
        let s = out.elapsed.as_secs_f64();
        assert!((0.09..0.5).contains(&s), "took {s}s");
    }

    #[tokio::test]
    async fn duration_bounds_the_run() {
        let out = run(
            plan(Stop::Duration(Duration::from_millis(200)), Some(100.0)),
            fakes(2, 0),
            Arc::new(Progress::default()),
        )
        .await;
        // Due times 0, 10, ..., 190 ms: 20 requests.
        assert_eq!(out.stats.ops, 20);
        let s = out.elapsed.as_secs_f64();
        assert!((0.18..0.7).contains(&s), "took {s}s");
    }

    #[tokio::test]
    async fn slow_requests_time_out_as_deadline_exceeded() {
        struct Slow;
        impl Worker for Slow {
            async fn call(&mut self, _op: u64) -> Result<(), Status> {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }
        }
        let mut p = plan(Stop::Total(2), None);
        p.timeout = Duration::from_millis(20);
        let out = run(p, vec![Slow], Arc::new(Progress::default())).await;
        assert_eq!(out.stats.ops, 0);
        assert_eq!(out.stats.errors.get("DeadlineExceeded"), Some(&2));
    }
}
