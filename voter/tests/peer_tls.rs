//! Peer mutual TLS against real voters (each on a loopback address of its own, never
//! 127.0.0.1, which the development CA's certificates always name): a voter whose certificate another
//! CA signed is added as a member yet never joins, and the cluster is unharmed; a peer whose
//! certificate (of the cluster CA) names another host than the member it claims to be has
//! its messages dropped, while the same message from a certificate that names the member's
//! host is stepped (so the drop is the host check's doing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mango_proto::mangopb::PeerBatch;
use mango_proto::mangopb::peer_client::PeerClient;
use mango_testkit::tls::{SecureCluster, etcdctl};
use mango_tls::{GrpcClientTls, Identity, Target, Verify};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "etcdctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every original voter up, the same leader at the same term, writes acknowledged.
fn assert_unharmed(c: &mut SecureCluster, leader: u64, term: u64, what: &str) {
    for i in 0..3 {
        assert!(
            !c.voters[i].exited(),
            "{what}: voter {i} exited:\n{}",
            c.voters[i].log_text()
        );
    }
    let (now_leader, li, now_term) = c.wait_leader();
    assert_eq!((now_leader, now_term), (leader, term), "{what}");
    assert_eq!(ok(&c.etcdctl(li, &["put", "after", what])).trim(), "OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_with_a_certificate_of_another_ca_cannot_join() {
    let mut c = SecureCluster::start(3, false);
    let (leader, li, term) = c.wait_leader();
    assert_eq!(ok(&c.etcdctl(li, &["put", "k", "v"])).trim(), "OK");
    // The operator adds a member; the process that comes up on its address holds a
    // certificate of another CA (it trusts the cluster's CA: it would gladly join).
    let i = c.add_slot();
    let host = c.voters[i].host.clone();
    let peer_url = c.voters[i].peer_url();
    ok(&c.etcdctl(
        li,
        &["member", "add", "v4", &format!("--peer-urls={peer_url}")],
    ));
    let (cert, key) = c.pki.issue_other("v4", &[&host]);
    let ca = c.pki.ca_file.clone();
    c.spawn_voter(i, "existing", &cert, &key, &ca);

    let rogue = c.voters[i].client_url();
    let rogue_flags = vec![format!("--cacert={}", c.pki.other_ca_file.display())];
    let joined = SecureCluster::wait_for(Duration::from_secs(6), || {
        let out = etcdctl(&rogue, &rogue_flags, &["get", "k", "--consistency=s"]);
        String::from_utf8_lossy(&out.stdout).contains('v')
    });
    assert!(!joined, "the voter of another CA received the data");
    assert_unharmed(&mut c, leader, term, "a voter of another CA");

    // The control: the same member with a certificate of the cluster CA joins and gets the
    // data, so what kept the first one out was its certificate.
    c.voters[i].kill();
    let _ = std::fs::remove_dir_all(&c.voters[i].data_dir);
    let (cert, key) = c.pki.issue("v4-genuine", &[&host]);
    c.spawn_voter(i, "existing", &cert, &key, &ca);
    let flags = c.etcdctl_flags();
    let joined = SecureCluster::wait_for(Duration::from_secs(20), || {
        let out = etcdctl(&rogue, &flags, &["get", "k", "--consistency=s"]);
        String::from_utf8_lossy(&out.stdout).contains('v')
    });
    assert!(
        joined,
        "the control member never joined:\n{}",
        c.voters[i].log_text()
    );
}

/// The cluster id as the voters log it at start.
fn cluster_id(c: &SecureCluster) -> u64 {
    let log = c.voters[0].log_text();
    let hex = log
        .split("cluster_id=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the voter logs its cluster id");
    u64::from_str_radix(hex, 16).expect("hex cluster id")
}

/// A heartbeat at `term` from member `from` to `to`, framed as a peer sends it (the group,
/// then raft's encoding).
fn heartbeat(from: u64, to: u64, term: u64) -> Vec<u8> {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.term = term;
    let mut out = 0u64.to_be_bytes().to_vec();
    out.extend(m.write_to_bytes().unwrap());
    out
}

/// A peer client of voter `to` presenting `cert`/`key`, trusting the cluster CA.
async fn peer_client(
    c: &SecureCluster,
    to: usize,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<PeerClient<tonic::transport::Channel>, mango_tls::ChannelError> {
    let identity = Identity::from_pem_files(cert, key).unwrap();
    let tls =
        GrpcClientTls::new(&Verify::Roots(c.pki.ca.roots().unwrap()), Some(&identity)).unwrap();
    let channel = Target::new(&c.voters[to].peer_url(), Some(&tls), None)?
        .connect()
        .await?;
    Ok(PeerClient::new(channel))
}

async fn send(client: &mut PeerClient<tonic::transport::Channel>, cluster: u64, m: Vec<u8>) {
    let batch = PeerBatch {
        messages: vec![m],
        cluster_id: cluster,
    };
    let _ = client.stream(tokio_stream::iter(vec![batch])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_certificate_for_another_host_is_dropped() {
    let mut c = SecureCluster::start(3, false);
    let (leader, li, term) = c.wait_leader();
    let ids: Vec<u64> = (0..3)
        .map(|i| {
            c.status(i).unwrap()["header"]["member_id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let target = (li + 1) % 3;
    let claimed = (li + 2) % 3;
    let cluster = cluster_id(&c);
    let storm = heartbeat(ids[claimed], ids[target], term + 1000);

    // A certificate of the cluster CA, for a host that is no member's: dropped.
    let (cert, key) = c.pki.issue("impostor", &["192.0.2.9"]);
    let mut impostor = peer_client(&c, target, &cert, &key).await.unwrap();
    for _ in 0..20 {
        send(&mut impostor, cluster, storm.clone()).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_unharmed(&mut c, leader, term, "a certificate for another host");

    // A certificate of another CA: refused at the handshake.
    let claimed_host = c.voters[claimed].host.clone();
    let (cert, key) = c.pki.issue_other("foreign", &[&claimed_host]);
    if let Ok(mut foreign) = peer_client(&c, target, &cert, &key).await {
        let batch = PeerBatch {
            messages: vec![storm.clone()],
            cluster_id: cluster,
        };
        assert!(
            foreign
                .stream(tokio_stream::iter(vec![batch]))
                .await
                .is_err(),
            "a peer of another CA was heard"
        );
    }
    assert_unharmed(&mut c, leader, term, "a certificate of another CA");

    // The control: the same message under a certificate naming the claimed member's host is
    // stepped (the target's term jumps), so what dropped it above was the host check.
    let (cert, key) = c.pki.issue("claimed-host", &[&claimed_host]);
    let mut genuine = peer_client(&c, target, &cert, &key).await.unwrap();
    send(&mut genuine, cluster, storm).await;
    let stepped = SecureCluster::wait_for(Duration::from_secs(5), || {
        c.status(target)
            .and_then(|st| st["header"]["raft_term"].as_u64())
            .is_some_and(|t| t >= term + 1000)
    });
    assert!(stepped, "the control message was not stepped either");
}
