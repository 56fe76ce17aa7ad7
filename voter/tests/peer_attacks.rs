//! What a stranger on the peer port can no longer do (issue 16's reproductions, each now a
//! regression test): a heartbeat from a non-member with a commit index far beyond the log
//! used to abort the voter (raft-rs `fatal!`); a flood of high-term heartbeats from a
//! non-member deposed the leader; a snapshot with garbage data stopped the Raft loop; a batch
//! of another cluster was stepped. Each is refused now, and the cluster carries on: every
//! voter up, the same leader at the same term, writes acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mango_proto::mangopb::peer_client::PeerClient;
use mango_proto::mangopb::{PeerBatch, SnapshotChunk};
use mango_testkit::Cluster;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType, Snapshot};

/// The leader's member id, its index and the term, as `endpoint status` reports them.
fn leader_and_term(c: &Cluster) -> (u64, usize, u64) {
    let i = c.wait_leader();
    let st = c.status(i).expect("status");
    (
        st["leader"].as_u64().expect("leader"),
        i,
        st["header"]["raft_term"].as_u64().expect("term"),
    )
}

fn member_ids(c: &Cluster) -> Vec<u64> {
    (0..c.voters.len())
        .filter_map(|i| c.status(i))
        .filter_map(|st| st["header"]["member_id"].as_u64())
        .collect()
}

/// A Raft message as a peer frames it: the group, then raft's own encoding.
fn framed(group: u64, m: &Message) -> Vec<u8> {
    let mut out = group.to_be_bytes().to_vec();
    out.extend(m.write_to_bytes().unwrap());
    out
}

fn heartbeat(from: u64, to: u64, term: u64, commit: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.term = term;
    m.commit = commit;
    m
}

async fn peer(c: &Cluster, i: usize) -> PeerClient<tonic::transport::Channel> {
    PeerClient::connect(c.voters[i].peer_url()).await.unwrap()
}

/// The cluster id as the voters know it (from their log line at start).
fn cluster_id(c: &Cluster) -> u64 {
    let log = c.log_of(0);
    let hex = log
        .split("cluster_id=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the voter logs its cluster id");
    u64::from_str_radix(hex, 16).expect("hex cluster id")
}

/// Sends `messages` as one batch to voter `i`, as cluster `cluster`; the stream's answer.
async fn send(
    c: &Cluster,
    i: usize,
    cluster: u64,
    messages: Vec<Vec<u8>>,
) -> Result<(), tonic::Status> {
    let batch = PeerBatch {
        messages,
        cluster_id: cluster,
    };
    peer(c, i)
        .await
        .stream(tokio_stream::iter(vec![batch]))
        .await
        .map(|_| ())
}

fn assert_unharmed(c: &mut Cluster, leader: u64, term: u64, what: &str) {
    for i in 0..c.voters.len() {
        let exited = c.voters[i].proc.as_mut().and_then(|p| p.exited());
        assert!(
            exited.is_none(),
            "{what}: voter {i} exited:\n{}",
            c.log_of(i)
        );
    }
    let (now_leader, _, now_term) = leader_and_term(c);
    assert_eq!(
        (now_leader, now_term),
        (leader, term),
        "{what}: leadership changed"
    );
    assert_eq!(c.etcdctl(&["put", "after", what]).trim(), "OK", "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_the_peer_port_are_refused_and_the_cluster_carries_on() {
    let mut c = Cluster::start(3);
    let (leader, li, term) = leader_and_term(&c);
    let follower = (li + 1) % 3;
    let follower_id = member_ids(&c)[follower];
    let cluster = cluster_id(&c);
    let stranger = 0x5eed;

    // A non-member's heartbeat committing far beyond the log (used to abort the voter).
    send(
        &c,
        follower,
        cluster,
        vec![framed(
            0,
            &heartbeat(stranger, follower_id, 50, 1_000_000_000),
        )],
    )
    .await
    .unwrap();
    // The same from a real member's id, spoofed: raft-rs would abort on it, so it is dropped.
    send(
        &c,
        follower,
        cluster,
        vec![framed(
            0,
            &heartbeat(leader, follower_id, term, 1_000_000_000),
        )],
    )
    .await
    .unwrap();
    assert_unharmed(&mut c, leader, term, "a heartbeat beyond the log");

    // A non-member's high-term heartbeats for 2 s at every voter (used to depose the leader).
    let ids = member_ids(&c);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        for (i, &to) in ids.iter().enumerate() {
            let _ = send(
                &c,
                i,
                cluster,
                vec![framed(0, &heartbeat(stranger, to, 1000, 0))],
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_unharmed(&mut c, leader, term, "a high-term flood");

    // A batch of another cluster ends the stream, unstepped.
    let other = send(
        &c,
        follower,
        cluster ^ 1,
        vec![framed(0, &heartbeat(leader, follower_id, term, 0))],
    )
    .await;
    assert_eq!(other.unwrap_err().code(), tonic::Code::PermissionDenied);

    // A snapshot with garbage data and a higher term, from a non-member and from a spoofed
    // leader: refused before Raft sees it (used to stop the Raft loop: "bad magic").
    for from in [stranger, leader] {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.from = from;
        m.to = follower_id;
        m.term = term;
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 1_000_000;
        snap.mut_metadata().term = term;
        m.set_snapshot(snap);
        let chunks = vec![SnapshotChunk {
            group: 0,
            message: m.write_to_bytes().unwrap(),
            data: b"not a snapshot at all".to_vec(),
            cluster_id: cluster,
        }];
        let refused = peer(&c, follower)
            .await
            .snapshot(tokio_stream::iter(chunks))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
    }
    assert_unharmed(&mut c, leader, term, "garbage snapshots");
    let staged: Vec<_> = std::fs::read_dir(c.voters[follower].data_dir.join("member/snap"))
        .unwrap()
        .collect();
    assert!(
        staged.is_empty(),
        "refused snapshots left files behind: {staged:?}"
    );
}
