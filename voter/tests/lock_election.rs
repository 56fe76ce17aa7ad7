//! etcd's v3lock and v3election services against a real 3-voter cluster, through the
//! `etcd-client` crate (which calls those services): lock holders never overlap (holding
//! intervals recorded), a holder whose lease is revoked frees the lock, and an election has one
//! leader at a time, proclaims, resigns and is observed in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, LeaderKey, LockOptions, ProclaimOptions, ResignOptions};
use mango_testkit::Cluster;

async fn client(c: &Cluster) -> Client {
    let eps: Vec<String> = c.endpoints().split(',').map(str::to_string).collect();
    Client::connect(eps, None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_holders_never_overlap() {
    let c = Cluster::start(3);
    let cl = client(&c).await;
    let intervals: Arc<Mutex<Vec<(Instant, Instant, usize)>>> = Arc::default();
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let mut cl = cl.clone();
        let intervals = intervals.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let lease = cl.lease_grant(10, None).await.unwrap().id();
                let held = cl
                    .lock("the-lock", Some(LockOptions::new().with_lease(lease)))
                    .await
                    .unwrap();
                let start = Instant::now();
                // The test: hold the lock a while, so overlapping holds would show.
                tokio::time::sleep(Duration::from_millis(30)).await;
                let end = Instant::now();
                intervals.lock().unwrap().push((start, end, worker));
                cl.unlock(held.key()).await.unwrap();
                cl.lease_revoke(lease).await.unwrap();
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("lock workers finished")
            .unwrap();
    }
    let mut all = intervals.lock().unwrap().clone();
    assert_eq!(all.len(), 20);
    all.sort_by_key(|(start, _, _)| *start);
    for pair in all.windows(2) {
        let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
        assert!(
            end <= start,
            "worker {a} held the lock until {end:?}, worker {b} had it from {start:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_holder_frees_the_lock_and_a_missing_lease_is_refused() {
    let c = Cluster::start(3);
    let mut cl = client(&c).await;
    let first = cl.lease_grant(30, None).await.unwrap().id();
    let second = cl.lease_grant(30, None).await.unwrap().id();
    let held = cl
        .lock("l2", Some(LockOptions::new().with_lease(first)))
        .await
        .unwrap();
    assert!(held.key().starts_with(b"l2/"));
    let mut waiter = cl.clone();
    let waiting = tokio::spawn(async move {
        waiter
            .lock("l2", Some(LockOptions::new().with_lease(second)))
            .await
    });
    // The test: a window in which the second locker must not get the held lock (nothing
    // to wait for: it is the absence of an event).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the second locker got a held lock");
    // The holder's lease goes (as when its session dies): the waiter gets the lock.
    cl.lease_revoke(first).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiter got the lock")
        .unwrap()
        .unwrap();
    assert_eq!(got.key(), format!("l2/{second:x}").as_bytes());

    let err = cl
        .lock("l3", Some(LockOptions::new().with_lease(0x7777)))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("requested lease not found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_has_one_leader_proclaims_resigns_and_is_observed() {
    let c = Cluster::start(3);
    let mut cl = client(&c).await;
    let a = cl.lease_grant(30, None).await.unwrap().id();
    let b = cl.lease_grant(30, None).await.unwrap().id();

    let err = cl.leader("e1").await.unwrap_err();
    assert!(err.to_string().contains("election: no leader"), "{err}");

    let mut observer = cl.observe("e1").await.unwrap();
    let won = cl.campaign("e1", "alpha", a).await.unwrap();
    let leader_a: LeaderKey = won.leader().unwrap().clone();
    assert_eq!(leader_a.key(), format!("e1/{a:x}").as_bytes());

    // b campaigns and waits while a leads.
    let mut other = cl.clone();
    let b_campaign = tokio::spawn(async move { other.campaign("e1", "beta", b).await });
    // The test: a window in which b must not win while a leads (the absence of an event).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b_campaign.is_finished(), "two leaders at once");

    cl.proclaim(
        "alpha-2",
        Some(ProclaimOptions::new().with_leader(leader_a.clone())),
    )
    .await
    .unwrap();
    let now = cl.leader("e1").await.unwrap();
    assert_eq!(now.kv().unwrap().value(), b"alpha-2");

    cl.resign(Some(ResignOptions::new().with_leader(leader_a.clone())))
        .await
        .unwrap();
    let won_b = tokio::time::timeout(Duration::from_secs(10), b_campaign)
        .await
        .expect("b became leader")
        .unwrap()
        .unwrap();
    let leader_b = won_b.leader().unwrap().clone();
    assert_eq!(
        cl.leader("e1").await.unwrap().kv().unwrap().value(),
        b"beta"
    );

    // The old leader can no longer proclaim.
    let err = cl
        .proclaim("stale", Some(ProclaimOptions::new().with_leader(leader_a)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("election: not leader"), "{err}");

    // Observe saw alpha, alpha-2, beta in that order.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(5), observer.message())
            .await
            .expect("observe delivered")
            .unwrap()
            .unwrap();
        seen.push(String::from_utf8(msg.kv().unwrap().value().to_vec()).unwrap());
    }
    assert_eq!(seen, ["alpha", "alpha-2", "beta"]);
    cl.resign(Some(ResignOptions::new().with_leader(leader_b)))
        .await
        .unwrap();
}
