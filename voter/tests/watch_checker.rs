//! Watch checker: writers put, delete and txn over a small key space through `etcd-client`
//! while many watchers follow it: plain ones, ones that ask for previous values, slow ones that
//! read little for a few seconds (so the server must let them fall behind and catch them up
//! from the store), and ones that start mid-run from revision 2. The leader is killed with
//! SIGKILL midway; watchers on it reconnect to another voter and resume from the revision after
//! the last event they saw.
//!
//! Then every watcher's stream is checked against the history (a full watch from revision 2
//! after the run, itself checked against Range reads at sampled revisions): the same events
//! in the same order, so nothing missing, nothing twice, previous values right; and no
//! revision split across two responses (atomic).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions, WatchResponse,
};
use mango_checker::Xorshift;
use mango_testkit::{Cluster, wait_until};

const WRITERS: usize = 3;
const KEYS: u64 = 24;
const RUN: Duration = Duration::from_secs(7);
const KILL_AFTER: Duration = Duration::from_secs(3);
/// Slow watchers read one response per this long for the first `SLOW_FOR`.
const SLOW_PACE: Duration = Duration::from_millis(250);
const SLOW_FOR: Duration = Duration::from_secs(5);

/// One event as a watcher saw it.
#[derive(Clone, PartialEq, Eq)]
struct Ev {
    rev: i64,
    key: String,
    put: bool,
    value: Vec<u8>,
    /// `(value, mod_revision)` of the previous version, when asked for and present.
    prev: Option<(Vec<u8>, i64)>,
}

/// Values are long: show their start and length.
impl std::fmt::Debug for Ev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |v: &[u8]| {
            let head = String::from_utf8_lossy(&v[..v.len().min(12)]).into_owned();
            format!("{head}..({} bytes)", v.len())
        };
        let kind = if self.put { "PUT" } else { "DELETE" };
        write!(f, "{kind} {}@{} {}", self.key, self.rev, short(&self.value))?;
        if let Some((value, rev)) = &self.prev {
            write!(f, " prev {}@{rev}", short(value))?;
        }
        Ok(())
    }
}

fn events_of(resp: &WatchResponse) -> Vec<Ev> {
    resp.events()
        .iter()
        .filter_map(|e| {
            let kv = e.kv()?;
            Some(Ev {
                rev: kv.mod_revision(),
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                put: e.event_type() == EventType::Put,
                value: kv.value().to_vec(),
                prev: e.prev_kv().map(|p| (p.value().to_vec(), p.mod_revision())),
            })
        })
        .collect()
}

async fn connect(endpoint: &str) -> Option<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(2));
    Client::connect([format!("http://{endpoint}")], Some(options))
        .await
        .ok()
}

fn key(k: u64) -> String {
    format!("k/{k:02}")
}

/// Writes until `stop`: mostly puts, some deletes, some two-key txns.
async fn writer(id: u64, endpoints: Vec<String>, stop: Arc<AtomicBool>) {
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15 ^ (id + 1));
    let mut at = id as usize;
    let mut client = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = connect(&endpoints[at % endpoints.len()]).await;
            at += 1;
            if client.is_none() {
                continue;
            }
        }
        let Some(c) = client.as_mut() else { continue };
        n += 1;
        let value = format!(
            "w{id}-{n}-{}",
            "x".repeat((rng.next_u64() % 16_000) as usize)
        );
        let k = rng.next_u64() % KEYS;
        let op = rng.next_u64() % 10;
        let result = tokio::time::timeout(Duration::from_secs(1), async {
            match op {
                0 => c.delete(key(k), None).await.map(|_| ()),
                1 => {
                    let other = (k + 1 + rng.next_u64() % (KEYS - 1)) % KEYS;
                    let txn = Txn::new().and_then([
                        TxnOp::put(key(k), value.as_str(), None),
                        TxnOp::put(key(other), value.as_str(), None),
                    ]);
                    c.txn(txn).await.map(|_| ())
                }
                _ => c.put(key(k), value.as_str(), None).await.map(|_| ()),
            }
        })
        .await;
        if !matches!(result, Ok(Ok(()))) {
            // The endpoint may be dead: move on to the next one.
            client = None;
        }
    }
}

/// How a watcher behaves.
#[derive(Clone, Copy, Debug)]
struct Kind {
    prev_kv: bool,
    slow: bool,
    /// 0: from the next revision; else this revision.
    start: i64,
}

/// What a watcher saw: its responses' events, and how often it had to reconnect.
#[derive(Debug, Default)]
struct Seen {
    responses: Vec<Vec<Ev>>,
    first_rev: i64,
    reconnects: usize,
}

/// Watches `k/` from `kind.start` until it saw revision `until` (once known), reconnecting to
/// the next endpoint, from the revision after its last event, whenever its stream fails.
/// Counts itself in `created` once its first watch is created.
async fn watcher(
    kind: Kind,
    endpoints: Vec<String>,
    first: usize,
    until: Arc<AtomicI64>,
    created: Arc<AtomicUsize>,
) -> Seen {
    let began = Instant::now();
    let mut seen = Seen {
        first_rev: kind.start,
        ..Seen::default()
    };
    let mut last = 0i64;
    let mut at = first;
    let deadline = Instant::now() + RUN + Duration::from_secs(20);
    'connect: while Instant::now() < deadline {
        let endpoint = &endpoints[at % endpoints.len()];
        at += 1;
        let Some(mut client) = connect(endpoint).await else {
            continue;
        };
        let start = if last > 0 {
            last + 1
        } else if seen.first_rev > 0 {
            seen.first_rev
        } else {
            kind.start
        };
        let mut options = WatchOptions::new().with_prefix().with_start_revision(start);
        if kind.prev_kv {
            options = options.with_prev_key();
        }
        let Ok(mut stream) = client.watch("k/", Some(options)).await else {
            continue;
        };
        loop {
            let done = until.load(Ordering::Relaxed);
            if done > 0 && last >= done {
                return seen;
            }
            if Instant::now() > deadline {
                break 'connect;
            }
            if kind.slow && began.elapsed() < SLOW_FOR {
                // The test: a slow reader.
                tokio::time::sleep(SLOW_PACE).await;
            }
            match tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
                Err(_) => continue,
                Ok(Ok(Some(resp))) => {
                    if resp.canceled() {
                        seen.reconnects += 1;
                        continue 'connect;
                    }
                    if resp.created() {
                        if seen.first_rev == 0 {
                            // Watching from the next revision after the created header's.
                            seen.first_rev = resp.header().map_or(1, |h| h.revision()) + 1;
                            created.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let evs = events_of(&resp);
                    if let Some(e) = evs.last() {
                        last = e.rev;
                    }
                    if !evs.is_empty() {
                        seen.responses.push(evs);
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    seen.reconnects += 1;
                    continue 'connect;
                }
            }
        }
    }
    panic!(
        "watcher {kind:?} did not reach revision {} (last {last})",
        until.load(Ordering::Relaxed)
    );
}

/// Key -> (value, mod_revision) at one revision.
type KeySpace = BTreeMap<String, (Vec<u8>, i64)>;

/// Checks the reference history against Range reads at sampled revisions, and its
/// previous values against itself.
async fn check_reference(client: &mut Client, history: &[Ev]) {
    let mut state = KeySpace::new();
    let mut by_rev: Vec<(i64, KeySpace)> = Vec::new();
    for group in history.chunk_by(|a, b| a.rev == b.rev) {
        for e in group {
            assert_eq!(
                e.prev,
                state.get(&e.key).cloned(),
                "prev_kv of {} at {}",
                e.key,
                e.rev
            );
            if e.put {
                state.insert(e.key.clone(), (e.value.clone(), e.rev));
            } else {
                state.remove(&e.key);
            }
        }
        by_rev.push((group[0].rev, state.clone()));
    }
    let step = (by_rev.len() / 15).max(1);
    for (rev, want) in by_rev.iter().step_by(step).chain(by_rev.last()) {
        let got = client
            .get(
                "k/",
                Some(GetOptions::new().with_prefix().with_revision(*rev)),
            )
            .await
            .expect("range at a revision");
        let got: KeySpace = got
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    (kv.value().to_vec(), kv.mod_revision()),
                )
            })
            .collect();
        assert_eq!(&got, want, "the key space at revision {rev}");
    }
}

#[test]
fn watchers_see_every_revision_once_in_order_through_a_leader_kill() {
    let mut cluster = Cluster::start(3);
    let created = Arc::new(AtomicUsize::new(0));
    let endpoints: Vec<String> = cluster.voters.iter().map(|v| v.endpoint()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let until = Arc::new(AtomicI64::new(0));

    let live = |prev_kv, slow| Kind {
        prev_kv,
        slow,
        start: 0,
    };
    let kinds = [
        live(false, false),
        live(true, false),
        live(true, false),
        live(false, false),
        live(true, true),
        live(false, true),
        live(true, true),
    ];
    let mut watchers = Vec::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let task = watcher(kind, endpoints.clone(), i, until.clone(), created.clone());
        watchers.push((kind, rt.spawn(task)));
    }
    wait_until(
        Duration::from_secs(10),
        "every live watcher created",
        || created.load(Ordering::Relaxed) == kinds.len(),
    );
    let writers: Vec<_> = (0..WRITERS as u64)
        .map(|id| rt.spawn(writer(id, endpoints.clone(), stop.clone())))
        .collect();

    // The sleeps below are the test's schedule: writes for RUN, watchers joining mid-run,
    // the leader killed at KILL_AFTER, writes going on after it.
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    // Mid-run, watchers that replay the history from the start, then go live.
    for i in 0..2 {
        let kind = Kind {
            prev_kv: i == 0,
            slow: false,
            start: 2,
        };
        let task = watcher(kind, endpoints.clone(), i, until.clone(), created.clone());
        watchers.push((kind, rt.spawn(task)));
    }
    std::thread::sleep(KILL_AFTER.saturating_sub(began.elapsed()));
    let leader = cluster.wait_leader();
    cluster.kill(leader);
    std::thread::sleep(RUN.saturating_sub(began.elapsed()));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for w in writers {
            w.await.unwrap();
        }
    });

    // The last revision, from a live voter; then every watcher must reach it.
    let live_endpoint = cluster.voters[(leader + 1) % 3].endpoint();
    let (mut client, last) = rt.block_on(async {
        let mut client = connect(&live_endpoint).await.expect("a live voter");
        let resp = client.get("k/", None).await.expect("get");
        let rev = resp.header().expect("header").revision();
        (client, rev)
    });
    until.store(last, Ordering::Relaxed);
    let seen: Vec<(Kind, Seen)> = rt.block_on(async {
        let mut all = Vec::new();
        for (kind, w) in watchers {
            all.push((kind, w.await.unwrap()));
        }
        all
    });

    // The reference: the whole history, replayed from the store after the run.
    let reference = rt.block_on(watcher(
        Kind {
            prev_kv: true,
            slow: false,
            start: 2,
        },
        vec![live_endpoint.clone()],
        0,
        until.clone(),
        created.clone(),
    ));
    let history: Vec<Ev> = reference.responses.concat();
    assert!(history.len() > 300, "only {} events written", history.len());
    rt.block_on(check_reference(&mut client, &history));

    let mut reconnected = 0;
    for (kind, s) in &seen {
        eprintln!(
            "{kind:?}: {} responses, {} events from {}, {} reconnects",
            s.responses.len(),
            s.responses.iter().map(Vec::len).sum::<usize>(),
            s.first_rev,
            s.reconnects
        );
        reconnected += usize::from(s.reconnects > 0);
        // Atomic: no revision in two responses.
        let mut response_of: HashMap<i64, usize> = HashMap::new();
        for (i, r) in s.responses.iter().enumerate() {
            for e in r {
                let first = *response_of.entry(e.rev).or_insert(i);
                assert_eq!(
                    first, i,
                    "{kind:?}: revision {} split across responses",
                    e.rev
                );
            }
        }
        // Everything from where it started, once, in order, with the right previous values.
        let got: Vec<Ev> = s.responses.concat();
        let want: Vec<Ev> = history
            .iter()
            .filter(|e| e.rev >= s.first_rev && e.rev <= last)
            .map(|e| Ev {
                prev: if kind.prev_kv { e.prev.clone() } else { None },
                ..e.clone()
            })
            .collect();
        let got: Vec<Ev> = got.into_iter().filter(|e| e.rev <= last).collect();
        if got != want {
            let i = got.iter().zip(&want).position(|(a, b)| a != b);
            panic!(
                "{kind:?} (from {}, {} reconnects): {} events, {} expected; first difference at {i:?}: {:?} vs {:?}",
                s.first_rev,
                s.reconnects,
                got.len(),
                want.len(),
                i.and_then(|i| got.get(i)),
                i.and_then(|i| want.get(i)),
            );
        }
    }
    // Catching up from the store merges revisions into fewer responses: a slow watcher that
    // stayed on one voter and got fewer responses than a fast one did fall behind.
    let responses = |slow: bool| {
        seen.iter()
            .filter(|(k, s)| k.slow == slow && k.start == 0 && s.reconnects == 0)
            .map(|(_, s)| s.responses.len())
            .collect::<Vec<_>>()
    };
    let fast = responses(false).into_iter().max().unwrap_or(0);
    // Whether a slow reader overflows its stream's queue depends on how much the client's
    // HTTP/2 window (2 MiB in tonic) absorbs, so on how fast the writers went on a loaded
    // machine: not asserted here (CI saw a run where it did not happen). The hub's own tests
    // force the fall-behind and catch-up path deterministically
    // (`cargo nextest run -p mango-api --lib watch`); this only reports it.
    eprintln!(
        "slow watchers: {:?} responses vs {fast} for the fastest (fewer: they fell behind)",
        responses(true)
    );
    assert!(
        reconnected > 0,
        "no watcher was on the killed leader: the resume path went untested"
    );
}
