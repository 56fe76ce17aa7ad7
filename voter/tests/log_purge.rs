//! The Raft log shrinks: once the log is compacted (every `--snapshot-count` entries), the
//! files whose entries are all compacted are removed. Before, `purge_expired_files` ran only
//! in unit tests and the log directory grew with every write for ever.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use mango_testkit::{Cluster, kv, put, wait_until};

/// raft-engine's append-queue files of a voter's log.
fn log_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("member").join("raft"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".raftlog"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_log_files_are_removed() {
    // 128 KiB files; 300 puts of 16 KiB write about 38 such files' worth of log.
    let mut c = Cluster::start_with(
        3,
        &[
            "--snapshot-count",
            "20",
            "--snapshot-catchup-entries",
            "10",
            "--debug-raft-log-file-bytes",
            "131072",
        ],
    );
    let leader = c.wait_leader();
    let mut client = kv(&c.voters[leader].endpoint()).await;
    // Incompressible (the log LZ4-compresses batches): 16 KiB of pseudo-random hex.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let value: String = (0..16 * 1024 / 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect();
    for i in 0..300 {
        put(&mut client, &format!("k{i:03}"), &value).await;
    }
    let dirs: Vec<_> = c.voters.iter().map(|v| v.data_dir.clone()).collect();
    // Every member compacts and purges on its own: each keeps a few files (the voter's
    // purge threshold is 4 files, plus the one being written).
    let most = dirs.iter().map(|d| log_files(d)).max().unwrap_or(0);
    assert!(
        most > 0,
        "no log files found: is the layout still member/raft/*.raftlog?"
    );
    wait_until(Duration::from_secs(30), "the log files purged", || {
        dirs.iter().all(|d| log_files(d) <= 6)
    });
    // The purged log still restarts: kill -9 a member and read back from it.
    let other = (leader + 1) % 3;
    c.kill(other);
    c.spawn(other);
    mango_testkit::wait_value(
        &c.voters[other].endpoint(),
        "k299",
        &value,
        Duration::from_secs(20),
    )
    .await;
    // And it follows the log from where its purged files left it.
    put(&mut client, "after", "restart").await;
    mango_testkit::wait_value(
        &c.voters[other].endpoint(),
        "after",
        "restart",
        Duration::from_secs(20),
    )
    .await;
}
