//! A partition: the leader's peer traffic is cut (each voter in its own network namespace,
//! the cut a firewall inside the leader's, so clients still reach it).
//! The majority elects a new leader and keeps taking writes; the isolated voter takes none;
//! after healing, everyone converges and no acknowledged write is lost.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mango_testkit::{Cluster, Netns, etcdctl};

#[test]
fn isolated_leader_is_replaced_and_the_partition_heals_without_losing_writes() {
    assert!(
        Netns::available(),
        "this test needs network namespaces (root, iproute2, iptables)"
    );
    let net = Netns::create(3);
    let c = Cluster::start_in(&net, &[]);
    for i in 0..20 {
        c.etcdctl(&["put", &format!("before/{i:02}"), "v"]);
    }
    let old = c.wait_leader();
    let old_id = c.member_id(old);
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    net.cut_peers(old);

    // The majority elects a new leader.
    let majority = c.endpoints_of(&others);
    let new_leader = c.wait_new_leader(&others, old_id, Duration::from_secs(15));
    assert_ne!(new_leader, 0);
    // Writes to the majority succeed.
    for i in 0..20 {
        let out = etcdctl(&majority, &["put", &format!("during/{i:02}"), "v"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The isolated voter cannot commit anything.
    let isolated = c.voters[old].endpoint();
    let out = etcdctl(&isolated, &["--command-timeout=3s", "put", "isolated", "x"]);
    assert!(
        !out.status.success(),
        "a write on the isolated side succeeded"
    );

    net.heal_peers(old);
    // Everyone converges: the old leader serves the majority's writes locally.
    c.wait_local_count(old, "during/", 20, Duration::from_secs(20));
    let all = c.etcdctl(&["get", "", "--from-key", "--keys-only"]);
    assert_eq!(all.lines().filter(|l| !l.is_empty()).count(), 40, "{all}");
    assert!(
        !all.contains("isolated"),
        "the refused write must not appear"
    );
}
