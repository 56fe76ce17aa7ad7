//! Partitions between hosts: three voters, each in its own network namespace (its own network
//! stack, as on three machines). The leader is cut off from its peers while clients still
//! reach it: the majority elects a new leader and takes a write; the old leader must not
//! answer a linearizable read with the value it still holds (its serializable read shows the
//! partition is real); once healed it serves the new value. Then a follower's cable is pulled
//! (nothing reaches it) and plugged back: it catches up.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mango_testkit::{Cluster, Netns, etcdctl, wait_until};

fn get(c: &Cluster, i: usize, key: &str, serializable: bool) -> Option<String> {
    let mut args = vec!["get", key, "--print-value-only", "--command-timeout=3s"];
    if serializable {
        args.push("--consistency=s");
    }
    let out = etcdctl(&c.voters[i].endpoint(), &args);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
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
    let old = c.wait_leader();
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let old_id = c.member_id(old);
    assert!(old_id.is_some());

    net.cut_peers(old);
    c.wait_new_leader(&others, old_id, Duration::from_secs(15));
    let majority = c.endpoints_of(&others);
    let out = etcdctl(&majority, &["put", "k", "v2"]);
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
    wait_until(
        Duration::from_secs(20),
        "the old leader to serve v2",
        || get(&c, old, "k", false).as_deref() == Some("v2"),
    );

    // Pull a follower's cable: nothing reaches it; the others go on; plugged back, it
    // catches up.
    let leader = c.wait_leader();
    let follower = (0..3).find(|&i| i != leader).unwrap();
    net.unplug(follower);
    assert!(
        get(&c, follower, "k", true).is_none(),
        "an unplugged host answered"
    );
    let rest: Vec<usize> = (0..3).filter(|&i| i != follower).collect();
    let out = etcdctl(&c.endpoints_of(&rest), &["put", "k", "v3"]);
    assert!(out.status.success(), "two of three took no write: {out:?}");
    net.plug(follower);
    wait_until(Duration::from_secs(20), "the follower to catch up", || {
        get(&c, follower, "k", false).as_deref() == Some("v3")
    });
    drop(c);
}
