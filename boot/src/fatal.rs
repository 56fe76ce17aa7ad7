//! The fatal-exit path. A component that cannot go on (the Raft loop or the apply thread
//! stopped on a storage error, a learner's store failed) trips the [`Fatal`] switch; the
//! process then turns its health NOT_SERVING, logs why, and exits non-zero within a second,
//! instead of lingering and answering health checks while it can no longer serve.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Exit code of a process ended by a fatal error.
pub const FATAL_EXIT_CODE: i32 = 70;

/// How long the steps before the exit may take in all.
const GRACE: Duration = Duration::from_millis(500);

type Hook = Box<dyn FnOnce() + Send>;

/// The switch. Cheap to clone; clones share it. Tripping it ends the process.
#[derive(Clone, Default)]
pub struct Fatal {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// Run (once, in order) before the exit: e.g. turn health NOT_SERVING.
    hooks: Vec<Hook>,
    /// Tripped already: the exit is under way.
    tripped: bool,
    /// Tests: call this instead of exiting the process.
    exit: Option<Arc<dyn Fn(i32) + Send + Sync>>,
}

impl std::fmt::Debug for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fatal")
    }
}

impl Fatal {
    /// A switch that exits the process.
    pub fn new() -> Self {
        Self::default()
    }

    /// A switch that calls `exit` with the code instead of exiting (tests).
    pub fn with_exit(exit: impl Fn(i32) + Send + Sync + 'static) -> Self {
        let f = Self::default();
        f.lock().exit = Some(Arc::new(exit));
        f
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `hook` before the exit (hooks must be quick: they share half a second).
    pub fn on_trip(&self, hook: impl FnOnce() + Send + 'static) {
        self.lock().hooks.push(Box::new(hook));
    }

    /// Turns the gRPC health service's overall status NOT_SERVING when the switch trips, so
    /// health checks see the process failing before it is gone. Call on the runtime.
    pub fn not_serving_on_trip(&self, health: tonic_health::server::HealthReporter) {
        let runtime = tokio::runtime::Handle::current();
        self.on_trip(move || {
            runtime
                .block_on(health.set_service_status("", tonic_health::ServingStatus::NotServing));
        });
    }

    /// Whether the switch was tripped.
    pub fn is_tripped(&self) -> bool {
        self.lock().tripped
    }

    /// The process cannot go on: run the hooks, log `reason`, exit with
    /// [`FATAL_EXIT_CODE`]. Returns at once; the exit happens on its own thread, within a
    /// second whatever the hooks do. Later trips are ignored.
    pub fn trip(&self, reason: impl std::fmt::Display) {
        let reason = reason.to_string();
        let (hooks, exit) = {
            let mut inner = self.lock();
            if inner.tripped {
                return;
            }
            inner.tripped = true;
            (std::mem::take(&mut inner.hooks), inner.exit.clone())
        };
        tracing::error!(%reason, "fatal: the process cannot go on and exits");
        eprintln!("fatal: {reason}");
        let spawned = std::thread::Builder::new()
            .name("fatal-exit".into())
            .spawn(move || {
                let (done_tx, done_rx) = std::sync::mpsc::channel();
                let _ = std::thread::Builder::new()
                    .name("fatal-hooks".into())
                    .spawn(move || {
                        for hook in hooks {
                            hook();
                        }
                        let _ = done_tx.send(());
                    });
                let _ = done_rx.recv_timeout(GRACE);
                match exit {
                    Some(exit) => exit(FATAL_EXIT_CODE),
                    None => std::process::exit(FATAL_EXIT_CODE),
                }
            });
        if spawned.is_err() {
            std::process::exit(FATAL_EXIT_CODE);
        }
    }

    /// Watches a thread that must run for the life of the process: when it ends with a reason
    /// (`Some`), the switch trips with it; a `None` is a requested stop.
    pub fn watch_thread(
        &self,
        what: &'static str,
        thread: std::thread::JoinHandle<Option<String>>,
    ) -> std::thread::JoinHandle<()> {
        let fatal = self.clone();
        let spawn = std::thread::Builder::new()
            .name(format!("watch-{what}"))
            .spawn(move || match thread.join() {
                Ok(None) => {}
                Ok(Some(reason)) => fatal.trip(format!("{what} stopped: {reason}")),
                Err(_) => fatal.trip(format!("{what} panicked")),
            });
        match spawn {
            Ok(handle) => handle,
            Err(e) => {
                self.trip(format!("cannot watch {what}: {e}"));
                std::thread::spawn(|| {})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI32, Ordering};

    #[test]
    fn a_trip_runs_hooks_then_exits_once_within_a_second() {
        let code = Arc::new(AtomicI32::new(0));
        let seen = code.clone();
        let fatal = Fatal::with_exit(move |c| seen.store(c, Ordering::SeqCst));
        let hooked = Arc::new(AtomicI32::new(0));
        let h = hooked.clone();
        fatal.on_trip(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        // A hook that never returns does not hold the exit.
        fatal.on_trip(|| std::thread::sleep(Duration::from_secs(30)));
        let start = std::time::Instant::now();
        fatal.trip("disk gone");
        fatal.trip("again");
        while code.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(code.load(Ordering::SeqCst), FATAL_EXIT_CODE);
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(hooked.load(Ordering::SeqCst), 1);
        assert!(fatal.is_tripped());
    }

    #[test]
    fn a_watched_thread_that_ends_with_a_reason_trips() {
        let code = Arc::new(AtomicI32::new(0));
        let seen = code.clone();
        let fatal = Fatal::with_exit(move |c| seen.store(c, Ordering::SeqCst));
        let ok = std::thread::spawn(|| None);
        let _ = fatal.watch_thread("quiet", ok).join();
        assert!(!fatal.is_tripped());
        let bad = std::thread::spawn(|| Some("storage failed".to_string()));
        let _ = fatal.watch_thread("raft loop", bad).join();
        assert!(fatal.is_tripped());
    }
}
