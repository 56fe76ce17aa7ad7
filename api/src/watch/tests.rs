//! The hub over a real store, without gRPC: placement, fan-out, falling behind and catching
//! up, bounded queues, compaction; and etcd's fragmentation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use mango_proto::etcdserverpb::{CompactionRequest, PutRequest, WatchResponse};
use mango_proto::mangopb::RaftRequest;
use mango_proto::mangopb::raft_request::Request;
use mango_proto::mvccpb::{Event, KeyValue};
use mango_store::{ApplyEntry, EventLimits, KeyRange, Store};
use prost::Message;
use tokio::sync::watch;

use super::fragments;
use super::handle::{Delivery, Hub, HubConfig, Inbox, WatchSpec};

/// A store, the hub over it, and the revision it publishes.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    revisions: watch::Sender<i64>,
    hub: Hub,
}

impl Fixture {
    fn new(config: HubConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_path(dir.path().join("db"), Default::default()).unwrap());
        let (revisions, rx) = watch::channel(1);
        let source = store.clone();
        let hub = Hub::start(
            Arc::new(move || {
                source
                    .read(0)
                    .map_err(|e| crate::NodeError::Other(e.to_string()))
            }),
            rx,
            config,
        );
        Self {
            _dir: dir,
            store,
            revisions,
            hub,
        }
    }

    /// Applies `requests`, one entry each, and publishes the revision.
    fn apply(&self, requests: impl IntoIterator<Item = Request>) {
        let mut index = self.store.read(0).unwrap().state().applied_index;
        let data: Vec<Vec<u8>> = requests
            .into_iter()
            .map(|r| {
                RaftRequest {
                    id: 0,
                    auth: None,
                    request: Some(r),
                }
                .encode_to_vec()
            })
            .collect();
        let entries: Vec<ApplyEntry<'_>> = data
            .iter()
            .map(|data| {
                index += 1;
                ApplyEntry {
                    index,
                    term: 1,
                    data,
                }
            })
            .collect();
        for a in self.store.apply(0, &entries).unwrap() {
            a.result.unwrap();
        }
        self.revisions
            .send_replace(self.store.read(0).unwrap().revision());
    }

    fn puts(&self, prefix: &str, n: usize, value_len: usize) {
        self.apply((0..n).map(|i| put(&format!("{prefix}{i}"), value_len)));
    }

    async fn watch(&self, spec: WatchSpec) -> (u64, Inbox) {
        let (stream, inbox) = self.hub.open();
        let key = self.hub.next_id();
        self.hub.register(stream, key, spec).await.unwrap();
        (key, inbox)
    }
}

fn put(key: &str, value_len: usize) -> Request {
    Request::Put(PutRequest {
        key: key.into(),
        value: vec![b'v'; value_len],
        ..Default::default()
    })
}

fn prefix(p: &str) -> KeyRange {
    let mut end = p.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    KeyRange::new(p, end)
}

/// Receives until `n` events arrived (or panics after 10 s); returns the events' revisions
/// and the responses' header revisions.
async fn events(inbox: &mut Inbox, n: usize) -> (Vec<Event>, Vec<i64>) {
    let mut got = Vec::new();
    let mut headers = Vec::new();
    while got.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events arrived", got.len()))
            .expect("the hub keeps the stream");
        if let Delivery::Events {
            revision, events, ..
        } = d
        {
            // A response covers whole revisions up to its header revision.
            assert!(events.iter().all(|e| mod_rev(e) <= revision));
            headers.push(revision);
            got.extend(events);
        }
    }
    (got, headers)
}

fn mod_rev(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

async fn wait_stats(hub: &Hub, want: (usize, usize)) {
    for _ in 0..500 {
        if hub.stats().await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("stats never became {want:?}: {:?}", hub.stats().await);
}

#[tokio::test]
async fn live_events_arrive_one_response_per_revision() {
    let f = Fixture::new(HubConfig::default());
    let (_, mut inbox) = f
        .watch(WatchSpec {
            range: prefix("a/"),
            ..Default::default()
        })
        .await;
    f.puts("a/", 3, 1);
    f.puts("b/", 2, 1);
    f.puts("a/x", 1, 1);
    let (got, headers) = events(&mut inbox, 4).await;
    let revs: Vec<i64> = got.iter().map(mod_rev).collect();
    assert_eq!(revs, [2, 3, 4, 7]);
    assert_eq!(headers, [2, 3, 4, 7]);
    assert_eq!(f.hub.stats().await, Some((1, 0)));
}

#[tokio::test]
async fn a_slow_stream_falls_behind_and_catches_up_without_gap_or_duplicate() {
    let config = HubConfig {
        queue_len: 4,
        queue_bytes: 4096,
        batch: EventLimits {
            max_scanned: 7,
            max_bytes: 1 << 20,
        },
        ..HubConfig::default()
    };
    let f = Fixture::new(config);
    let (_, mut slow) = f
        .watch(WatchSpec {
            range: prefix("k"),
            ..Default::default()
        })
        .await;
    let (_, mut fast) = f
        .watch(WatchSpec {
            range: prefix("k"),
            ..Default::default()
        })
        .await;
    // The fast one keeps reading; the slow one reads nothing yet.
    let reader = tokio::spawn(async move { events(&mut fast, 200).await });
    for round in 0..10 {
        f.puts(&format!("k{round}/"), 20, 100);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (fast_events, _) = reader.await.unwrap();
    assert_eq!(
        fast_events.iter().map(mod_rev).collect::<Vec<_>>(),
        (2..202).collect::<Vec<_>>()
    );
    // The slow stream's queue filled: its watcher left the synced group.
    wait_stats(&f.hub, (1, 1)).await;
    // Reading now, it gets every revision once, in order: first what was queued, then the
    // catch-up from the store in bounded batches.
    let (slow_events, _) = events(&mut slow, 200).await;
    assert_eq!(
        slow_events.iter().map(mod_rev).collect::<Vec<_>>(),
        (2..202).collect::<Vec<_>>()
    );
    // Caught up: synced again, and live events flow.
    wait_stats(&f.hub, (2, 0)).await;
    f.puts("k-live", 1, 1);
    let (live, _) = events(&mut slow, 1).await;
    assert_eq!(mod_rev(&live[0]), 202);
}

#[tokio::test]
async fn queued_bytes_never_exceed_the_budget() {
    let config = HubConfig {
        queue_len: 1000,
        queue_bytes: 10_000,
        ..HubConfig::default()
    };
    let f = Fixture::new(config);
    let (_, mut inbox) = f
        .watch(WatchSpec {
            range: prefix("k"),
            ..Default::default()
        })
        .await;
    // 100 revisions of ~1 KB each, nobody reading.
    f.puts("k", 100, 1000);
    wait_stats(&f.hub, (0, 1)).await;
    // Give the hub time to try (and fail) to queue more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (messages, bytes) = inbox.queued();
    assert!(bytes <= 10_000, "{bytes} bytes queued");
    assert!((1..100).contains(&messages), "{messages} deliveries queued");
    // What is queued is exactly that many bytes of events, and then everything follows.
    let (got, _) = events(&mut inbox, 100).await;
    assert_eq!(
        got.iter().map(mod_rev).collect::<Vec<_>>(),
        (2..102).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_historical_watch_replays_then_goes_live() {
    let f = Fixture::new(HubConfig {
        batch: EventLimits {
            max_scanned: 3,
            max_bytes: 1 << 20,
        },
        ..HubConfig::default()
    });
    f.puts("h", 10, 1);
    let (_, mut inbox) = f
        .watch(WatchSpec {
            range: KeyRange::new("h", "\0"),
            start_revision: 4,
            ..Default::default()
        })
        .await;
    let (got, headers) = events(&mut inbox, 8).await;
    assert_eq!(
        got.iter().map(mod_rev).collect::<Vec<_>>(),
        (4..12).collect::<Vec<_>>()
    );
    // Replayed in bounded batches, each reporting the revision it covers.
    assert_eq!(headers, [6, 9, 11]);
    wait_stats(&f.hub, (1, 0)).await;
    f.puts("i", 1, 1);
    let (live, headers) = events(&mut inbox, 1).await;
    assert_eq!((mod_rev(&live[0]), headers[0]), (12, 12));
}

#[tokio::test]
async fn filters_and_previous_values() {
    let f = Fixture::new(HubConfig::default());
    f.puts("p", 1, 1);
    let (_, mut no_put) = f
        .watch(WatchSpec {
            range: KeyRange::new("p0", ""),
            no_put: true,
            prev_kv: true,
            ..Default::default()
        })
        .await;
    let (_, mut with_prev) = f
        .watch(WatchSpec {
            range: KeyRange::new("p0", ""),
            prev_kv: true,
            ..Default::default()
        })
        .await;
    f.apply([put("p0", 5)]);
    f.apply([Request::DeleteRange(
        mango_proto::etcdserverpb::DeleteRangeRequest {
            key: b"p0".to_vec(),
            ..Default::default()
        },
    )]);
    let (got, _) = events(&mut no_put, 1).await;
    assert_eq!(got[0].r#type, 1, "only the delete");
    assert_eq!(got[0].prev_kv.as_ref().unwrap().value, vec![b'v'; 5]);
    let (got, _) = events(&mut with_prev, 2).await;
    assert_eq!(got[0].prev_kv.as_ref().unwrap().mod_revision, 2);
    assert_eq!(got[1].prev_kv.as_ref().unwrap().mod_revision, 3);
}

#[tokio::test]
async fn a_watch_below_the_compacted_revision_is_cancelled() {
    let f = Fixture::new(HubConfig::default());
    f.puts("c", 5, 1);
    f.apply([Request::Compaction(CompactionRequest {
        revision: 4,
        physical: true,
    })]);
    let (key, mut inbox) = f
        .watch(WatchSpec {
            range: KeyRange::new("c", "\0"),
            start_revision: 3,
            ..Default::default()
        })
        .await;
    let d = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
        .await
        .unwrap()
        .unwrap();
    match d {
        Delivery::Compacted {
            key: k,
            compact_revision,
        } => assert_eq!((k, compact_revision), (key, 4)),
        other => panic!("{other:?}"),
    }
    wait_stats(&f.hub, (0, 0)).await;
    // At the compacted revision itself, the watch is served.
    let (_, mut inbox) = f
        .watch(WatchSpec {
            range: KeyRange::new("c", "\0"),
            start_revision: 4,
            ..Default::default()
        })
        .await;
    let (got, _) = events(&mut inbox, 3).await;
    assert_eq!(got.iter().map(mod_rev).collect::<Vec<_>>(), [4, 5, 6]);
}

#[tokio::test]
async fn a_future_start_revision_waits_for_it() {
    let f = Fixture::new(HubConfig::default());
    let (_, mut inbox) = f
        .watch(WatchSpec {
            range: KeyRange::new("f", "\0"),
            start_revision: 4,
            ..Default::default()
        })
        .await;
    f.puts("f", 4, 1);
    let (got, _) = events(&mut inbox, 2).await;
    assert_eq!(got.iter().map(mod_rev).collect::<Vec<_>>(), [4, 5]);
}

#[tokio::test]
async fn progress_notifications_go_to_idle_synced_watchers() {
    let f = Fixture::new(HubConfig {
        progress_interval: Duration::from_millis(50),
        ..HubConfig::default()
    });
    f.puts("x", 2, 1);
    let (_, mut inbox) = f
        .watch(WatchSpec {
            range: KeyRange::new("q", ""),
            progress_notify: true,
            ..Default::default()
        })
        .await;
    let d = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            d,
            Delivery::Progress {
                key: Some(_),
                revision: 3
            }
        ),
        "{d:?}"
    );
}

fn event(key: &str, value_len: usize) -> Event {
    Event {
        r#type: 0,
        kv: Some(KeyValue {
            key: key.into(),
            value: vec![0; value_len],
            ..Default::default()
        }),
        prev_kv: None,
    }
}

#[test]
fn large_responses_are_split_like_etcd() {
    let response = WatchResponse {
        watch_id: 7,
        events: (0..10).map(|i| event(&format!("k{i}"), 100)).collect(),
        ..Default::default()
    };
    // Under the limit, or a single event: unchanged.
    assert_eq!(fragments(response.clone(), 10_000), vec![response.clone()]);
    let single = WatchResponse {
        events: vec![event("big", 5000)],
        ..Default::default()
    };
    assert_eq!(fragments(single.clone(), 100), vec![single]);
    let parts = fragments(response.clone(), 350);
    assert!(parts.len() > 1);
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p.fragment, i + 1 < parts.len());
        assert_eq!(p.watch_id, 7);
        assert!(
            p.encoded_len() < 350 || p.events.len() == 1,
            "{}",
            p.encoded_len()
        );
    }
    let joined: Vec<Event> = parts.into_iter().flat_map(|p| p.events).collect();
    assert_eq!(joined, response.events);
}
