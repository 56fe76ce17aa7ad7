//! Failover under load: writers keep putting unique keys through `etcd-client` (balanced over
//! the three voters) while the leader is killed with SIGKILL. The survivors elect a new leader
//! in bounded time; once the killed voter is back and caught up, every acknowledged write is
//! there with its value, nothing is there that no client sent, and the three voters hold the
//! same data at the same revision.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use mango_testkit::{Cluster, wait_until};

const WRITERS: usize = 4;
/// Writes acknowledged before the kill (the load is under way).
const BEFORE_KILL: usize = 40;
/// Writes after the kill, and at least after the new leader is known.
const AFTER_KILL: Duration = Duration::from_secs(2);
const AFTER_FAILOVER: Duration = Duration::from_millis(1500);
/// The bound on electing a new leader: 3 s plus the default election timeout (1 s).
const MAX_FAILOVER: Duration = Duration::from_secs(4);
/// How long one put may take before its outcome counts as unknown.
/// A proposal forwarded to a leader that dies never answers (it waits for the server's request
/// timeout), so this is short.
const PUT_TIMEOUT: Duration = Duration::from_secs(1);

/// What one writer saw.
#[derive(Default)]
struct Ledger {
    /// Puts that returned Ok: key, value and when the answer came.
    acked: Vec<(String, String, Instant)>,
    /// Puts that failed or timed out: they may or may not have been applied.
    unknown: Vec<(String, String, Instant)>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn urls(endpoints: &[String]) -> Vec<String> {
    endpoints.iter().map(|e| format!("http://{e}")).collect()
}

async fn connect(endpoints: &[String]) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(PUT_TIMEOUT);
    Client::connect(urls(endpoints), Some(options))
        .await
        .expect("connect")
}

/// Puts `w{id}/{n}` until `stop`, each with a value naming it; counts acknowledged puts in
/// `acked`.
fn writer(
    id: usize,
    endpoints: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> Ledger {
    runtime().block_on(async move {
        let mut client = connect(&endpoints).await;
        let mut ledger = Ledger::default();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("w{id}/{n:06}");
            let value = format!("value-{id}-{n}");
            n += 1;
            match tokio::time::timeout(PUT_TIMEOUT, client.put(key.as_str(), value.as_str(), None))
                .await
            {
                Ok(Ok(_)) => {
                    ledger.acked.push((key, value, Instant::now()));
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(_)) | Err(_) => {
                    ledger.unknown.push((key, value, Instant::now()));
                    // Pacing, not waiting: do not spin on a dead endpoint.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        ledger
    })
}

/// Every key under `w` with its value, and the revision, read from one endpoint.
fn read_all(endpoint: &str, serializable: bool) -> Option<(BTreeMap<String, String>, i64)> {
    runtime().block_on(async {
        let mut client = connect(&[endpoint.to_string()]).await;
        let mut options = GetOptions::new().with_prefix();
        if serializable {
            options = options.with_serializable();
        }
        let resp = client.get("w", Some(options)).await.ok()?;
        let kvs = resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key_str().unwrap().to_string(),
                    kv.value_str().unwrap().to_string(),
                )
            })
            .collect();
        Some((kvs, resp.header()?.revision()))
    })
}

#[test]
fn leader_killed_under_load_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3);
    let endpoints: Vec<String> = c.voters.iter().map(|v| v.endpoint()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            let (endpoints, stop, acked) = (endpoints.clone(), stop.clone(), acked_so_far.clone());
            std::thread::spawn(move || writer(id, endpoints, stop, acked))
        })
        .collect();

    wait_until(
        Duration::from_secs(10),
        format_args!("{BEFORE_KILL} writes acknowledged before the kill"),
        || acked_so_far.load(Ordering::Relaxed) >= BEFORE_KILL,
    );
    let old = c.wait_leader();
    let old_id = c.member_id(old).expect("the leader's member id");
    c.kill(old);
    let killed_at = Instant::now();

    // The two survivors agree on a new leader.
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new_leader = c.wait_new_leader(
        &survivors,
        Some(old_id),
        MAX_FAILOVER + Duration::from_secs(10),
    );
    let failover = killed_at.elapsed();
    eprintln!("failover: new leader {new_leader:x} agreed on {failover:?} after SIGKILL");
    assert!(
        failover <= MAX_FAILOVER,
        "new leader after {failover:?} (bound {MAX_FAILOVER:?})"
    );

    let write_until = (killed_at + AFTER_KILL).max(killed_at + failover + AFTER_FAILOVER);
    // The test: the load goes on for a while after the failover.
    std::thread::sleep(write_until.saturating_duration_since(Instant::now()));
    stop.store(true, Ordering::Relaxed);
    let ledgers: Vec<Ledger> = writers.into_iter().map(|w| w.join().unwrap()).collect();

    let mut acked = BTreeMap::new();
    let mut unknown = BTreeMap::new();
    let mut acked_after_failover = 0;
    // Outcomes per 250 ms from the kill: (acknowledged, unknown).
    let mut timeline = BTreeMap::<i64, (u32, u32)>::new();
    let bucket = |at: Instant| {
        let ms = if at >= killed_at {
            at.duration_since(killed_at).as_millis() as i64
        } else {
            -(killed_at.duration_since(at).as_millis() as i64) - 1
        };
        ms.div_euclid(250) * 250
    };
    for l in &ledgers {
        for (k, v, at) in &l.acked {
            acked.insert(k.clone(), v.clone());
            if *at > killed_at + failover {
                acked_after_failover += 1;
            }
            timeline.entry(bucket(*at)).or_default().0 += 1;
        }
        for (k, v, at) in &l.unknown {
            unknown.insert(k.clone(), v.clone());
            timeline.entry(bucket(*at)).or_default().1 += 1;
        }
    }
    eprintln!(
        "writes: {} acknowledged ({acked_after_failover} after the failover), {} unknown",
        acked.len(),
        unknown.len()
    );
    eprintln!("ms from the kill: (acknowledged, unknown)");
    for (ms, (a, u)) in &timeline {
        eprintln!("  {ms:>6}: {a:>4} {u:>4}");
    }
    assert!(
        acked.len() > 20,
        "too few writes went through: {}",
        acked.len()
    );
    assert!(
        acked_after_failover > 0,
        "no write was acknowledged after the failover: the clients did not move on"
    );

    // The killed voter comes back and catches up.
    c.spawn(old);
    let leader = c.wait_leader();
    let (data, revision) =
        read_all(&c.voters[leader].endpoint(), false).expect("linearizable read on the leader");
    for (i, v) in c.voters.iter().enumerate() {
        let local = wait_until(
            Duration::from_secs(20),
            format_args!("voter {i} to catch up to revision {revision}"),
            || match read_all(&v.endpoint(), true) {
                Some((local, r)) if r == revision => Ok(local),
                other => Err(other.map(|(d, r)| (d.len(), r))),
            },
        );
        assert_eq!(
            local, data,
            "voter {i} serves other data at revision {revision}"
        );
    }

    // Every acknowledged write is there, with its value.
    for (k, v) in &acked {
        assert_eq!(
            data.get(k),
            Some(v),
            "acknowledged write {k} lost or changed"
        );
    }
    // Nothing is there that no client sent.
    for (k, v) in &data {
        let sent = acked.get(k).or_else(|| unknown.get(k));
        assert_eq!(sent, Some(v), "{k}={v} was never written");
    }
    // The store's revision counts exactly the puts that were applied (each is a new key).
    assert_eq!(
        revision,
        1 + data.len() as i64,
        "revision {revision} for {} keys",
        data.len()
    );
}
