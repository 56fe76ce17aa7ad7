//! Learners against real voters on loopback: 3 voters, learners fed by a voter and by another
//! learner. Learner-linearizable reads see every acknowledged write; stale reads and watches
//! follow; writes through a learner are forwarded; a killed learner resumes; a learner behind
//! the log's compaction catches up by snapshot; a learner cut off from its upstream refuses
//! bounded reads and keeps serving stale ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};
use mango_proto::etcdserverpb::StatusRequest;
use mango_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use mango_testkit::{Cluster, get, kv, put, wait_until_async, wait_value};

/// 3 voters; learner 0 following a follower, learner 1 following learner 0, learner 2
/// following the other follower.
fn deployment(extra: &[&str]) -> (Cluster, usize) {
    let mut d = Cluster::start_tiered(extra);
    let leader = d.wait_leader();
    let upstream = d.voters[(leader + 1) % 3].stream_addr();
    d.add_learner(&upstream, &[]);
    let chained = d.learners[0].stream_addr();
    d.add_learner(&chained, &[]);
    let other = d.voters[(leader + 2) % 3].stream_addr();
    d.add_learner(&other, &[]);
    (d, leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_linearizable_reads_see_every_acknowledged_write() {
    let (d, _) = deployment(&[]);
    // Six clients at once, each writing through a voter and then reading the key back with
    // a learner-linearizable read from a learner (rotating over all three, the chained one
    // included). Every read starts after its write was acknowledged, so it must see it.
    let voters: Vec<String> = d.voters.iter().map(|v| v.endpoint()).collect();
    let learners: Vec<String> = d.learners.iter().map(|l| l.endpoint()).collect();
    let mut tasks = Vec::new();
    for client in 0..6usize {
        let (voters, learners) = (voters.clone(), learners.clone());
        tasks.push(tokio::spawn(async move {
            let mut w = kv(&voters[client % voters.len()]).await;
            let mut readers = Vec::new();
            for l in &learners {
                readers.push(kv(l).await);
            }
            for round in 0..25usize {
                // Keys shared between clients: a read may see a later write, never an older one.
                let key = format!("lin/{}", (client + round) % 10);
                let rev = put(&mut w, &key, &format!("c{client}r{round}")).await;
                let r = (client + round) % readers.len();
                let resp = get(&mut readers[r], &key, "learner-linearizable")
                    .await
                    .unwrap_or_else(|e| panic!("learner {r} refused a linearizable read: {e}"));
                let kv = resp
                    .kvs
                    .first()
                    .unwrap_or_else(|| panic!("learner {r} lost {key}"));
                assert!(
                    kv.mod_revision >= rev,
                    "learner {r} served {key} at mod revision {} after the write at {rev} \
                     was acknowledged",
                    kv.mod_revision
                );
                assert!(resp.header.unwrap().revision >= rev);
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("checker clients finished")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_watches_and_forwarded_writes_on_learners() {
    let (d, _) = deployment(&[]);
    let chained = d.learners[1].endpoint();
    // Connect once it listens.
    let mut via_learner = kv(&chained).await;
    // A watch on the chained learner and one on a voter see the same events.
    let mut on_learner = Client::connect([chained.clone()], None).await.unwrap();
    let mut on_voter = Client::connect([d.voters[0].endpoint()], None)
        .await
        .unwrap();
    let opts = || Some(WatchOptions::new().with_prefix().with_prev_key());
    let mut learner_events = on_learner.watch("w/", opts()).await.unwrap();
    let mut voter_events = on_voter.watch("w/", opts()).await.unwrap();

    // Writes through the learner are forwarded to the voters.
    for i in 0..20 {
        put(&mut via_learner, &format!("w/{}", i % 5), &format!("{i}")).await;
    }
    let mut voter_kv = kv(&d.voters[0].endpoint()).await;
    let r = get(&mut voter_kv, "w/4", "linearizable").await.unwrap();
    assert_eq!(r.kvs[0].value, b"19");
    on_voter.delete("w/0", None).await.unwrap();
    wait_value(&chained, "w/3", "18", Duration::from_secs(10)).await;

    async fn collect(
        stream: &mut etcd_client::WatchStream,
        n: usize,
    ) -> Vec<(EventType, String, i64, Option<String>)> {
        let mut out = Vec::new();
        while out.len() < n {
            let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("events arrive")
                .unwrap()
                .unwrap();
            for e in resp.events() {
                let kv = e.kv().unwrap();
                out.push((
                    e.event_type(),
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.mod_revision(),
                    e.prev_kv()
                        .map(|p| String::from_utf8_lossy(p.value()).into_owned()),
                ));
            }
        }
        out
    }
    // Leases through the learner: grants are forwarded, TTL and the lease list answer.
    let lease = on_learner.lease_grant(30, None).await.unwrap().id();
    on_learner
        .put(
            "lease-key",
            "v",
            Some(etcd_client::PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    let ttl = on_learner
        .lease_time_to_live(
            lease,
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .unwrap();
    assert!((25..=30).contains(&ttl.ttl()), "{}", ttl.ttl());
    assert_eq!(ttl.keys(), [b"lease-key".to_vec()]);
    let leases = on_learner.leases().await.unwrap();
    assert!(leases.leases().iter().any(|l| l.id() == lease));
    let (mut keeper, mut acks) = on_learner.lease_keep_alive(lease).await.unwrap();
    keeper.keep_alive().await.unwrap();
    assert_eq!(acks.message().await.unwrap().unwrap().ttl(), 30);

    let from_learner = collect(&mut learner_events, 21).await;
    let from_voter = collect(&mut voter_events, 21).await;
    assert_eq!(
        from_learner, from_voter,
        "a learner's watch differs from a voter's"
    );
    assert_eq!(from_learner[20].0, EventType::Delete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_learner_resumes_and_a_learner_behind_compaction_gets_a_snapshot() {
    // A short Raft log: compacted every 200 entries, keeping 50.
    let (mut d, _) = deployment(&[
        "--snapshot-count",
        "200",
        "--snapshot-catchup-entries",
        "50",
    ]);
    let mut w = kv(&d.voters[0].endpoint()).await;
    put(&mut w, "r/first", "1").await;
    wait_value(
        &d.learners[0].endpoint(),
        "r/first",
        "1",
        Duration::from_secs(10),
    )
    .await;

    // Kill the first learner (the chained one loses its upstream too), write past several
    // compactions, restart: both catch up (the first by snapshot: its next entry is gone).
    d.kill_learner(0);
    for i in 0..800 {
        put(&mut w, &format!("r/{}", i % 40), &format!("{i}")).await;
    }
    d.spawn_learner(0);
    for l in 0..2 {
        wait_value(
            &d.learners[l].endpoint(),
            "r/39",
            "799",
            Duration::from_secs(20),
        )
        .await;
    }
    assert!(
        d.learners[0].log_text().contains("installed a snapshot"),
        "the restarted learner did not catch up by snapshot:\n{}",
        d.learners[0].log_text()
    );
    // And it keeps following.
    put(&mut w, "r/after", "yes").await;
    wait_value(
        &d.learners[1].endpoint(),
        "r/after",
        "yes",
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_cut_off_from_upstream_refuses_bounded_reads_and_serves_stale_ones() {
    let mut d = Cluster::start_tiered(&[]);
    let leader = d.wait_leader();
    let follower = (leader + 1) % 3;
    let upstream = d.voters[follower].stream_addr();
    d.add_learner(&upstream, &[]);
    let mut w = kv(&d.voters[leader].endpoint()).await;
    put(&mut w, "b/k", "v1").await;
    let l = d.learners[0].endpoint();
    wait_value(&l, "b/k", "v1", Duration::from_secs(10)).await;
    let mut reader = kv(&l).await;
    // Connected: a bounded read within 1 s succeeds.
    let r = wait_until_async(
        Duration::from_secs(5),
        "a bounded read (1 s) answered by the connected learner",
        || {
            let mut reader = reader.clone();
            async move { get(&mut reader, "b/k", "bounded=1000").await }
        },
    )
    .await;
    assert_eq!(r.kvs[0].value, b"v1");
    // Status reports the lag: small while connected.
    // The lag its status reports, if at least 1 s.
    let lag = |l: String| async move {
        let mut m = MaintenanceClient::connect(format!("http://{l}"))
            .await
            .unwrap();
        let resp = m.status(StatusRequest {}).await.unwrap();
        assert!(resp.get_ref().is_learner);
        let ms: u64 = resp
            .metadata()
            .get("mango-lag-ms")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        if ms >= 1000 { Ok(ms) } else { Err(ms) }
    };
    assert!(lag(l.clone()).await.is_err(), "a connected learner lags");
    // Cut off: its only upstream dies; its status shows the lag growing past 1 s.
    d.kill(follower);
    wait_until_async(
        Duration::from_secs(10),
        "the cut-off learner's status to report a lag of 1 s",
        || lag(l.clone()),
    )
    .await;
    let err = get(&mut reader, "b/k", "bounded=1000").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("no older than 1000 ms"),
        "{}",
        err.message()
    );
    let stale = get(&mut reader, "b/k", "stale").await.unwrap();
    assert_eq!(stale.kvs[0].value, b"v1", "stale reads go on");
    let bad = get(&mut reader, "b/k", "fresh-please").await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}
