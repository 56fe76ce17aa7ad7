//! etcd's own CLI (etcdctl 3.4, API v3) against any endpoints: mango's voters, learners and
//! proxy, or a real etcd. One way to run it, blocking or async (for tests whose server runs
//! on the test's own runtime), with or without stdin.

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::wait::wait_until;

/// The per-command timeout given to every etcdctl run (a later `--command-timeout` in the
/// arguments wins).
pub const COMMAND_TIMEOUT: &str = "--command-timeout=10s";

/// The etcdctl binary: `/usr/bin/etcdctl`, else the first on `PATH`.
pub fn etcdctl_bin() -> PathBuf {
    crate::bins::tool("etcdctl", "etcd-client")
}

/// An etcdctl command against `endpoints` (comma-separated `host:port` or URLs), to add
/// arguments to; for runs in the background (`watch`, `lock`, `elect`).
pub fn etcdctl_command(endpoints: &str) -> Command {
    command_with(&etcdctl_bin(), endpoints)
}

/// [`etcdctl_command`] with another etcdctl binary.
pub fn command_with(bin: &Path, endpoints: &str) -> Command {
    let mut c = Command::new(bin);
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg(COMMAND_TIMEOUT)
        .stdin(Stdio::null());
    c
}

/// Runs etcdctl against `endpoints`.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    etcdctl_command(endpoints)
        .args(args)
        .output()
        .expect("etcdctl runs (apt-get install etcd-client)")
}

/// Runs etcdctl against `endpoints` and returns its stdout; panics with its output when it
/// fails.
pub fn etcdctl_ok(endpoints: &str, args: &[&str]) -> String {
    ok(args, etcdctl(endpoints, args))
}

/// Runs etcdctl against `endpoints` with `stdin` (e.g. `txn`).
pub fn etcdctl_stdin(endpoints: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = etcdctl_command(endpoints)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl runs (apt-get install etcd-client)");
    let mut input = child.stdin.take().expect("etcdctl's stdin");
    let stdin = stdin.to_vec();
    // Written from a thread: a large input must not block against a full stdout pipe (and
    // etcdctl may exit without reading it all).
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().expect("etcdctl's output");
    let _ = writer.join();
    out
}

/// Runs etcdctl without endpoints (`snapshot status`, `snapshot restore`).
pub fn etcdctl_offline(args: &[&str]) -> Output {
    Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .args(args)
        .output()
        .expect("etcdctl runs (apt-get install etcd-client)")
}

/// [`etcdctl`] without blocking the runtime: for tests that serve on their own runtime.
pub async fn etcdctl_async(endpoints: &str, args: &[&str]) -> Output {
    tokio::process::Command::from(etcdctl_command(endpoints))
        .args(args)
        .output()
        .await
        .expect("etcdctl runs (apt-get install etcd-client)")
}

/// [`etcdctl_ok`] without blocking the runtime.
pub async fn etcdctl_ok_async(endpoints: &str, args: &[&str]) -> String {
    ok(args, etcdctl_async(endpoints, args).await)
}

fn ok(args: &[&str], out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// An etcdctl running in the background (`watch`, `lock`, `elect`), its stdout and stderr
/// collected as they come; killed on drop.
pub struct Background {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    /// The threads reading stdout and stderr; done once the process is gone.
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut from: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let to = buf.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            to.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buf, reader)
}

impl Background {
    /// Starts `etcdctl <args>` against `endpoints`.
    pub fn spawn(endpoints: &str, args: &[&str]) -> Background {
        let mut child = etcdctl_command(endpoints)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl runs (apt-get install etcd-client)");
        let (out, r1) = collect(child.stdout.take().expect("etcdctl's stdout"));
        let (err, r2) = collect(child.stderr.take().expect("etcdctl's stderr"));
        Background {
            child,
            out,
            err,
            readers: vec![r1, r2],
        }
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// Bytes of output so far, both streams.
    pub fn output_len(&self) -> usize {
        self.out.lock().unwrap().len() + self.err.lock().unwrap().len()
    }

    /// Waits until its stdout satisfies `ok`.
    pub fn wait_stdout(&self, timeout: Duration, what: &str, ok: impl Fn(&str) -> bool) {
        wait_until(
            timeout,
            format_args!("etcdctl's output to show {what}"),
            || {
                let out = self.stdout();
                if ok(&out) { Ok(()) } else { Err(out) }
            },
        );
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until it exits by itself.
    pub fn wait_exit(&mut self, timeout: Duration, what: &str) -> ExitStatus {
        wait_until(timeout, format_args!("{what} to exit"), || {
            self.exited().ok_or_else(|| self.stdout())
        })
    }

    /// SIGTERM (etcdctl then unlocks, resigns or cancels, and closes its session), and
    /// waits until it exits.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        crate::proc::send_signal(self.child.id(), "TERM");
        self.wait_exit(timeout, "etcdctl after SIGTERM")
    }

    /// Kills it if it still runs, and returns its exit status (`None`: it was still
    /// running), stdout and stderr, complete.
    pub fn finish(mut self) -> (Option<ExitStatus>, String, String) {
        let status = self.exited();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status, self.stdout(), self.stderr())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `Status` object of `endpoint status -w json` at one endpoint, if it answers.
pub fn status(endpoint: &str) -> Option<Value> {
    let out = etcdctl(endpoint, &["endpoint", "status", "-w", "json"]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0)?.get("Status").cloned()
}

/// The index in `endpoints` of the leader, out of `etcdctl endpoint status -w json` output:
/// the entry whose `Status.header.member_id` equals its `Status.leader`.
pub fn leader_of(status_json: &str, endpoints: &[String]) -> Option<usize> {
    let v: Value = serde_json::from_str(status_json.trim()).ok()?;
    v.as_array()?.iter().find_map(|entry| {
        let status = entry.get("Status")?;
        let leader = status.get("leader")?.as_u64()?;
        let me = status.get("header")?.get("member_id")?.as_u64()?;
        if leader == 0 || leader != me {
            return None;
        }
        let endpoint = entry.get("Endpoint")?.as_str()?;
        let endpoint = endpoint.strip_prefix("http://").unwrap_or(endpoint);
        endpoints.iter().position(|e| e == endpoint)
    })
}

/// The header revision of an etcdctl JSON answer (`-w json`).
pub fn header_revision(json: &str) -> i64 {
    let v: Value = serde_json::from_str(json).expect("etcdctl printed JSON");
    v["header"]["revision"]
        .as_i64()
        .expect("a header.revision in etcdctl's JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_is_the_member_that_names_itself() {
        let eps = ["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()];
        let json = r#"[{"Endpoint":"127.0.0.1:1","Status":{"header":{"member_id":7},"leader":9}},
            {"Endpoint":"http://127.0.0.1:2","Status":{"header":{"member_id":9},"leader":9}}]"#;
        assert_eq!(leader_of(json, &eps), Some(1));
        let none = r#"[{"Endpoint":"127.0.0.1:1","Status":{"header":{"member_id":7},"leader":0}}]"#;
        assert_eq!(leader_of(none, &eps), None);
        assert_eq!(leader_of("", &eps), None);
        assert_eq!(leader_of("[{}]", &eps), None);
    }
}
