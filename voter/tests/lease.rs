//! Leases against real processes: the same etcdctl lease script against etcd 3.4 and a
//! 3-voter mango (lease ids and remaining seconds normalised), keep-alives through a follower
//! (forwarded to the leader), expiry deleting attached keys in one revision on every member,
//! and expiry across a leader failover (never early, and done by the new leader).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, PutOptions};
use mango_testkit::{Cluster, etcdctl, wait_until, wait_until_async};

/// Runs the lease script against `all` (every endpoint) and `one` (a follower's, for the
/// keep-alives that must be forwarded); returns the normalised transcript.
fn lease_script(all: &str, one: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let mut transcript = Vec::new();
    let mut run = |endpoints: &str, args: &[&str], ids: &mut Vec<String>| -> String {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                let mut a = a.to_string();
                for (i, id) in ids.iter().enumerate() {
                    a = a.replace(&format!("{{L{}}}", i + 1), id);
                }
                a
            })
            .collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = etcdctl(endpoints, &refs);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // A grant names a new lease: remember it to use and to normalise.
        if let Some(id) = stdout
            .strip_prefix("lease ")
            .and_then(|r| r.split(' ').next())
            .filter(|_| stdout.contains("granted with TTL") && !stdout.contains("remaining"))
        {
            ids.push(id.to_string());
        }
        let norm = |text: &str| -> Vec<String> {
            text.lines()
                .map(|l| {
                    let mut l = l.to_string();
                    for (i, id) in ids.iter().enumerate() {
                        l = l.replace(id, &format!("<L{}>", i + 1));
                    }
                    // remaining(57s): a few seconds may pass; checked to be close to the TTL.
                    if let Some(start) = l.find("remaining(") {
                        let rest = &l[start + "remaining(".len()..];
                        if let Some(end) = rest.find("s)") {
                            let secs: i64 = rest[..end].parse().unwrap_or(-100);
                            assert!((50..=60).contains(&secs), "remaining {secs}s in {l:?}");
                            l = format!("{}remaining(<n>s){}", &l[..start], &rest[end + 2..]);
                        }
                    }
                    // etcd lists a lease's keys in map order: sort them.
                    if let Some(start) = l.find("attached keys([") {
                        let rest = &l[start + "attached keys([".len()..];
                        if let Some(end) = rest.find("])") {
                            let mut keys: Vec<&str> = rest[..end].split(' ').collect();
                            keys.sort_unstable();
                            l = format!(
                                "{}attached keys([{}]){}",
                                &l[..start],
                                keys.join(" "),
                                &rest[end + 2..]
                            );
                        }
                    }
                    // etcdctl's own log lines (JSON) carry timestamps and client ids.
                    if let Ok(serde_json::Value::Object(mut map)) =
                        serde_json::from_str::<serde_json::Value>(&l)
                    {
                        for k in ["ts", "target"] {
                            map.remove(k);
                        }
                        l = serde_json::Value::Object(map).to_string();
                    }
                    l
                })
                .collect()
        };
        let mut command = format!("$ etcdctl {}", args.join(" "));
        for (i, id) in ids.iter().enumerate() {
            command = command.replace(id, &format!("<L{}>", i + 1));
        }
        transcript.push(command);
        transcript.extend(norm(&stdout).into_iter().map(|l| format!("  {l}")));
        transcript.extend(norm(&stderr).into_iter().map(|l| format!("  ! {l}")));
        transcript.push(format!("  exit {}", out.status.code().unwrap_or(-1)));
        stdout
    };
    run(all, &["lease", "grant", "60"], &mut ids);
    run(all, &["put", "k1", "v1", "--lease={L1}"], &mut ids);
    run(all, &["put", "k2", "v2", "--lease={L1}"], &mut ids);
    run(all, &["lease", "timetolive", "{L1}", "--keys"], &mut ids);
    run(one, &["lease", "timetolive", "{L1}"], &mut ids);
    run(one, &["lease", "keep-alive", "--once", "{L1}"], &mut ids);
    run(all, &["lease", "list"], &mut ids);
    // Below the minimum TTL: raised to it (2 s with the default election timeout).
    run(all, &["lease", "grant", "1"], &mut ids);
    run(all, &["lease", "revoke", "{L2}"], &mut ids);
    run(all, &["lease", "revoke", "{L1}"], &mut ids);
    run(all, &["get", "k", "--prefix"], &mut ids);
    run(all, &["lease", "timetolive", "{L1}"], &mut ids);
    run(all, &["lease", "revoke", "{L1}"], &mut ids);
    run(one, &["lease", "keep-alive", "--once", "{L1}"], &mut ids);
    run(all, &["put", "k3", "v", "--lease=1234"], &mut ids);
    run(all, &["lease", "grant", "9000000001"], &mut ids);
    run(all, &["lease", "list"], &mut ids);
    transcript
}

/// A follower's endpoint, once every member published its client URLs (forwarding to the
/// leader needs the leader's).
fn follower(c: &Cluster) -> String {
    let leader = c.wait_leader();
    wait_until(
        Duration::from_secs(10),
        "every member to publish its client URLs",
        || {
            !c.etcdctl(&["member", "list"])
                .lines()
                .any(|l| l.ends_with(", , false"))
        },
    );
    c.voters[(leader + 1) % c.voters.len()].endpoint()
}

#[test]
fn etcdctl_lease_transcript_matches_etcd() {
    let etcd = Cluster::etcd(1);
    let mango = Cluster::start(3);
    let one = follower(&mango);
    let expected = lease_script(&etcd.endpoints(), &etcd.endpoints());
    let got = lease_script(&mango.endpoints(), &one);
    assert_eq!(
        expected.join("\n"),
        got.join("\n"),
        "etcd 3.4 (left) and mango (right) differ"
    );
}

async fn client(endpoints: &str) -> Client {
    let eps: Vec<String> = endpoints.split(',').map(str::to_string).collect();
    Client::connect(eps, None).await.unwrap()
}

/// Waits until `key` is gone on every running voter (serializable reads: each member's own
/// state), `timeout` for all together.
async fn wait_gone_everywhere(c: &Cluster, key: &str, timeout: Duration) {
    let start = Instant::now();
    for v in c.voters.iter().filter(|v| v.is_running()) {
        let cl = client(&v.endpoint()).await;
        wait_until_async(
            timeout.saturating_sub(start.elapsed()),
            format!("{key} to be gone on {}", v.name),
            || {
                let mut cl = cl.clone();
                async move {
                    let r = cl
                        .get(key, Some(GetOptions::new().with_serializable()))
                        .await
                        .unwrap();
                    r.kvs().is_empty()
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_through_a_follower_keeps_a_lease_and_expiry_deletes_its_keys_atomically() {
    let c = Cluster::start(3);
    let mut leader_client = client(&c.endpoints()).await;
    let one = follower(&c);
    let mut cl = client(&one).await;

    // Kept alive through a follower for longer than its TTL: it lives.
    let kept = cl.lease_grant(2, None).await.unwrap().id();
    cl.put("kept", "v", Some(PutOptions::new().with_lease(kept)))
        .await
        .unwrap();
    let (mut keeper, mut responses) = cl.lease_keep_alive(kept).await.unwrap();
    for _ in 0..8 {
        keeper.keep_alive().await.unwrap();
        let resp = responses.message().await.unwrap().unwrap();
        assert_eq!(resp.ttl(), 2, "a keep-alive answers the full TTL");
        // The test: a keep-alive every 500 ms, 4 s in all, twice the TTL.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = leader_client.get("kept", None).await.unwrap();
    assert_eq!(r.kvs().len(), 1, "a kept-alive lease's key is still there");
    let ttl = leader_client.lease_time_to_live(kept, None).await.unwrap();
    assert!((1..=2).contains(&ttl.ttl()), "remaining {}", ttl.ttl());

    // Left alone, it expires: the leader revokes it through Raft and every member deletes
    // both keys in one revision.
    cl.put("kept2", "v", Some(PutOptions::new().with_lease(kept)))
        .await
        .unwrap();
    let before = leader_client.get("kept", None).await.unwrap();
    let rev_before = before.header().unwrap().revision();
    drop((keeper, responses));
    wait_gone_everywhere(&c, "kept", Duration::from_secs(10)).await;
    wait_gone_everywhere(&c, "kept2", Duration::from_secs(10)).await;
    let after = leader_client.get("kept", None).await.unwrap();
    assert_eq!(
        after.header().unwrap().revision(),
        rev_before + 1,
        "the expiry deleted both keys in one revision"
    );
    let ttl = leader_client.lease_time_to_live(kept, None).await.unwrap();
    assert_eq!(ttl.ttl(), -1, "an expired lease is gone");
    let leases = leader_client.leases().await.unwrap();
    assert!(leases.leases().iter().all(|l| l.id() != kept));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_expires_after_a_leader_failover_and_never_early() {
    // Checkpoints every 500 ms: the next leader resumes from the remaining TTL.
    let mut c = Cluster::start_with(3, &["--lease-checkpoint-interval-ms", "500"]);
    let leader = c.wait_leader();
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let survivors = c.endpoints_of(&others);
    let mut cl = client(&survivors).await;
    let granted_at = Instant::now();
    let ttl = 6;
    let id = cl.lease_grant(ttl, None).await.unwrap().id();
    cl.put("doomed", "v", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    // Two checkpoints record the remaining TTL (each a Raft entry of its own: nothing else
    // is written), applied on both survivors; then the leader is killed.
    let applied = |i: usize| c.status(i).and_then(|s| s["raftAppliedIndex"].as_u64());
    let after_put = (0..3).filter_map(applied).max().unwrap();
    wait_until(
        Duration::from_secs(10),
        "two lease checkpoints applied on both survivors",
        || {
            others
                .iter()
                .all(|&i| applied(i).is_some_and(|a| a >= after_put + 2))
        },
    );
    c.kill(leader);
    c.wait_leader();

    // Never early: still there just before the TTL runs out.
    let until = granted_at + Duration::from_secs(ttl as u64) - Duration::from_millis(500);
    while Instant::now() < until {
        let r = cl
            .get("doomed", Some(GetOptions::new().with_serializable()))
            .await;
        if let Ok(r) = r {
            assert_eq!(
                r.kvs().len(),
                1,
                "expired {:?} after the grant, before its TTL of {ttl}s",
                granted_at.elapsed()
            );
        }
        // The test: the key is watched over the lease's whole life, a read every 200 ms.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Expired by the new leader: within the TTL, one election timeout of grace, and slack.
    wait_gone_everywhere(&c, "doomed", Duration::from_secs(12)).await;
    let took = granted_at.elapsed();
    assert!(
        took < Duration::from_secs(ttl as u64 + 6),
        "expiry after failover took {took:?}"
    );
}
