//! Micro-benchmarks of the store: batched apply, ranges at the head and at an old revision.
//! `cargo bench -p mango-store --bench store`. Compaction of 1M revisions is a one-shot run:
//! `cargo bench -p mango-store --bench compaction`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mango_proto::etcdserverpb::{PutRequest, RangeRequest};
use mango_proto::mangopb::RaftRequest;
use mango_proto::mangopb::raft_request::Request;
use mango_store::{ApplyEntry, Store, StoreOptions};
use prost::Message;

fn put_data(key: &[u8], value: &[u8]) -> Vec<u8> {
    let put = PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    };
    RaftRequest {
        id: 1,
        auth: None,
        request: Some(Request::Put(put)),
    }
    .encode_to_vec()
}

/// Applies `datas` as consecutive entries after the store's applied index, in batches.
fn apply_all(store: &Store, datas: &[Vec<u8>], batch: usize) {
    let mut index = store.read(0).expect("read").state().applied_index;
    for chunk in datas.chunks(batch) {
        let entries: Vec<ApplyEntry<'_>> = chunk
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
    }
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_puts_256B");
    for (batch, durable) in [(1usize, true), (100, true), (1000, true), (1000, false)] {
        group.throughput(Throughput::Elements(batch as u64));
        let name = format!(
            "batch_{batch}_{}",
            if durable { "fsync" } else { "nofsync" }
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_path(
            dir.path().join("db"),
            StoreOptions {
                durable_apply: durable,
            },
        )
        .expect("open");
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    (0..batch)
                        .map(|_| {
                            n += 1;
                            put_data(format!("key/{:08}", n % 100_000).as_bytes(), &[b'v'; 256])
                        })
                        .collect::<Vec<_>>()
                },
                |datas| apply_all(&store, &datas, batch),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_range(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_path(
        dir.path().join("db"),
        StoreOptions {
            durable_apply: false,
        },
    )
    .expect("open");
    let keys: Vec<Vec<u8>> = (0..10_000)
        .map(|i| format!("key/{i:08}").into_bytes())
        .collect();
    let first: Vec<Vec<u8>> = keys.iter().map(|k| put_data(k, &[b'a'; 256])).collect();
    apply_all(&store, &first, 1000);
    let old = store.read(0).expect("read").revision();
    let second: Vec<Vec<u8>> = keys.iter().map(|k| put_data(k, &[b'b'; 256])).collect();
    apply_all(&store, &second, 1000);
    let view = store.read(0).expect("read");

    let mut group = c.benchmark_group("range");
    for n in [1usize, 100, 10_000] {
        for (label, revision) in [("head", 0), ("old_rev", old)] {
            let req = RangeRequest {
                key: keys[0].clone(),
                range_end: if n == 1 {
                    vec![]
                } else {
                    keys.get(n).cloned().unwrap_or(b"key0".to_vec())
                },
                revision,
                ..Default::default()
            };
            assert_eq!(view.range(&req).expect("range").kvs.len(), n);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(format!("{n}_keys_{label}"), |b| {
                b.iter(|| black_box(view.range(&req).expect("range")))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench_apply, bench_range
}
criterion_main!(benches);
