//! The live progress line on stderr, about once a second.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// Counters every client bumps; the printer reads them.
#[derive(Debug, Default)]
pub struct Progress {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Progress {
    pub fn ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// (successes, failures) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Prints the progress line while it lives; clears it when stopped.
#[derive(Debug)]
pub struct Printer {
    task: Option<JoinHandle<()>>,
}

impl Printer {
    /// Starts printing unless `quiet` or stderr is not a terminal.
    pub fn start(progress: Arc<Progress>, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Printer { task: None };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut last = (0u64, start);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let (ok, failed) = progress.counts();
                let now = Instant::now();
                let rate = (ok - last.0) as f64 / now.duration_since(last.1).as_secs_f64();
                last = (ok, now);
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{:>6.0}s  {ok} ok  {failed} failed  {rate:.0} ops/s",
                    start.elapsed().as_secs_f64()
                );
                let _ = err.flush();
            }
        });
        Printer { task: Some(task) }
    }

    /// Stops printing and clears the line.
    pub fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
