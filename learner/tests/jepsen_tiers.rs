//! Jepsen-style across the tiers: clients put through mango-proxy and read with
//! `learner-linearizable` (through the proxy, which sends them to the learners, and straight
//! at the learners) and `linearizable` (the proxy sends those to the leader), while a nemesis
//! kills -9 and restarts learners, pauses one (SIGSTOP/SIGCONT), and kills -9 and restarts the
//! leading voter. Afterwards every key's history must be linearizable (mango-checker): a
//! learner that served a read older than the read's invocation (a stale answer after a
//! restart, a lost read index) fails it. Puts whose outcome the client never learned are kept
//! as unknown; failed reads are dropped.
//!
//! Bounded: `MANGO_JEPSEN_SECS` (default 8) sets the faulty phase; a longer run is
//! `MANGO_JEPSEN_SECS=60 cargo nextest run -p mango-learner --test jepsen_tiers`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mango_checker::{Op, Operation, Xorshift, bound_unknown_writes, check_register, jepsen_secs};
use mango_proto::etcdserverpb::PutRequest;
use mango_testkit::{Cluster, get, kv, wait_value};

const KEYS: u64 = 3;
const CLIENTS: usize = 4;
const OP_TIMEOUT: Duration = Duration::from_secs(2);

type History = Arc<Mutex<BTreeMap<u64, Vec<Operation>>>>;

/// Where a read went, for the summary.
#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    puts_ok: usize,
    puts_unknown: usize,
    reads_ok: [usize; 3],
    reads_failed: usize,
}

async fn client(
    id: usize,
    proxy: String,
    learners: Vec<String>,
    start: Instant,
    until: Instant,
    history: History,
) -> Counts {
    let mut via_proxy = kv(&proxy).await;
    let mut direct = Vec::new();
    for l in &learners {
        direct.push(kv(l).await);
    }
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d ^ (id as u64 + 1));
    let mut counts = Counts::default();
    let now = || start.elapsed().as_nanos() as u64;
    let mut n = 0u64;
    while Instant::now() < until {
        let key = rng.next_u64() % KEYS;
        let name = format!("tiers/{key}");
        let call = now();
        let choice = rng.next_u64() % 10;
        if choice < 5 {
            n += 1;
            let value = format!("c{id}-{n}");
            let put = via_proxy.put(PutRequest {
                key: name.clone().into_bytes(),
                value: value.clone().into_bytes(),
                ..Default::default()
            });
            let done = matches!(tokio::time::timeout(OP_TIMEOUT, put).await, Ok(Ok(_)));
            let ret = done.then(now);
            if done {
                counts.puts_ok += 1;
            } else {
                counts.puts_unknown += 1;
            }
            history
                .lock()
                .unwrap()
                .entry(key)
                .or_default()
                .push(Operation {
                    client: id,
                    call,
                    ret,
                    op: Op::Write(Some(value.into_bytes())),
                });
        } else {
            // 0: learner-linearizable through the proxy; 1: straight at a learner;
            // 2: linearizable through the proxy (to the leader).
            let (route, read) = match choice {
                5..=6 => (0, get(&mut via_proxy, &name, "learner-linearizable")),
                7..=8 => {
                    let l = (rng.next_u64() % direct.len() as u64) as usize;
                    (1, get(&mut direct[l], &name, "learner-linearizable"))
                }
                _ => (2, get(&mut via_proxy, &name, "linearizable")),
            };
            match tokio::time::timeout(OP_TIMEOUT, read).await {
                Ok(Ok(resp)) => {
                    let ret = now();
                    counts.reads_ok[route] += 1;
                    let value = resp.kvs.first().map(|kv| kv.value.clone());
                    history
                        .lock()
                        .unwrap()
                        .entry(key)
                        .or_default()
                        .push(Operation {
                            client: id,
                            call,
                            ret: Some(ret),
                            op: Op::Read(value),
                        });
                }
                _ => counts.reads_failed += 1,
            }
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_on_learners_stay_linearizable_through_kills_and_pauses() {
    let mut d = Cluster::start_tiered(&[]);
    // Each learner follows a different voter's log stream.
    let (up1, up2) = (d.voters[0].stream_addr(), d.voters[1].stream_addr());
    d.add_learner(&up1, &[]);
    d.add_learner(&up2, &[]);
    let mut c = kv(&d.voters[0].endpoint()).await;
    mango_testkit::put(&mut c, "tiers/ready", "1").await;
    for l in 0..2 {
        wait_value(
            &d.learners[l].endpoint(),
            "tiers/ready",
            "1",
            Duration::from_secs(20),
        )
        .await;
    }
    d.start_proxy(&[]);

    let secs = jepsen_secs(8);
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let history: History = Arc::default();
    let learners: Vec<String> = d.learners.iter().map(|l| l.endpoint()).collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client(
                id,
                d.proxy_endpoint(),
                learners.clone(),
                start,
                until,
                history.clone(),
            ))
        })
        .collect();

    // The nemesis: one fault at a time, each healed before the next; the sleeps pace it
    // (calm, then each fault lasting a while).
    let mut round = 0usize;
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    while Instant::now() + Duration::from_secs(2) < until {
        tokio::time::sleep(Duration::from_millis(400)).await;
        match round % 3 {
            0 => {
                let l = round / 3 % 2;
                d.kill_learner(l);
                tokio::time::sleep(Duration::from_millis(800)).await;
                d.spawn_learner(l);
                *faults.entry("learner kill -9").or_default() += 1;
            }
            1 => {
                let l = (round / 3 + 1) % 2;
                d.learners[l].signal("STOP");
                tokio::time::sleep(Duration::from_millis(800)).await;
                d.learners[l].signal("CONT");
                *faults.entry("learner pause").or_default() += 1;
            }
            _ => {
                let leader = tokio::task::block_in_place(|| d.wait_leader());
                d.kill(leader);
                tokio::time::sleep(Duration::from_millis(1000)).await;
                d.spawn(leader);
                *faults.entry("leader kill -9").or_default() += 1;
            }
        }
        round += 1;
    }
    let mut total = Counts::default();
    for c in clients {
        let c = c.await.unwrap();
        total.puts_ok += c.puts_ok;
        total.puts_unknown += c.puts_unknown;
        total.reads_failed += c.reads_failed;
        for r in 0..3 {
            total.reads_ok[r] += c.reads_ok[r];
        }
    }
    eprintln!("{secs} s, faults {faults:?}: {total:?}");
    assert!(total.puts_ok > 20, "too few puts succeeded: {total:?}");
    assert!(
        total.reads_ok[0] > 5 && total.reads_ok[1] > 5,
        "too few reads on the learners: {total:?}"
    );
    assert!(!faults.is_empty(), "the nemesis did nothing");

    let history = history.lock().unwrap().clone();
    for (key, ops) in &history {
        let ops = bound_unknown_writes(ops);
        if let Err(e) = check_register(&ops, &None) {
            let mut shown: Vec<&Operation> = ops.iter().collect();
            shown.sort_by_key(|o| o.call);
            panic!(
                "tiers/{key}: {}; logs in {}; history:\n{:#?}",
                e.explain(&ops),
                d.path().display(),
                shown
            );
        }
    }
}
