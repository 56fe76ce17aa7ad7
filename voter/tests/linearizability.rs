//! Jepsen-style: concurrent clients over real gRPC record a history of puts and linearizable
//! gets on a few keys while a nemesis kills -9 the leader and restarts it, pauses a follower
//! (SIGSTOP/SIGCONT) and cuts the leader off from its peers (iptables on per-voter loopback
//! addresses); afterwards every key's history must be linearizable (mango-checker). Writes
//! whose outcome the client never learned are kept as unknown (they may have taken effect,
//! late, or not at all); failed reads are dropped (they had no effect).
//!
//! Bounded: `MANGO_JEPSEN_SECS` sets the run's length (default 8 s, for CI); a longer run is
//! `MANGO_JEPSEN_SECS=120 cargo nextest run -p mango-voter --test linearizability`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use harness::Cluster;
use harness::netfault::Partition;
use mango_checker::{Op, Operation, check_register};

const KEYS: usize = 4;
const CLIENTS: usize = 5;

fn run_secs() -> u64 {
    std::env::var("MANGO_JEPSEN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

/// A small deterministic generator per client (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

type History = Arc<Mutex<BTreeMap<usize, Vec<Operation>>>>;

async fn client_loop(
    id: usize,
    endpoints: Vec<String>,
    start: Instant,
    until: Instant,
    history: History,
) -> (usize, usize) {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(2));
    let mut client = loop {
        if let Ok(c) = Client::connect(endpoints.clone(), Some(options.clone())).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1));
    let (mut ok, mut failed): (usize, usize) = (0, 0);
    let mut n = 0u64;
    let now = || start.elapsed().as_nanos() as u64;
    while Instant::now() < until {
        let key = (rng.next() % KEYS as u64) as usize;
        let name = format!("lin/{key}");
        let call = now();
        if rng.next().is_multiple_of(2) {
            n += 1;
            let value = format!("c{id}-{n}");
            let result = client.put(name.as_str(), value.as_str(), None).await;
            let ret = now();
            let done = result.is_ok();
            if done {
                ok += 1;
            } else {
                failed += 1;
            }
            history
                .lock()
                .unwrap()
                .entry(key)
                .or_default()
                .push(Operation {
                    client: id,
                    call,
                    // A failed put may still have been applied: unknown outcome.
                    ret: done.then_some(ret),
                    op: Op::Write(Some(value.into_bytes())),
                });
        } else {
            match client.get(name.as_str(), None).await {
                Ok(resp) => {
                    let ret = now();
                    ok += 1;
                    let seen = resp.kvs().first().map(|kv| kv.value().to_vec());
                    history
                        .lock()
                        .unwrap()
                        .entry(key)
                        .or_default()
                        .push(Operation {
                            client: id,
                            call,
                            ret: Some(ret),
                            op: Op::Read(seen),
                        });
                }
                Err(_) => failed += 1,
            }
        }
        if failed > 0 && failed.is_multiple_of(5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (ok, failed)
}

/// The faults, spread over the run: kill -9 of the leader and its restart, a paused
/// follower, an isolated leader. Returns the cluster (and what it did).
fn nemesis(mut c: Cluster, secs: u64) -> (Cluster, Vec<String>) {
    let mut did = Vec::new();
    let step = Duration::from_millis(secs * 1000 / 8);
    let mut rounds = 0;
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() + step * 3 < end {
        rounds += 1;
        std::thread::sleep(step);
        // 1. kill -9 the leader, restart it.
        let leader = c.wait_leader(Duration::from_secs(10));
        c.kill(leader);
        did.push(format!("kill -9 {}", c.voters[leader].name));
        std::thread::sleep(step);
        c.spawn(leader, "new");
        did.push(format!("restart {}", c.voters[leader].name));
        // 2. pause a follower.
        let leader = c.wait_leader(Duration::from_secs(10));
        let follower = (leader + 1) % 3;
        let pid = c.voters[follower].child.as_ref().map(|ch| ch.id()).unwrap();
        let signal = |sig: &str| {
            let _ = std::process::Command::new("kill")
                .args([sig, &pid.to_string()])
                .status();
        };
        signal("-STOP");
        did.push(format!("SIGSTOP {}", c.voters[follower].name));
        std::thread::sleep(step);
        signal("-CONT");
        did.push(format!("SIGCONT {}", c.voters[follower].name));
        // 3. isolate the leader from its peers.
        if Partition::available() {
            let leader = c.wait_leader(Duration::from_secs(10));
            let peers: Vec<(String, u16)> = (0..3)
                .filter(|&i| i != leader)
                .map(|i| (c.voters[i].host.clone(), c.voters[i].peer_port))
                .collect();
            let cut =
                Partition::isolate(&c.voters[leader].host, c.voters[leader].peer_port, &peers);
            did.push(format!("isolate {}", c.voters[leader].name));
            std::thread::sleep(step);
            cut.heal();
            did.push("heal".to_string());
        }
        if rounds >= 1 && secs <= 10 {
            break;
        }
    }
    (c, did)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_history_is_linearizable_under_kills_pauses_and_partitions() {
    let secs = run_secs();
    let c = Cluster::start_hosts(3, &[], true);
    let endpoints: Vec<String> = c
        .voters
        .iter()
        .map(|v| format!("http://{}", v.endpoint()))
        .collect();
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let history: History = Arc::default();
    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        clients.push(tokio::spawn(client_loop(
            id,
            endpoints.clone(),
            start,
            until,
            history.clone(),
        )));
    }
    let faults = tokio::task::spawn_blocking(move || nemesis(c, secs));
    let (mut ok, mut failed) = (0, 0);
    for t in clients {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed += f;
    }
    let (c, did) = faults.await.unwrap();
    c.wait_leader(Duration::from_secs(20));

    let history = history.lock().unwrap().clone();
    let ops: usize = history.values().map(Vec::len).sum();
    eprintln!(
        "{ops} operations recorded ({ok} ok, {failed} failed) over {secs} s; faults: {did:?}"
    );
    assert!(
        ok > 50,
        "too few operations completed ({ok}) for the check to mean anything"
    );
    assert!(
        did.iter().any(|d| d.starts_with("kill")),
        "the nemesis did nothing"
    );
    for (key, ops) in &history {
        if let Err(v) = check_register(ops, &None) {
            let mut shown: Vec<&Operation> = ops.iter().collect();
            shown.sort_by_key(|o| o.call);
            panic!(
                "lin/{key} is not linearizable: stuck at {:?} after {} operations; history:\n{:#?}",
                ops[v.stuck_at],
                v.longest.len(),
                shown
            );
        }
    }
}
