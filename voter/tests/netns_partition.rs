//! Partitions between hosts: three voters, each in its own network namespace (its own network
//! stack, as on three machines). The leader is cut off from its peers while clients still
//! reach it: the majority elects a new leader and takes a write; the old leader must not
//! answer a linearizable read with the value it still holds (its serializable read shows the
//! partition is real); once healed it serves the new value. Then a follower's cable is pulled
//! (nothing reaches it) and plugged back: it catches up.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::Cluster;
use harness::netns::Netns;

fn get(c: &Cluster, i: usize, key: &str, serializable: bool) -> Option<String> {
    let mut args = vec!["get", key, "--print-value-only", "--command-timeout=3s"];
    if serializable {
        args.push("--consistency=s");
    }
    let out = Cluster::etcdctl_at(&c.voters[i].endpoint(), &args);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_leader_cut_off_in_its_own_namespace_serves_no_stale_read_and_rejoins() {
    assert!(
        Netns::available(),
        "this test needs network namespaces (root, iproute2)"
    );
    let net = Netns::create(3);
    let c = Cluster::start_in(&net, &[]);
    c.etcdctl(&["put", "k", "v1"]);
    let old = c.wait_leader(Duration::from_secs(10));
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let old_id = c.status(old).unwrap()["header"]["member_id"].as_u64();

    net.cut_peers(old);
    wait_for(
        "a new leader in the majority",
        Duration::from_secs(15),
        || {
            let leaders: Vec<Option<u64>> = others
                .iter()
                .map(|&i| c.status(i).and_then(|s| s["leader"].as_u64()))
                .collect();
            leaders[0].is_some_and(|l| l != 0 && Some(l) != old_id) && leaders[0] == leaders[1]
        },
    );
    let majority = others
        .iter()
        .map(|&i| c.voters[i].endpoint())
        .collect::<Vec<_>>()
        .join(",");
    let out = Cluster::etcdctl_at(&majority, &["put", "k", "v2"]);
    assert!(out.status.success(), "the majority took no write: {out:?}");

    // The old leader still holds v1 (the partition is real) but must not serve it as
    // linearizable.
    assert_eq!(get(&c, old, "k", true).as_deref(), Some("v1"));
    let linearizable = get(&c, old, "k", false);
    assert_ne!(
        linearizable.as_deref(),
        Some("v1"),
        "the cut-off old leader served a stale linearizable read"
    );

    net.heal_peers(old);
    wait_for(
        "the old leader to serve v2",
        Duration::from_secs(20),
        || get(&c, old, "k", false).as_deref() == Some("v2"),
    );

    // Pull a follower's cable: nothing reaches it; the others go on; plugged back, it
    // catches up.
    let leader = c.wait_leader(Duration::from_secs(10));
    let follower = (0..3).find(|&i| i != leader).unwrap();
    net.unplug(follower);
    assert!(
        get(&c, follower, "k", true).is_none(),
        "an unplugged host answered"
    );
    let rest = (0..3)
        .filter(|&i| i != follower)
        .map(|i| c.voters[i].endpoint())
        .collect::<Vec<_>>()
        .join(",");
    let out = Cluster::etcdctl_at(&rest, &["put", "k", "v3"]);
    assert!(out.status.success(), "two of three took no write: {out:?}");
    net.plug(follower);
    wait_for("the follower to catch up", Duration::from_secs(20), || {
        get(&c, follower, "k", false).as_deref() == Some("v3")
    });
    drop(c);
}
