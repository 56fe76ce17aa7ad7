//! Membership: a fourth voter added after the log was compacted catches up by snapshot; then
//! it is removed. A Raft learner is added and promoted. A member removed and added back at the
//! same peer URL is a new member with a new id.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::Cluster;

fn put_many(endpoints: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let eps: Vec<String> = endpoints
            .split(',')
            .map(|e| format!("http://{e}"))
            .collect();
        let mut client = etcd_client::Client::connect(eps, None).await.unwrap();
        for i in 0..n {
            client
                .put(format!("bulk/{i:05}"), format!("value-{i}"), None)
                .await
                .unwrap();
        }
    });
}

/// `member list` asked of the three founding voters only: a member that just joined answers
/// from its own registry, which is empty until its snapshot arrives, and a removed one keeps
/// the registry it had.
fn founders_member_list(c: &Cluster) -> String {
    let founders = (0..3)
        .map(|i| c.voters[i].endpoint())
        .collect::<Vec<_>>()
        .join(",");
    let out = Cluster::etcdctl_at(&founders, &["member", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`founders_member_list`] once it satisfies `ok` (a founder that has not yet applied the
/// latest change answers the list before it), within 10 s.
fn founders_member_list_until(c: &Cluster, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = founders_member_list(c);
        if ok(&list) || std::time::Instant::now() > deadline {
            return list;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn member_added_after_log_compaction_catches_up_by_snapshot_then_is_removed() {
    let mut c = Cluster::start_with(
        3,
        &["--snapshot-count", "50", "--snapshot-catchup-entries", "10"],
    );
    put_many(&c.endpoints(), 400);
    let new = c.add_slot();
    let peer = c.voters[new].peer_url();
    // Ask a follower: every node, the leader included, must learn where the newcomer is.
    let leader = c.wait_leader(Duration::from_secs(10));
    let follower = c.voters[(leader + 1) % 3].endpoint();
    let out = Cluster::etcdctl_at(
        &follower,
        &["member", "add", "v4", &format!("--peer-urls={peer}")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added = String::from_utf8(out.stdout).unwrap();
    assert!(added.contains("Member"), "{added}");
    c.spawn(new, "existing");

    // The newcomer serves every key locally once it has caught up.
    c.wait_local_count(new, "bulk/", 400, Duration::from_secs(30));
    assert!(
        c.log_of(new).contains("installed a snapshot"),
        "v4 should have caught up by snapshot:\n{}",
        c.log_of(new)
    );
    let list = founders_member_list_until(&c, |l| l.lines().count() == 4);
    assert_eq!(list.lines().count(), 4, "{list}");
    // It takes part in consensus: writes still commit with it in the quorum set.
    c.etcdctl(&["put", "after-join", "yes"]);

    let id = list
        .lines()
        .find(|l| l.contains(&peer))
        .and_then(|l| l.split(',').next())
        .unwrap()
        .to_string();
    c.etcdctl(&["member", "remove", &id]);
    let list = founders_member_list_until(&c, |l| l.lines().count() == 3);
    assert_eq!(list.lines().count(), 3, "{list}");
    c.kill(new);
    c.etcdctl(&["put", "after-remove", "yes"]);
}

#[test]
fn a_raft_learner_is_added_catches_up_and_is_promoted() {
    let mut c = Cluster::start(3);
    put_many(&c.endpoints(), 50);
    let new = c.add_slot();
    let peer = c.voters[new].peer_url();
    let out = c.etcdctl(&[
        "member",
        "add",
        "v4",
        "--learner",
        &format!("--peer-urls={peer}"),
    ]);
    assert!(out.contains("Member"), "{out}");
    c.spawn(new, "existing");
    let list = founders_member_list_until(&c, |l| l.contains(&peer));
    let line = list
        .lines()
        .find(|l| l.contains(&peer))
        .unwrap()
        .to_string();
    assert!(line.ends_with("true"), "a learner: {line}");
    let id = line.split(',').next().unwrap().to_string();
    // It applies the log like everyone, and reports itself as a learner.
    c.wait_local_count(new, "bulk/", 50, Duration::from_secs(20));
    let status = c.status(new).unwrap();
    assert_eq!(status["isLearner"], true, "{status}");
    // Promotion is the leader's to do; etcdctl may reach a follower, which answers with
    // etcd's error, so ask the leader.
    let leader = c.wait_leader(Duration::from_secs(10));
    let out = Cluster::etcdctl_at(&c.voters[leader].endpoint(), &["member", "promote", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = founders_member_list_until(&c, |l| {
        l.lines()
            .any(|line| line.contains(&peer) && line.ends_with("false"))
    });
    let line = list.lines().find(|l| l.contains(&peer)).unwrap();
    assert!(line.ends_with("false"), "promoted: {line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .status(new)
        .map(|s| s["isLearner"] == true)
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "v4 still reports itself a learner"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The member list as the voters `at` see it, once it satisfies `ok` (within 10 s).
fn member_list_at_until(c: &Cluster, at: &[usize], ok: impl Fn(&str) -> bool) -> String {
    let endpoints = at
        .iter()
        .map(|&i| c.voters[i].endpoint())
        .collect::<Vec<_>>()
        .join(",");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Cluster::etcdctl_at(&endpoints, &["member", "list"]);
        let list = String::from_utf8_lossy(&out.stdout).into_owned();
        if (out.status.success() && ok(&list)) || Instant::now() > deadline {
            return list;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn id_at(list: &str, peer: &str) -> Option<String> {
    list.lines()
        .find(|l| l.contains(peer))
        .and_then(|l| l.split(',').next())
        .map(str::to_string)
}

/// As with etcd, a machine removed and added back at the same peer URL (its data wiped) is a
/// new member with an id of its own: with its old id and none of its old votes it could vote
/// twice in one term. It learns the id from the others when it joins, and works as a voter.
#[test]
fn a_member_removed_and_added_back_at_the_same_peer_url_gets_a_new_id() {
    let mut c = Cluster::start(3);
    put_many(&c.endpoints(), 50);
    let leader = c.wait_leader(Duration::from_secs(10));
    let victim = (leader + 1) % 3;
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let peer = c.voters[victim].peer_url();
    let list = member_list_at_until(&c, &survivors, |l| l.lines().count() == 3);
    let old_id = id_at(&list, &peer).unwrap();
    let at_survivors = survivors
        .iter()
        .map(|&i| c.voters[i].endpoint())
        .collect::<Vec<_>>()
        .join(",");
    let out = Cluster::etcdctl_at(&at_survivors, &["member", "remove", &old_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    member_list_at_until(&c, &survivors, |l| l.lines().count() == 2);
    c.kill(victim);
    std::fs::remove_dir_all(&c.voters[victim].data_dir).unwrap();

    let out = Cluster::etcdctl_at(
        &at_survivors,
        &[
            "member",
            "add",
            &c.voters[victim].name,
            &format!("--peer-urls={peer}"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.spawn(victim, "existing");
    c.wait_local_count(victim, "bulk/", 50, Duration::from_secs(30));
    let list = member_list_at_until(&c, &survivors, |l| l.lines().count() == 3);
    let new_id = id_at(&list, &peer).unwrap();
    assert_ne!(
        new_id, old_id,
        "the machine came back as the member it was:\n{list}"
    );
    // It is a voter: with the other follower stopped, writes still commit.
    let other = survivors.iter().copied().find(|&i| i != leader).unwrap();
    c.kill(other);
    let rest = [leader, victim]
        .iter()
        .map(|&i| c.voters[i].endpoint())
        .collect::<Vec<_>>()
        .join(",");
    let out = Cluster::etcdctl_at(&rest, &["--command-timeout=10s", "put", "after", "yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Restarted, it runs with the id it was given.
    c.kill(victim);
    c.spawn(victim, "existing");
    c.wait_local_count(victim, "after", 1, Duration::from_secs(20));
    let log = c.log_of(victim);
    assert!(
        log.contains(new_id.trim_start_matches("0x")),
        "the restarted member does not say it is {new_id}"
    );
}

/// The leading member removed (etcdctl asked of the leader itself): the other two elect a
/// leader of their own and take writes, and the removed one stops leading without a panic.
/// raft-rs 0.7 leaves a removed leader leading with no progress of its own, and its next
/// append response panicked (found by the simulator, seed 840).
#[test]
fn the_leading_member_removed_steps_down_and_the_rest_go_on() {
    let c = Cluster::start(3);
    put_many(&c.endpoints(), 20);
    let leader = c.wait_leader(Duration::from_secs(10));
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let list = member_list_at_until(&c, &rest, |l| l.lines().count() == 3);
    let id = id_at(&list, &c.voters[leader].peer_url()).unwrap();
    let out = Cluster::etcdctl_at(&c.voters[leader].endpoint(), &["member", "remove", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    member_list_at_until(&c, &rest, |l| l.lines().count() == 2);
    let at_rest = rest
        .iter()
        .map(|&i| c.voters[i].endpoint())
        .collect::<Vec<_>>()
        .join(",");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Cluster::etcdctl_at(&at_rest, &["put", "after-removal", "yes"]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two remaining members take no write: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for &i in &rest {
        c.wait_local_count(i, "after-removal", 1, Duration::from_secs(10));
    }
    // Heartbeats and append responses keep arriving at the removed member for a while.
    std::thread::sleep(Duration::from_secs(2));
    let log = c.log_of(leader);
    assert!(
        !log.contains("panicked"),
        "the removed leader panicked:\n{log}"
    );
    let status = c.status(leader);
    assert!(
        status.is_some(),
        "the removed member no longer answers Status:\n{log}"
    );
}
