//! A voter whose Raft log cannot be written any more (a dead disk, injected with the hidden
//! `--debug-fail-log-writes-while <file>`) does not linger serving stale reads and health
//! SERVING: it logs why and exits non-zero within a second (mango-boot's fatal path).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mango_testkit::{Cluster, etcdctl, wait_until};

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
    let _ = etcdctl(
        &c.voters[0].endpoint(),
        &["put", "k", "after", "--command-timeout=2s"],
    );
    let what = format!(
        "the voter to exit after its log write failed (log {})",
        c.voters[0].log.display()
    );
    let proc = c.voters[0].proc.as_mut().unwrap();
    let status = wait_until(Duration::from_secs(5), what, || proc.exited());
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

    // Nothing acknowledged was lost: restarted without the fault, the voter has the first put.
    std::fs::remove_file(&trigger).unwrap();
    c.spawn(0);
    c.wait_leader();
    assert_eq!(
        c.etcdctl(&["get", "k", "--print-value-only"]).trim(),
        "before"
    );
}
