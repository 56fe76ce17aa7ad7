//! Membership: a fourth voter added after the log was compacted catches up by snapshot; then
//! it is removed. A Raft learner is added and promoted. A member removed and added back at the
//! same peer URL is a new member with a new id.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mango_testkit::{Cluster, etcdctl, wait_until};

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
/// [`member_list_at_until`] the founders, once it satisfies `ok` (a founder that has not yet
/// applied the latest change answers the list before it).
fn founders_member_list_until(c: &Cluster, what: &str, ok: impl Fn(&str) -> bool) -> String {
    member_list_at_until(c, &[0, 1, 2], what, ok)
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
    let leader = c.wait_leader();
    let follower = c.voters[(leader + 1) % 3].endpoint();
    let out = etcdctl(
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
    c.join(new);

    // The newcomer serves every key locally once it has caught up.
    c.wait_local_count(new, "bulk/", 400, Duration::from_secs(30));
    assert!(
        c.log_of(new).contains("installed a snapshot"),
        "v4 should have caught up by snapshot:\n{}",
        c.log_of(new)
    );
    let list = founders_member_list_until(&c, "4 members", |l| l.lines().count() == 4);
    // It takes part in consensus: writes still commit with it in the quorum set.
    c.etcdctl(&["put", "after-join", "yes"]);

    let id = list
        .lines()
        .find(|l| l.contains(&peer))
        .and_then(|l| l.split(',').next())
        .unwrap()
        .to_string();
    c.etcdctl(&["member", "remove", &id]);
    founders_member_list_until(&c, "3 members", |l| l.lines().count() == 3);
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
    c.join(new);
    let list = founders_member_list_until(&c, "the learner listed", |l| l.contains(&peer));
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
    let leader = c.wait_leader();
    let out = etcdctl(&c.voters[leader].endpoint(), &["member", "promote", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    founders_member_list_until(&c, "v4 listed as promoted", |l| {
        l.lines()
            .any(|line| line.contains(&peer) && line.ends_with("false"))
    });
    wait_until(
        Duration::from_secs(10),
        "v4 to report itself a voter",
        || c.status(new).is_some_and(|s| s["isLearner"] != true),
    );
}

/// `member list` as the voters `at` see it, once it satisfies `ok` (within 10 s).
fn member_list_at_until(
    c: &Cluster,
    at: &[usize],
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let endpoints = c.endpoints_of(at);
    wait_until(
        Duration::from_secs(10),
        format_args!("`member list` at voters {at:?} to show {what}"),
        || {
            let out = etcdctl(&endpoints, &["member", "list"]);
            let list = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && ok(&list) {
                Ok(list)
            } else {
                Err(list + &String::from_utf8_lossy(&out.stderr))
            }
        },
    )
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
    let leader = c.wait_leader();
    let victim = (leader + 1) % 3;
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let peer = c.voters[victim].peer_url();
    let list = member_list_at_until(&c, &survivors, "3 members", |l| l.lines().count() == 3);
    let old_id = id_at(&list, &peer).unwrap();
    let at_survivors = c.endpoints_of(&survivors);
    let out = etcdctl(&at_survivors, &["member", "remove", &old_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    member_list_at_until(&c, &survivors, "2 members", |l| l.lines().count() == 2);
    c.kill(victim);
    std::fs::remove_dir_all(&c.voters[victim].data_dir).unwrap();

    let out = etcdctl(
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
    c.join(victim);
    c.wait_local_count(victim, "bulk/", 50, Duration::from_secs(30));
    let list = member_list_at_until(&c, &survivors, "3 members", |l| l.lines().count() == 3);
    let new_id = id_at(&list, &peer).unwrap();
    assert_ne!(
        new_id, old_id,
        "the machine came back as the member it was:\n{list}"
    );
    // It is a voter: with the other follower stopped, writes still commit.
    let other = survivors.iter().copied().find(|&i| i != leader).unwrap();
    c.kill(other);
    let rest = c.endpoints_of(&[leader, victim]);
    let out = etcdctl(&rest, &["--command-timeout=10s", "put", "after", "yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Restarted, it runs with the id it was given.
    c.kill(victim);
    c.spawn(victim);
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
    let leader = c.wait_leader();
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let list = member_list_at_until(&c, &rest, "3 members", |l| l.lines().count() == 3);
    let id = id_at(&list, &c.voters[leader].peer_url()).unwrap();
    let out = etcdctl(&c.voters[leader].endpoint(), &["member", "remove", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    member_list_at_until(&c, &rest, "2 members", |l| l.lines().count() == 2);
    let at_rest = c.endpoints_of(&rest);
    wait_until(
        Duration::from_secs(20),
        "the two remaining members to take a write",
        || {
            let out = etcdctl(&at_rest, &["put", "after-removal", "yes"]);
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    );
    for &i in &rest {
        c.wait_local_count(i, "after-removal", 1, Duration::from_secs(10));
    }
    // No need to give it more time: the other two answered its heartbeats until they
    // elected a leader of their own, which the write above needed, so every append
    // response that could have made a removed leader panic has arrived (without the fix,
    // the write above never goes through).
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
