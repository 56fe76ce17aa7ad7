//! A voter whose Raft log cannot be written any more (a dead disk, injected with the hidden
//! `--debug-fail-log-writes-while <file>`) does not linger serving stale reads and health
//! SERVING: it logs why and exits non-zero within a second (mango-boot's fatal path).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::Cluster;

#[test]
fn a_failed_log_write_ends_the_voter_with_a_nonzero_status_within_a_second() {
    let faults = tempfile::tempdir().unwrap();
    let trigger = faults.path().join("disk-gone");
    let mut c = Cluster::start_with(
        1,
        &["--debug-fail-log-writes-while", trigger.to_str().unwrap()],
    );
    assert_eq!(c.etcdctl(&["put", "k", "before"]).trim(), "OK");

    std::fs::write(&trigger, b"").unwrap();
    let failed_at = Instant::now();
    // The next write needs a log write: it fails, and so does the process.
    let _ = Cluster::etcdctl_at(
        &c.voters[0].endpoint(),
        &["put", "k", "after", "--command-timeout=2s"],
    );
    let child = c.voters[0].child.as_mut().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            failed_at.elapsed() < Duration::from_secs(5),
            "the voter still runs after its log write failed:\n{}",
            c.log_of(0)
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = failed_at.elapsed();
    assert_eq!(status.code(), Some(70), "{}", c.log_of(0));
    // The put is sent at once and its log write fails at once: exit within a second of it
    // (the etcdctl call itself takes a few milliseconds to start).
    assert!(took < Duration::from_millis(1500), "exited after {took:?}");
    let log = c.log_of(0);
    assert!(
        log.contains("injected failure"),
        "the reason is not logged:\n{log}"
    );
    c.voters[0].child = None;

    // Nothing acknowledged was lost: restarted without the fault, the voter has the first put.
    std::fs::remove_file(&trigger).unwrap();
    c.spawn(0, "new");
    c.wait_leader(Duration::from_secs(20));
    assert_eq!(
        c.etcdctl(&["get", "k", "--print-value-only"]).trim(),
        "before"
    );
}
