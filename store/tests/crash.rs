//! Crash test: a child process applies batches as fast as it can and reports each one it got
//! back from `apply`; the parent kills it with SIGKILL at a random moment, reopens the store,
//! and checks that data and applied index agree: every batch up to the applied index is there
//! whole, nothing after it is, and no acknowledged batch was lost.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mango_proto::etcdserverpb::{PutRequest, RangeRequest};
use mango_proto::mangopb::raft_request::Request;
use mango_store::{ApplyEntry, Store, StoreOptions};

const KEYS_PER_BATCH: usize = 50;
const CHILD_ENV: &str = "MANGO_CRASH_CHILD_DIR";

fn batch_key(batch: u64, i: usize) -> Vec<u8> {
    format!("b{batch:08}/{i:03}").into_bytes()
}

/// The child: applies batch after batch (index = batch number) and prints each acknowledged
/// index. Runs only when the parent sets the environment variable.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = Store::open_path(format!("{dir}/db"), StoreOptions::default()).unwrap();
    let mut next = store.read(0).unwrap().state().applied_index / KEYS_PER_BATCH as u64 + 1;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let datas: Vec<Vec<u8>> = (0..KEYS_PER_BATCH)
            .map(|i| {
                let put = Request::Put(PutRequest {
                    key: batch_key(next, i),
                    value: vec![b'v'; 256],
                    ..Default::default()
                });
                common::encode(0, put)
            })
            .collect();
        // One Raft entry per put, all entries of the batch share the batch's last index.
        let first = (next - 1) * KEYS_PER_BATCH as u64 + 1;
        let entries: Vec<ApplyEntry<'_>> = datas
            .iter()
            .enumerate()
            .map(|(i, d)| ApplyEntry {
                index: first + i as u64,
                term: 1,
                data: d,
            })
            .collect();
        store.apply(0, &entries).unwrap();
        println!("acked {next}");
        next += 1;
    }
}

#[test]
fn kill_9_mid_batch_keeps_data_and_applied_index_in_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for round in 0..3u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Let it run for a pseudo-random number of acknowledged batches, then kill it while it
        // is in the middle of the next ones.
        let wait_for = 5 + (round * 7) % 11;
        let mut acked = 0u64;
        let mut seen = 0;
        while seen < wait_for {
            let line = lines.next().expect("child ended early").unwrap();
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse().unwrap();
                seen += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acks printed after we stopped reading still count as acknowledged.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse().unwrap();
            }
        }

        let store = Store::open_path(dir.path().join("db"), StoreOptions::default()).unwrap();
        let view = store.read(0).unwrap();
        let applied = view.state().applied_index;
        assert_eq!(
            applied % KEYS_PER_BATCH as u64,
            0,
            "a batch was applied in part"
        );
        let applied_batches = applied / KEYS_PER_BATCH as u64;
        assert!(
            applied_batches >= acked,
            "acknowledged batch {acked} lost (applied {applied_batches})"
        );
        let all = RangeRequest {
            key: b"b".to_vec(),
            range_end: b"c".to_vec(),
            count_only: true,
            ..Default::default()
        };
        let count = view.range(&all).unwrap().count as u64;
        assert_eq!(
            count,
            applied_batches * KEYS_PER_BATCH as u64,
            "data and applied index disagree"
        );
        // Every revision the applied entries created is there: one per put, from 2.
        assert_eq!(view.revision(), 1 + count as i64);
        let last = RangeRequest {
            key: batch_key(applied_batches, KEYS_PER_BATCH - 1),
            ..Default::default()
        };
        assert_eq!(
            view.range(&last).unwrap().kvs.len(),
            usize::from(applied_batches > 0)
        );
    }
}
