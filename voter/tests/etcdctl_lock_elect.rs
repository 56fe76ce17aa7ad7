//! `etcdctl lock` and `etcdctl elect` (etcd's client-side `concurrency` package: a session
//! lease with keep-alives, create-if-absent txns, watches for the predecessor's delete)
//! against a fresh etcd 3.4 and a fresh 3-voter mango: the same scenario prints the same
//! (lease ids normalised), and concurrent `etcdctl lock` holders never overlap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::Cluster;
use harness::etcd::Etcd;

/// A background etcdctl, its stdout collected as it comes.
struct Background {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

fn spawn(endpoints: &str, args: &[&str]) -> Background {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl is installed");
    let mut stdout = child.stdout.take().unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 1024];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    Background { child, out }
}

impl Background {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until the output has `lines` lines.
    fn wait_lines(&self, lines: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.text().lines().count() < lines {
            assert!(Instant::now() < deadline, "{what}: got {:?}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finished(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM (etcdctl then unlocks or resigns and closes its session) and wait.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.finished() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.finished() {
            assert!(
                Instant::now() < deadline,
                "{what} did not finish: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name/<hex lease>` becomes `name/<lease>`.
fn norm(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| match l.split_once('/') {
            Some((name, id)) if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) => {
                format!("{name}/<lease>")
            }
            _ => l.to_string(),
        })
        .collect()
}

/// The scenario; returns what each etcdctl printed, in order.
fn scenario(endpoints: &str) -> Vec<String> {
    let mut t = Vec::new();
    // A lock around a command.
    let mut once = spawn(endpoints, &["lock", "L1", "--", "echo", "held-1"]);
    once.wait_exit("lock with a command");
    t.push(format!("lock L1 -- echo: {:?}", norm(&once.text())));

    // A holder, and a second locker that must wait for it.
    let mut holder = spawn(endpoints, &["lock", "L2"]);
    holder.wait_lines(1, "lock holder");
    let mut second = spawn(endpoints, &["lock", "L2", "--", "echo", "second"]);
    std::thread::sleep(Duration::from_millis(800));
    t.push(format!(
        "second locker finished while the lock was held: {}",
        second.finished()
    ));
    holder.terminate();
    second.wait_exit("second locker");
    t.push(format!("holder: {:?}", norm(&holder.text())));
    t.push(format!("second: {:?}", norm(&second.text())));

    // An election: alpha leads, a listener sees it, beta waits, alpha resigns, beta leads.
    let mut alpha = spawn(endpoints, &["elect", "E1", "alpha"]);
    alpha.wait_lines(2, "alpha campaign");
    let listener = spawn(endpoints, &["elect", "-l", "E1"]);
    listener.wait_lines(2, "listener");
    let mut beta = spawn(endpoints, &["elect", "E1", "beta"]);
    std::thread::sleep(Duration::from_millis(800));
    t.push(format!(
        "beta before alpha resigned: {:?}",
        norm(&beta.text())
    ));
    alpha.terminate();
    beta.wait_lines(2, "beta campaign");
    listener.wait_lines(4, "listener sees beta");
    t.push(format!("alpha: {:?}", norm(&alpha.text())));
    t.push(format!("beta: {:?}", norm(&beta.text())));
    t.push(format!("listener: {:?}", norm(&listener.text())));
    beta.terminate();
    t
}

#[test]
fn etcdctl_lock_and_elect_behave_as_against_etcd() {
    let etcd = Etcd::start();
    let mango = Cluster::start(3);
    let expected = scenario(&etcd.endpoint);
    let got = scenario(&mango.endpoints());
    assert_eq!(expected, got, "etcd 3.4 (left) and mango (right) differ");
}

#[test]
fn concurrent_etcdctl_lock_holders_never_overlap() {
    let mango = Cluster::start(3);
    let log = mango.path().join("holds.log");
    let log_s = log.to_string_lossy().into_owned();
    // Each holder appends its start and end (ns since the epoch) while holding the lock.
    let script = format!(
        "echo start $(date +%s%N) >> {log_s}; sleep 0.2; echo end $(date +%s%N) >> {log_s}"
    );
    let mut holders: Vec<Background> = (0..6)
        .map(|_| {
            spawn(
                &mango.endpoints(),
                &["lock", "L3", "--", "sh", "-c", &script],
            )
        })
        .collect();
    for h in &mut holders {
        h.wait_exit("lock holder");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let marks: Vec<(String, u128)> = text
        .lines()
        .map(|l| {
            let (kind, ns) = l.split_once(' ').unwrap();
            (kind.to_string(), ns.parse().unwrap())
        })
        .collect();
    assert_eq!(marks.len(), 12, "every holder ran once: {text}");
    // Strictly alternating start/end in time order: no two holds overlap.
    let mut sorted = marks.clone();
    sorted.sort_by_key(|(_, ns)| *ns);
    for (i, (kind, _)) in sorted.iter().enumerate() {
        let expect = if i % 2 == 0 { "start" } else { "end" };
        assert_eq!(kind, expect, "holds overlap: {sorted:?}");
    }
}
