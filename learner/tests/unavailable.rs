//! A learner-linearizable read while the voters have no leader answers `Unavailable` (etcd's
//! code for "try again, maybe elsewhere"), not `Internal`: the proxy and clients retry on
//! `Unavailable` only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mango_testkit::{Cluster, get, kv, put, wait_value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_linearizable_read_during_an_election_is_unavailable() {
    let mut d = Cluster::start_tiered(&["--heartbeat-interval", "50", "--election-timeout", "500"]);
    let leader = d.wait_leader();
    let follower = (leader + 1) % 3;
    let upstream = d.voters[follower].stream_addr();
    d.add_learner(&upstream, &[]);
    let mut w = kv(&d.voters[leader].endpoint()).await;
    put(&mut w, "k", "v").await;
    let learner = d.learners[0].endpoint();
    wait_value(&learner, "k", "v", Duration::from_secs(10)).await;
    let mut r = kv(&learner).await;
    get(&mut r, "k", "learner-linearizable").await.unwrap();

    // The leader and the other follower go: the learner's upstream stays up but campaigns
    // without a quorum, for as long as the test runs.
    d.kill(leader);
    d.kill((leader + 2) % 3);
    let status = tokio::time::timeout(
        Duration::from_secs(15),
        get(&mut r, "k", "learner-linearizable"),
    )
    .await
    .expect("the read is answered within the request timeout")
    .expect_err("no read index can be had without a leader");
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{status:?}; learner log:\n{}",
        d.learners[0].log_text()
    );
    // Stale reads go on.
    assert_eq!(get(&mut r, "k", "stale").await.unwrap().kvs.len(), 1);
}
