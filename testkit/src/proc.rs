//! Every child process a test or the benchmark starts, killed by pid on every way out: when
//! its handle is dropped (normal exit, errors, a failing test's unwinding), and, in a binary
//! that calls [`install_handlers`], from the panic hook (release builds abort on panic, so
//! destructors would not run) and on SIGINT, SIGTERM or SIGHUP.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The children alive now, by pid.
static REGISTRY: Mutex<BTreeMap<u32, Arc<Mutex<Child>>>> = Mutex::new(BTreeMap::new());
/// Set once [`kill_all`] has started: children spawned afterwards are killed at once.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running child; killed (SIGKILL, by pid) and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    pid: u32,
    child: Arc<Mutex<Child>>,
    /// Where its output goes, named in error messages.
    pub log: PathBuf,
    done: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` (whose stdio the caller has set) and registers it.
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Result<Proc, String> {
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {name} ({}): {e}",
                cmd.get_program().to_string_lossy()
            )
        })?;
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        {
            let mut registry = lock(&REGISTRY);
            if SHUTTING_DOWN.load(Ordering::SeqCst) {
                let mut c = lock(&child);
                let _ = c.kill();
                let _ = c.wait();
                return Err(format!("{name}: not started, shutting down"));
            }
            registry.insert(pid, Arc::clone(&child));
        }
        Ok(Proc {
            name: name.to_owned(),
            pid,
            child,
            log,
            done: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its exit status if it has exited (it is then reaped and unregistered).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.done.is_none() {
            let polled = lock(&self.child).try_wait();
            if let Ok(Some(status)) = polled {
                self.finish(status);
            }
        }
        self.done
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` (`TERM`, `STOP`, `CONT`, ...) with kill(1); false if it could not be
    /// sent (the process is gone).
    pub fn signal(&self, signal: &str) -> bool {
        self.done.is_none() && send_signal(self.pid, signal)
    }

    /// SIGTERM, then waits up to `timeout` for it to exit (a graceful stop); SIGKILL and
    /// `Err` if it does not.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        self.signal("TERM");
        match self.wait_timeout(timeout) {
            Some(status) => Ok(status),
            None => {
                self.kill();
                Err(format!(
                    "{} did not exit within {timeout:?} of SIGTERM",
                    self.name
                ))
            }
        }
    }

    /// SIGKILL and reap it (nothing if it has already exited).
    pub fn kill(&mut self) {
        if self.done.is_some() {
            return;
        }
        let status = {
            let mut c = lock(&self.child);
            let _ = c.kill();
            c.wait()
        };
        if let Ok(status) = status {
            self.finish(status);
        } else {
            lock(&REGISTRY).remove(&self.pid);
        }
    }

    fn finish(&mut self, status: ExitStatus) {
        self.done = Some(status);
        lock(&REGISTRY).remove(&self.pid);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `signal` (`TERM`, `STOP`, `CONT`, ...) to process `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Kills (SIGKILL) and reaps every registered child. Safe to call from any thread, also
/// while another thread holds a child's lock (that child is then killed with `kill(1)`).
pub fn kill_all() {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
    let children: Vec<(u32, Arc<Mutex<Child>>)> = {
        let registry = match REGISTRY.try_lock() {
            Ok(r) => r,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            // The registry is held only for an insert or a remove; wait for it.
            Err(std::sync::TryLockError::WouldBlock) => lock(&REGISTRY),
        };
        registry
            .iter()
            .map(|(pid, c)| (*pid, Arc::clone(c)))
            .collect()
    };
    for (pid, child) in children {
        match child.try_lock() {
            Ok(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Err(_) => {
                send_signal(pid, "KILL");
            }
        }
    }
}

/// Installs the panic hook and the signal thread. Call before starting any child.
pub fn install_handlers() -> Result<(), String> {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all();
        default_hook(info);
    }));

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("signal runtime: {e}")));
                    return;
                }
            };
            let name = runtime.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (mut int, mut term, mut hup) = match (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                    signal(SignalKind::hangup()),
                ) {
                    (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                        let _ = ready_tx.send(Err(format!("installing signal handlers: {e}")));
                        return None;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                tokio::select! {
                    _ = int.recv() => Some("SIGINT"),
                    _ = term.recv() => Some("SIGTERM"),
                    _ = hup.recv() => Some("SIGHUP"),
                }
            });
            if let Some(name) = name {
                eprintln!("\nmango-bench: {name}: killing every child process and exiting");
                kill_all();
                std::process::exit(130);
            }
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;
    ready_rx
        .recv()
        .map_err(|_| "the signal thread died".to_owned())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn sleeper() -> Proc {
        Proc::spawn(
            "sleep",
            Command::new("sleep")
                .arg("30")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            PathBuf::from("/dev/null"),
        )
        .unwrap()
    }

    #[test]
    fn drop_kills_and_unregisters() {
        let p = sleeper();
        let pid = p.pid();
        assert!(lock(&REGISTRY).contains_key(&pid));
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(p);
        assert!(!lock(&REGISTRY).contains_key(&pid));
        // Reaped: no zombie left behind under this pid.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn exit_is_noticed() {
        let mut p = Proc::spawn(
            "true",
            Command::new("true").stdout(Stdio::null()),
            PathBuf::from("/dev/null"),
        )
        .unwrap();
        let status = p.wait_timeout(Duration::from_secs(10)).unwrap();
        assert!(status.success());
        assert!(!lock(&REGISTRY).contains_key(&p.pid()));
        let mut s = sleeper();
        assert!(s.wait_timeout(Duration::from_millis(50)).is_none());
        s.kill();
        assert!(s.exited().is_some());
    }

    #[test]
    fn terminate_stops_gracefully() {
        let mut s = sleeper();
        let status = s.terminate(Duration::from_secs(10)).unwrap();
        assert!(!status.success());
        assert!(!lock(&REGISTRY).contains_key(&s.pid()));
        assert!(!s.signal("CONT"), "no signal to a reaped process");
    }
}
