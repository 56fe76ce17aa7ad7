//! One-shot measurement of compacting 1M revisions (criterion would need ten fresh 1M-revision
//! stores): 1,000 keys written 1,000 times each, then compaction to the last revision in steps
//! of 10,000 revisions, timing each step. `cargo bench -p mango-store --bench compaction`;
//! set MANGO_COMPACT_REVISIONS for another size.

use std::time::Instant;

use mango_proto::etcdserverpb::{CompactionRequest, PutRequest};
use mango_proto::mangopb::RaftRequest;
use mango_proto::mangopb::raft_request::Request;
use mango_store::{ApplyEntry, Store, StoreOptions};
use prost::Message;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total: u64 = std::env::var("MANGO_COMPACT_REVISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_path(
        dir.path().join("db"),
        StoreOptions {
            durable_apply: false,
        },
    )
    .expect("open");
    let load = Instant::now();
    let mut index = 0u64;
    let mut batch = Vec::with_capacity(1000);
    for i in 0..total {
        let put = PutRequest {
            key: format!("key/{:06}", i % 1000).into_bytes(),
            value: vec![b'v'; 256],
            ..Default::default()
        };
        batch.push(
            RaftRequest {
                id: 0,
                auth: None,
                request: Some(Request::Put(put)),
            }
            .encode_to_vec(),
        );
        if batch.len() == 1000 || i + 1 == total {
            let entries: Vec<ApplyEntry<'_>> = batch
                .iter()
                .map(|d| {
                    index += 1;
                    ApplyEntry {
                        index,
                        term: 1,
                        data: d,
                    }
                })
                .collect();
            store.apply(0, &entries).expect("apply");
            batch.clear();
        }
    }
    let size_before = store.size().expect("size");
    println!(
        "loaded {total} revisions in {:.1}s; file {} MiB",
        load.elapsed().as_secs_f64(),
        size_before.file_bytes >> 20
    );
    let head = store.read(0).expect("read").revision();
    let data = RaftRequest {
        id: 0,
        auth: None,
        request: Some(Request::Compaction(CompactionRequest {
            revision: head,
            physical: false,
        })),
    }
    .encode_to_vec();
    index += 1;
    store
        .apply(
            0,
            &[ApplyEntry {
                index,
                term: 1,
                data: &data,
            }],
        )
        .expect("compact");
    let start = Instant::now();
    let (mut removed, mut steps, mut longest) = (0u64, 0u32, 0f64);
    loop {
        let t = Instant::now();
        let step = store.compact_step(0, 10_000).expect("step");
        longest = longest.max(t.elapsed().as_secs_f64());
        removed += step.removed;
        steps += 1;
        if !step.more {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let size = store.size().expect("size");
    println!(
        "compacted {total} revisions: removed {removed} versions in {secs:.2}s ({:.0} revisions/s), {steps} steps, longest step {:.1} ms (writes wait at most that long); in use {} -> {} MiB",
        total as f64 / secs,
        longest * 1000.0,
        size_before.in_use_bytes >> 20,
        size.in_use_bytes >> 20
    );
}
