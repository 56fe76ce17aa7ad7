//! Watch coalescing through `mango-proxy`, against real voters and learners: 1,000 identical
//! client watches share one upstream watch (read from the proxy's metrics endpoint), every
//! client gets the same events, an old start revision gets its own upstream watch and its
//! history, cancelling every client cancels the upstream watch, and a learner killed under a
//! shared watch costs its clients no gap and no duplicate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use mango_proto::etcdserverpb::watch_client::WatchClient;
use mango_proto::etcdserverpb::watch_request::RequestUnion;
use mango_proto::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use mango_testkit::{Cluster, kv, put, wait_until, wait_value};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

/// (key, value, mod revision) of each event a watch received, by watch id.
type Seen = BTreeMap<i64, Vec<(String, String, i64)>>;

/// Waits until the proxy's metric `name` is `want`.
fn wait_metric(d: &Cluster, name: &str, want: u64) {
    wait_until(
        Duration::from_secs(10),
        format_args!("{name} = {want}"),
        || {
            let v = d.proxy_metric(name);
            if v == want { Ok(()) } else { Err(v) }
        },
    );
}

fn prefix_create(prefix: &str, start_revision: i64) -> WatchRequest {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: end,
            start_revision,
            ..Default::default()
        })),
    }
}

/// One client stream with `watches` identical watches on `prefix` from `start`: creates them
/// (each created response awaited), says so on `ready`, collects `events` events per watch,
/// then cancels every watch and checks each cancel is answered.
async fn client(
    ch: Channel,
    prefix: String,
    start: i64,
    watches: usize,
    events: usize,
    ready: mpsc::Sender<()>,
) -> Seen {
    let (tx, rx) = mpsc::channel(16);
    let mut stream = WatchClient::new(ch)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Seen::new();
    for _ in 0..watches {
        tx.send(prefix_create(&prefix, start)).await.unwrap();
        let r: WatchResponse = stream.message().await.unwrap().unwrap();
        assert!(r.created && !r.canceled, "{r:?}");
        assert!(seen.insert(r.watch_id, Vec::new()).is_none(), "ids unique");
    }
    ready.send(()).await.unwrap();
    while seen.values().any(|v| v.len() < events) {
        let r = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("events in time")
            .unwrap()
            .unwrap();
        assert!(!r.canceled, "{r:?}");
        let list = seen.get_mut(&r.watch_id).expect("a known watch id");
        for e in r.events {
            let kv = e.kv.unwrap();
            list.push((
                String::from_utf8(kv.key).unwrap(),
                String::from_utf8(kv.value).unwrap(),
                kv.mod_revision,
            ));
        }
    }
    for id in seen.keys() {
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: *id,
            })),
        })
        .await
        .unwrap();
    }
    let mut cancelled = 0;
    while cancelled < seen.len() {
        let r = stream.message().await.unwrap().unwrap();
        assert!(r.events.is_empty() || seen.contains_key(&r.watch_id));
        if r.canceled {
            cancelled += 1;
        }
    }
    seen
}

/// Waits until every learner serves a fresh write and the proxy routes reads to each of
/// them (none is ejected), so that watches go to learners rather than the voters.
async fn learners_up(d: &Cluster) {
    let mut c = kv(&d.proxy_endpoint()).await;
    put(&mut c, "learners-up", "yes").await;
    for l in &d.learners {
        wait_value(&l.endpoint(), "learners-up", "yes", Duration::from_secs(20)).await;
    }
    d.wait_proxy_reads_on_learners();
}

async fn channels(endpoint: &str, n: usize) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            Endpoint::from_shared(format!("http://{endpoint}"))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_identical_watches_share_one_upstream_watch() {
    let mut d = Cluster::start_tiered(&[]);
    let upstream = d.stream_addrs();
    d.add_learner(&upstream, &[]);
    d.start_proxy(&["--health-interval-ms", "200"]);
    learners_up(&d).await;

    // 200 client streams over 4 connections, 5 watches each.
    const STREAMS: usize = 200;
    const PER_STREAM: usize = 5;
    const BURST: usize = 100;
    let chans = channels(&d.proxy_endpoint(), 4).await;
    let (ready_tx, mut ready) = mpsc::channel(STREAMS);
    let mut clients = Vec::new();
    for i in 0..STREAMS {
        clients.push(tokio::spawn(client(
            chans[i % chans.len()].clone(),
            "hot/".into(),
            0,
            PER_STREAM,
            BURST,
            ready_tx.clone(),
        )));
    }
    for _ in 0..STREAMS {
        tokio::time::timeout(Duration::from_secs(60), ready.recv())
            .await
            .expect("every watch created in time");
    }
    assert_eq!(d.proxy_metric("mango_proxy_client_watches"), 1_000);
    assert_eq!(d.proxy_metric("mango_proxy_upstream_watches"), 1);
    assert_eq!(
        d.proxy_metric("mango_proxy_upstream_watch_creates_total"),
        1
    );
    assert_eq!(d.proxy_metric("mango_proxy_watch_joins_total"), 999);

    // A burst of writes through the proxy (to the leader).
    let mut c = kv(&d.proxy_endpoint()).await;
    let mut first = 0;
    for i in 0..BURST {
        let rev = put(&mut c, &format!("hot/{}", i % 7), &format!("v{i}")).await;
        if i == 0 {
            first = rev;
        }
    }
    let mut all = Vec::new();
    for t in clients {
        let seen = tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("clients finish")
            .unwrap();
        all.extend(seen.into_values());
    }
    assert_eq!(all.len(), 1_000);
    let want: Vec<(String, String, i64)> = (0..BURST)
        .map(|i| (format!("hot/{}", i % 7), format!("v{i}"), first + i as i64))
        .collect();
    for events in &all {
        assert_eq!(events, &want, "every client watch saw the same events");
    }
    // Every client cancelled: the upstream watch is cancelled too.
    wait_metric(&d, "mango_proxy_client_watches", 0);
    wait_metric(&d, "mango_proxy_upstream_watches", 0);

    // An old start revision: a watch of its own, with the history.
    let (ready_tx, mut ready) = mpsc::channel(1);
    let old = tokio::spawn(client(
        chans[0].clone(),
        "hot/".into(),
        first,
        1,
        BURST,
        ready_tx,
    ));
    ready.recv().await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), old)
        .await
        .expect("history in time")
        .unwrap();
    assert_eq!(seen.into_values().next().unwrap(), want);
    assert_eq!(
        d.proxy_metric("mango_proxy_upstream_watch_creates_total"),
        2
    );
    wait_metric(&d, "mango_proxy_upstream_watches", 0);

    // A shared watch and a client starting past it, then one asking for a start it passed.
    let (ready_tx, mut ready) = mpsc::channel(4);
    let live = tokio::spawn(client(
        chans[1].clone(),
        "hot/".into(),
        0,
        2,
        3,
        ready_tx.clone(),
    ));
    ready.recv().await.unwrap();
    let behind = tokio::spawn(client(
        chans[2].clone(),
        "hot/".into(),
        first + BURST as i64 - 1,
        1,
        4,
        ready_tx,
    ));
    ready.recv().await.unwrap();
    assert_eq!(d.proxy_metric("mango_proxy_upstream_watches"), 2);
    let last = {
        let mut rev = 0;
        for i in 0..3 {
            rev = put(&mut c, &format!("hot/x{i}"), "y").await;
        }
        rev
    };
    for events in live.await.unwrap().into_values() {
        let revs: Vec<i64> = events.iter().map(|e| e.2).collect();
        assert_eq!(revs, vec![last - 2, last - 1, last]);
    }
    let revs: Vec<i64> = behind
        .await
        .unwrap()
        .into_values()
        .next()
        .unwrap()
        .iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(revs, vec![last - 3, last - 2, last - 1, last]);
    wait_metric(&d, "mango_proxy_upstream_watches", 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_killed_under_a_shared_watch_costs_no_gap_nor_duplicate() {
    let mut d = Cluster::start_tiered(&[]);
    let upstream = d.stream_addrs();
    d.add_learner(&upstream, &[]);
    d.add_learner(&upstream, &[]);
    d.start_proxy(&["--health-interval-ms", "200"]);
    learners_up(&d).await;
    const PER_PHASE: usize = 30;
    let chans = channels(&d.proxy_endpoint(), 2).await;
    let (ready_tx, mut ready) = mpsc::channel(4);
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(tokio::spawn(client(
            chans[i % 2].clone(),
            "res/".into(),
            0,
            5,
            3 * PER_PHASE,
            ready_tx.clone(),
        )));
    }
    for _ in 0..4 {
        ready.recv().await.unwrap();
    }
    assert_eq!(d.proxy_metric("mango_proxy_upstream_watches"), 1);
    let mut c = kv(&d.proxy_endpoint()).await;
    let mut revs = Vec::new();
    let mut n = 0;
    for p in 0..3 {
        for _ in 0..PER_PHASE {
            revs.push(put(&mut c, &format!("res/{}", n % 5), &format!("v{n}")).await);
            n += 1;
        }
        match p {
            0 => d.kill_learner(0),
            1 => {
                d.spawn_learner(0);
                let last = format!("v{}", n - 1);
                wait_value(
                    &d.learners[0].endpoint(),
                    &format!("res/{}", (n - 1) % 5),
                    &last,
                    Duration::from_secs(20),
                )
                .await;
                d.kill_learner(1);
            }
            _ => {}
        }
    }
    for t in clients {
        let seen = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("clients finish")
            .unwrap();
        for events in seen.into_values() {
            let got: Vec<i64> = events.iter().map(|e| e.2).collect();
            assert_eq!(got, revs, "no gap, no duplicate");
        }
    }
    assert!(
        d.proxy_metric("mango_proxy_upstream_watch_resumes_total") >= 1,
        "one of the two kills was under the shared watch; proxy log:\n{}",
        d.proxy_log()
    );
    wait_metric(&d, "mango_proxy_upstream_watches", 0);
}
