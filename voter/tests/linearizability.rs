//! Jepsen-style: concurrent clients over real gRPC record a history of puts and linearizable
//! gets on a few keys, and two watchers follow every change, while a nemesis kills -9 the
//! leader and restarts it, pauses a follower (SIGSTOP/SIGCONT) and cuts the leader off from
//! its peers (each voter runs in its own network namespace; the cut is a firewall inside the
//! leader's, so clients still reach it); afterwards every key's history must be linearizable
//! (mango-checker), and each watcher (resuming on another member after any failure) must have
//! seen exactly the history of revisions a fresh watch from revision 1 reports: ordered, no
//! gap, no duplicate. Writes whose outcome the client never learned are kept as unknown (they
//! may have taken effect, late, or not at all); failed reads are dropped (they had no effect).
//! Leases too: two clients grant short leases, put a key with each, keep some alive a few
//! times and let them lapse, while a reader lists the leased keys; no key may be gone while
//! its lease was certainly held, none may come back once gone, and every one is gone a while
//! after the run (mango-checker's `lease`).
//!
//! Bounded: `MANGO_JEPSEN_SECS` sets the run's length (default 8 s, for CI); a longer run is
//! `MANGO_JEPSEN_SECS=120 cargo nextest run -p mango-voter --test linearizability`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, PutOptions, WatchOptions};
use mango_checker::lease::{KeysSeen, LeaseLife, check_leases};
use mango_checker::{Op, Operation, Xorshift, bound_unknown_writes, check_register, jepsen_secs};
use mango_testkit::{Cluster, Netns, wait_until_async};

const KEYS: usize = 4;
const CLIENTS: usize = 5;

type History = Arc<Mutex<BTreeMap<usize, Vec<Operation>>>>;

async fn client_loop(
    id: usize,
    endpoints: Vec<String>,
    start: Instant,
    until: Instant,
    history: History,
) -> (usize, usize) {
    let mut client = connect(&endpoints).await;
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1));
    let (mut ok, mut failed): (usize, usize) = (0, 0);
    let mut n = 0u64;
    let now = || start.elapsed().as_nanos() as u64;
    while Instant::now() < until {
        let key = (rng.next_u64() % KEYS as u64) as usize;
        let name = format!("lin/{key}");
        let call = now();
        if rng.next_u64().is_multiple_of(2) {
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
            // Pacing, not waiting: do not spin while the nemesis has the cluster down.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (ok, failed)
}

/// The leases' TTL (seconds), and the pause between keep-alives.
const LEASE_TTL: i64 = 2;
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(500);

type Lives = Arc<Mutex<Vec<LeaseLife>>>;

async fn connect(endpoints: &[String]) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(2));
    wait_until_async(
        Duration::from_secs(20),
        format!("a client connection to {endpoints:?}"),
        || Client::connect(endpoints.to_vec(), Some(options.clone())),
    )
    .await
}

/// One lease client: grants a lease, puts a key of its own with it, keeps it alive 0 to 4
/// times, lets it lapse and starts the next; records each life whose put returned. Returns
/// (lives, keep-alives answered).
async fn lease_loop(
    id: usize,
    endpoints: Vec<String>,
    start: Instant,
    until: Instant,
    lives: Lives,
) -> (usize, usize) {
    let mut client = connect(&endpoints).await;
    let mut rng = Xorshift(0x5851_f42d_4c95_7f2d ^ (id as u64 + 1));
    let now = || start.elapsed().as_nanos() as u64;
    let ttl_ns = |ttl: i64| Duration::from_secs(ttl.max(0) as u64).as_nanos() as u64;
    let (mut n, mut recorded, mut kept) = (0u64, 0, 0);
    while Instant::now() < until {
        n += 1;
        let key = format!("lease/c{id}-{n}");
        let call = now();
        let Ok(grant) = client.lease_grant(LEASE_TTL, None).await else {
            // Pacing, not waiting: retry the grant a little later.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut held = vec![(call, ttl_ns(grant.ttl()))];
        let put = PutOptions::new().with_lease(grant.id());
        // A put whose outcome is unknown says nothing certain about its key: left out.
        if client.put(key.as_str(), "v", Some(put)).await.is_err() {
            continue;
        }
        let put_ret = now();
        let times = rng.next_u64() % 5;
        if times > 0
            && let Ok((mut keeper, mut answers)) = client.lease_keep_alive(grant.id()).await
        {
            for _ in 0..times {
                // The test's schedule: a keep-alive every KEEP_ALIVE_EVERY.
                tokio::time::sleep(KEEP_ALIVE_EVERY).await;
                let call = now();
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_secs(2), answers.message()).await {
                    Ok(Ok(Some(a))) if a.ttl() > 0 => {
                        held.push((call, ttl_ns(a.ttl())));
                        kept += 1;
                    }
                    _ => break,
                }
            }
        }
        lives.lock().unwrap().push(LeaseLife {
            key: key.into_bytes(),
            put_ret,
            held,
        });
        recorded += 1;
    }
    (recorded, kept)
}

/// Lists the leased keys (a linearizable range) every 150 ms until `end`.
async fn lease_reader(endpoints: Vec<String>, start: Instant, end: Instant) -> Vec<KeysSeen> {
    let mut client = connect(&endpoints).await;
    let now = || start.elapsed().as_nanos() as u64;
    let mut reads = Vec::new();
    while Instant::now() < end {
        let call = now();
        let opts = GetOptions::new().with_prefix().with_keys_only();
        if let Ok(r) = client.get("lease/", Some(opts)).await {
            reads.push(KeysSeen {
                call,
                ret: now(),
                present: r.kvs().iter().map(|kv| kv.key().to_vec()).collect(),
            });
        }
        // The test's schedule: a read every 150 ms.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    reads
}

/// One watcher's view: (key, mod revision, value) of every event, in the order received.
type Events = Vec<(String, i64, Vec<u8>)>;

/// Watches `lin/` from revision 1 until `until` plus `grace` (for the tail: a watcher that
/// resumed late in a long run has a backlog to catch up), moving to another endpoint and
/// resuming from the last revision + 1 whenever its stream fails.
async fn watcher(endpoints: Vec<String>, until: Instant, grace: Duration) -> (Events, usize) {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(2));
    let mut seen: Events = Vec::new();
    let mut reconnects = 0;
    let end = until + grace;
    let mut next = 1;
    'connect: while Instant::now() < end {
        let ep = endpoints[reconnects % endpoints.len()].clone();
        let Ok(mut c) = Client::connect([ep], Some(options.clone())).await else {
            reconnects += 1;
            // Pacing, not waiting: try the next endpoint a little later.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let opts = WatchOptions::new().with_prefix().with_start_revision(next);
        let Ok(mut stream) = c.watch("lin/", Some(opts)).await else {
            reconnects += 1;
            continue;
        };
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break 'connect;
            }
            match tokio::time::timeout(left.min(Duration::from_millis(1500)), stream.message())
                .await
            {
                Ok(Ok(Some(resp))) => {
                    if resp.canceled() {
                        reconnects += 1;
                        continue 'connect;
                    }
                    for e in resp.events() {
                        if let Some(kv) = e.kv() {
                            seen.push((
                                String::from_utf8_lossy(kv.key()).into_owned(),
                                kv.mod_revision(),
                                kv.value().to_vec(),
                            ));
                            next = kv.mod_revision() + 1;
                        }
                    }
                }
                // Quiet for a while: the member may be cut off; go elsewhere.
                Err(_) if Instant::now() < until => {
                    reconnects += 1;
                    continue 'connect;
                }
                Err(_) => {}
                Ok(_) => {
                    reconnects += 1;
                    continue 'connect;
                }
            }
        }
    }
    (seen, reconnects)
}

/// The faults, spread over the run: kill -9 of the leader and its restart, a paused
/// follower, an isolated leader. Returns the cluster (and what it did). The sleeps pace the
/// nemesis: each fault lasts `step`, with `step` of calm before the first.
fn nemesis(mut c: Cluster, net: Arc<Netns>, secs: u64) -> (Cluster, Vec<String>) {
    let mut did = Vec::new();
    let step = Duration::from_millis(secs * 1000 / 8);
    let mut rounds = 0;
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() + step * 3 < end {
        rounds += 1;
        std::thread::sleep(step);
        // 1. kill -9 the leader, restart it.
        let leader = c.wait_leader();
        c.kill(leader);
        did.push(format!("kill -9 {}", c.voters[leader].name));
        std::thread::sleep(step);
        c.spawn(leader);
        did.push(format!("restart {}", c.voters[leader].name));
        // 2. pause a follower.
        let leader = c.wait_leader();
        let follower = (leader + 1) % 3;
        c.voters[follower].signal("STOP");
        did.push(format!("SIGSTOP {}", c.voters[follower].name));
        std::thread::sleep(step);
        c.voters[follower].signal("CONT");
        did.push(format!("SIGCONT {}", c.voters[follower].name));
        // 3. cut the leader off from its peers (inside its network namespace; clients
        // still reach it).
        let leader = c.wait_leader();
        net.cut_peers(leader);
        did.push(format!("isolate {}", c.voters[leader].name));
        std::thread::sleep(step);
        net.heal_peers(leader);
        did.push("heal".to_string());
        if rounds >= 1 && secs <= 10 {
            break;
        }
    }
    (c, did)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_history_is_linearizable_under_kills_pauses_and_partitions() {
    let secs = jepsen_secs(8);
    assert!(
        Netns::available(),
        "this test needs network namespaces (root, iproute2)"
    );
    let net = Arc::new(Netns::create(3));
    let c = Cluster::start_in(&net, &[]);
    let endpoints = c.voter_urls();
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
    let lives: Lives = Arc::default();
    let leasers: Vec<_> = (0..2)
        .map(|i| {
            let mut eps = endpoints.clone();
            eps.rotate_left(i + 1);
            tokio::spawn(lease_loop(i, eps, start, until, lives.clone()))
        })
        .collect();
    let reader = tokio::spawn(lease_reader(
        endpoints.clone(),
        start,
        until + Duration::from_secs(LEASE_TTL as u64 + 3),
    ));
    let watchers: Vec<_> = (0..2)
        .map(|i| {
            let mut eps = endpoints.clone();
            eps.rotate_left(i);
            tokio::spawn(watcher(eps, until, Duration::from_secs(5 + secs / 4)))
        })
        .collect();
    let faults = {
        let net = net.clone();
        tokio::task::spawn_blocking(move || nemesis(c, net, secs))
    };
    let (mut ok, mut failed) = (0, 0);
    for t in clients {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed += f;
    }
    let (c, did) = faults.await.unwrap();
    c.wait_leader();
    let (mut leases, mut keep_alives) = (0, 0);
    for t in leasers {
        let (l, k) = t.await.unwrap();
        leases += l;
        keep_alives += k;
    }
    let mut lease_reads = reader.await.unwrap();
    // Every lease lapsed: a while after the run, every leased key is gone (each read
    // recorded for the check).
    let client = connect(&endpoints).await;
    let last_reads: Arc<Mutex<Vec<KeysSeen>>> = Arc::default();
    wait_until_async(
        Duration::from_secs(LEASE_TTL as u64 + 15),
        "every leased key to be gone long after its lease lapsed",
        || {
            let (mut client, reads) = (client.clone(), last_reads.clone());
            async move {
                let opts = GetOptions::new().with_prefix().with_keys_only();
                let call = start.elapsed().as_nanos() as u64;
                let r = client
                    .get("lease/", Some(opts))
                    .await
                    .map_err(|e| e.to_string())?;
                let present: std::collections::BTreeSet<Vec<u8>> =
                    r.kvs().iter().map(|kv| kv.key().to_vec()).collect();
                let ret = start.elapsed().as_nanos() as u64;
                let left = present.len();
                reads.lock().unwrap().push(KeysSeen { call, ret, present });
                if left == 0 {
                    Ok(())
                } else {
                    Err(format!("{left} leased keys"))
                }
            }
        },
    )
    .await;
    lease_reads.extend(last_reads.lock().unwrap().drain(..));
    let mut watched = Vec::new();
    for w in watchers {
        watched.push(w.await.unwrap());
    }
    // The truth: every revision under lin/ from a fresh watch from revision 1 after the run.
    let truth = {
        let eps: Vec<String> = endpoints.clone();
        let (events, _) = watcher(eps, Instant::now(), Duration::from_secs(5)).await;
        events
    };

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
    let lives = lives.lock().unwrap().clone();
    eprintln!(
        "{leases} lease lives ({} recorded), {keep_alives} keep-alives answered, {} reads of \
         the leased keys",
        lives.len(),
        lease_reads.len()
    );
    assert!(leases > 0, "no lease life completed");
    if let Err(e) = check_leases(&lives, &lease_reads) {
        panic!("leases: {e}; faults: {did:?}");
    }
    // Watches through the faults: ordered, no duplicate, nothing missing, values right.
    assert!(!truth.is_empty());
    for (i, (events, reconnects)) in watched.iter().enumerate() {
        assert!(
            events.windows(2).all(|w| w[0].1 <= w[1].1),
            "watcher {i}: revisions out of order"
        );
        let last = events.last().map_or(0, |e| e.1);
        let want: Vec<_> = truth.iter().filter(|e| e.1 <= last).cloned().collect();
        assert_eq!(
            events, &want,
            "watcher {i} ({reconnects} reconnects) differs from the history"
        );
        assert_eq!(
            last,
            truth.last().map_or(0, |e| e.1),
            "watcher {i} stopped early ({} of {} events, {reconnects} reconnects)",
            events.len(),
            truth.len()
        );
        eprintln!(
            "watcher {i}: {} events, {reconnects} reconnects",
            events.len()
        );
    }
    for (key, ops) in &history {
        // Every put writes a value of its own, so unknown puts can be bounded.
        let ops = bound_unknown_writes(ops);
        if let Err(e) = check_register(&ops, &None) {
            let mut shown: Vec<&Operation> = ops.iter().collect();
            shown.sort_by_key(|o| o.call);
            panic!("lin/{key}: {}; history:\n{shown:#?}", e.explain(&ops));
        }
    }
}
