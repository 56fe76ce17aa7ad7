//! `etcdctl lock` and `etcdctl elect` (etcd's client-side `concurrency` package: a session
//! lease with keep-alives, create-if-absent txns, watches for the predecessor's delete)
//! against a fresh etcd 3.4 and a fresh 3-voter mango: the same scenario prints the same
//! (lease ids normalised), and concurrent `etcdctl lock` holders never overlap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mango_testkit::Cluster;
use mango_testkit::etcdctl::Background;

/// How long etcdctl may take to print or exit.
const WAIT: Duration = Duration::from_secs(15);

fn spawn(endpoints: &str, args: &[&str]) -> Background {
    Background::spawn(endpoints, args)
}

/// Waits until `b` printed `lines` lines.
fn wait_lines(b: &Background, lines: usize, what: &str) {
    b.wait_stdout(WAIT, &format!("{lines} lines of {what}"), |out| {
        out.lines().count() >= lines
    });
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
    once.wait_exit(WAIT, "lock with a command");
    t.push(format!("lock L1 -- echo: {:?}", norm(&once.stdout())));

    // A holder, and a second locker that must wait for it.
    let mut holder = spawn(endpoints, &["lock", "L2"]);
    wait_lines(&holder, 1, "lock holder");
    let mut second = spawn(endpoints, &["lock", "L2", "--", "echo", "second"]);
    // The test: a window in which the second locker must not get the held lock (the
    // absence of an event: nothing to wait for).
    std::thread::sleep(Duration::from_millis(800));
    t.push(format!(
        "second locker finished while the lock was held: {}",
        second.exited().is_some()
    ));
    holder.terminate(WAIT);
    second.wait_exit(WAIT, "second locker");
    t.push(format!("holder: {:?}", norm(&holder.stdout())));
    t.push(format!("second: {:?}", norm(&second.stdout())));

    // An election: alpha leads, a listener sees it, beta waits, alpha resigns, beta leads.
    let mut alpha = spawn(endpoints, &["elect", "E1", "alpha"]);
    wait_lines(&alpha, 2, "alpha campaign");
    let listener = spawn(endpoints, &["elect", "-l", "E1"]);
    wait_lines(&listener, 2, "listener");
    let mut beta = spawn(endpoints, &["elect", "E1", "beta"]);
    // The test: a window in which beta must not win while alpha leads.
    std::thread::sleep(Duration::from_millis(800));
    t.push(format!(
        "beta before alpha resigned: {:?}",
        norm(&beta.stdout())
    ));
    alpha.terminate(WAIT);
    wait_lines(&beta, 2, "beta campaign");
    wait_lines(&listener, 4, "listener sees beta");
    t.push(format!("alpha: {:?}", norm(&alpha.stdout())));
    t.push(format!("beta: {:?}", norm(&beta.stdout())));
    t.push(format!("listener: {:?}", norm(&listener.stdout())));
    beta.terminate(WAIT);
    t
}

#[test]
fn etcdctl_lock_and_elect_behave_as_against_etcd() {
    let etcd = Cluster::etcd(1);
    let mango = Cluster::start(3);
    let expected = scenario(&etcd.endpoints());
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
        h.wait_exit(WAIT, "lock holder");
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
