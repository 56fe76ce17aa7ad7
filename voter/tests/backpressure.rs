//! Back-pressure: when apply falls behind commit by more than the allowed gap, proposals are
//! refused with etcd's "too many requests" (ResourceExhausted) rather than queued without
//! bound; nothing acknowledged is lost, and writes succeed again once apply catches up.
//! Apply is slowed with a fault-injection flag and the gap lowered from etcd's 5,000.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use etcd_client::Client;
use mango_testkit::{Cluster, wait_until_async};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_apply_refuses_proposals_with_too_many_requests() {
    let c = Cluster::start_with(
        3,
        &["--max-apply-gap", "20", "--debug-apply-delay-ms", "200"],
    );
    let eps: Vec<String> = c.endpoints().split(',').map(str::to_string).collect();
    let client = Client::connect(eps, None).await.unwrap();

    // Waves of puts that do not wait for each other: commit runs ahead of the slowed apply.
    let mut tasks = Vec::new();
    for wave in 0..20 {
        for i in 0..20 {
            let mut cl = client.clone();
            let key = format!("bp/{wave:02}/{i:02}");
            tasks.push(tokio::spawn(async move {
                let r = cl.put(key.clone(), "v", None).await;
                (key, r)
            }));
        }
        // Pacing the load (the test): a new wave every 20 ms, faster than the slowed apply.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut ok, mut refused) = (Vec::new(), 0);
    for t in tasks {
        let (key, r) = t.await.unwrap();
        match r {
            Ok(_) => ok.push(key),
            Err(etcd_client::Error::GRpcStatus(s)) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                assert_eq!(s.message(), "etcdserver: too many requests");
                refused += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(
        refused > 0,
        "no proposal was refused ({} accepted)",
        ok.len()
    );
    assert!(!ok.is_empty(), "every proposal was refused");

    // Once apply catches up, writes go through again; every acknowledged put is there.
    wait_until_async(
        Duration::from_secs(10),
        "a write to go through again once apply caught up",
        || {
            let mut cl = client.clone();
            async move { cl.put("bp/after", "v", None).await }
        },
    )
    .await;
    let mut cl = client.clone();
    for key in &ok {
        let r = cl.get(key.as_str(), None).await.unwrap();
        assert_eq!(r.kvs().len(), 1, "acknowledged {key} is missing");
    }
}
