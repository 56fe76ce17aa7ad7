//! `mango-proxy` in front of real voters and learners: etcdctl through it, routing by
//! consistency level, a learner killed under read load, the leader killed under write load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mango_proto::etcdserverpb::PutRequest;
use mango_testkit::etcdctl::{Background, etcdctl_stdin};
use mango_testkit::{Cluster, etcdctl, get, kv, wait_until_async, wait_value};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// The member id an endpoint reports in its Status header.
fn member_id(endpoint: &str) -> u64 {
    let out = etcdctl(endpoint, &["endpoint", "status", "-w", "json"]);
    json(&out)[0]["Status"]["header"]["member_id"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_works_through_the_proxy_and_reads_are_routed_by_level() {
    let mut d = Cluster::start_tiered(&[]);
    let upstream = d.stream_addrs();
    d.add_learner(&upstream, &[]);
    d.start_proxy(&[]);
    let proxy = d.proxy_endpoint();
    let ctl = |args: &[&str]| etcdctl(&proxy, args);

    // KV.
    assert_eq!(text(&ctl(&["put", "foo", "bar"])).trim(), "OK");
    assert_eq!(text(&ctl(&["get", "foo"])), "foo\nbar\n");
    assert_eq!(text(&ctl(&["put", "foo2", "x"])).trim(), "OK");
    assert_eq!(text(&ctl(&["del", "foo2"])).trim(), "1");

    // Txn (etcdctl reads it from stdin).
    let out = etcdctl_stdin(
        &proxy,
        &["txn"],
        b"value(\"foo\") = \"bar\"\n\nput t1 yes\n\nput t1 no\n\n",
    );
    assert!(text(&out).starts_with("SUCCESS"), "{}", text(&out));
    assert_eq!(text(&ctl(&["get", "t1", "--print-value-only"])), "yes\n");

    // Leases.
    let granted = text(&ctl(&["lease", "grant", "60"]));
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(
        text(&ctl(&["put", "--lease", &id, "lk", "lv"])).trim(),
        "OK"
    );
    assert!(text(&ctl(&["lease", "keep-alive", "--once", &id])).contains(&id));
    assert!(text(&ctl(&["lease", "timetolive", &id, "--keys"])).contains("lk"));
    assert!(text(&ctl(&["lease", "revoke", &id])).contains("revoked"));
    assert_eq!(text(&ctl(&["get", "lk"])), "");

    // Cluster and maintenance.
    assert_eq!(
        text(&ctl(&["member", "list"])).lines().count(),
        3,
        "three voters"
    );
    let status = json(&ctl(&["endpoint", "status", "-w", "json"]));
    let leader = d.wait_leader();
    let leader_id = member_id(&d.voters[leader].endpoint());
    assert_eq!(status[0]["Status"]["leader"].as_u64(), Some(leader_id));

    // Watch: a historical event from the client's start revision, then a live one.
    let rev = json(&ctl(&["put", "wk", "1", "-w", "json"]))["header"]["revision"]
        .as_u64()
        .unwrap();
    let watcher = Background::spawn(&proxy, &["watch", "wk", "--rev", &rev.to_string()]);
    let wait = Duration::from_secs(10);
    watcher.wait_stdout(wait, "the historical event", |out| out.lines().count() >= 3);
    assert_eq!(text(&ctl(&["put", "wk", "2"])).trim(), "OK");
    watcher.wait_stdout(wait, "the live event", |out| out.lines().count() >= 6);
    let (_, out, err) = watcher.finish();
    assert_eq!(out, "PUT\nwk\n1\nPUT\nwk\n2\n", "{err}");

    // Routing: a linearizable read is answered by the leader, a stale one by the learner
    // (once the proxy's health checks admit it: the first may have run before it listened).
    let learner_id = member_id(&d.learners[0].endpoint());
    wait_value(
        &d.learners[0].endpoint(),
        "foo",
        "bar",
        Duration::from_secs(10),
    )
    .await;
    d.wait_proxy_reads_on_learners();
    let lin = json(&ctl(&["get", "foo", "-w", "json"]));
    assert_eq!(lin["header"]["member_id"].as_u64(), Some(leader_id));
    let stale = json(&ctl(&["get", "foo", "-w", "json", "--consistency=s"]));
    assert_eq!(stale["header"]["member_id"].as_u64(), Some(learner_id));
    assert_eq!(stale["kvs"][0]["value"], "YmFy", "bar, base64");
    // mango's own metadata goes through too.
    let mut c = kv(&d.proxy_endpoint()).await;
    for level in ["learner-linearizable", "bounded=5000", "stale"] {
        let r = get(&mut c, "foo", level).await.unwrap();
        assert_eq!(r.header.unwrap().member_id, learner_id, "{level}");
        assert_eq!(r.kvs[0].value, b"bar");
    }
    let bad = get(&mut c, "foo", "fresh").await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_killed_under_read_load_costs_no_wrong_answers() {
    let mut d = Cluster::start_tiered(&[]);
    let upstream = d.stream_addrs();
    d.add_learner(&upstream, &[]);
    d.add_learner(&upstream, &[]);
    d.start_proxy(&["--health-interval-ms", "200"]);
    let mut c = kv(&d.proxy_endpoint()).await;
    const KEYS: u64 = 20;
    for i in 0..KEYS {
        mango_testkit::put(&mut c, &format!("k{i}"), &format!("v{i}")).await;
    }
    for l in &d.learners {
        wait_value(&l.endpoint(), "k19", "v19", Duration::from_secs(10)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let (ok_all, ok_after, errors, wrong) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut readers = Vec::new();
    for r in 0..4u64 {
        let mut c = kv(&d.proxy_endpoint()).await;
        let (stop, killed) = (stop.clone(), killed.clone());
        let (ok_all, ok_after) = (ok_all.clone(), ok_after.clone());
        let (errors, wrong) = (errors.clone(), wrong.clone());
        readers.push(tokio::spawn(async move {
            let mut n = r;
            while !stop.load(Ordering::Relaxed) {
                let i = n % KEYS;
                n += 1;
                match get(&mut c, &format!("k{i}"), "stale").await {
                    Ok(resp) => {
                        ok_all.fetch_add(1, Ordering::Relaxed);
                        if resp.kvs.len() != 1 || resp.kvs[0].value != format!("v{i}").as_bytes() {
                            wrong.fetch_add(1, Ordering::Relaxed);
                        }
                        if killed.load(Ordering::Relaxed) {
                            ok_after.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // The reads are under way on both learners, then one is killed.
    wait_until_async(Duration::from_secs(10), "100 reads answered", || {
        let ok = ok_all.load(Ordering::Relaxed);
        async move { ok >= 100 }
    })
    .await;
    d.kill_learner(0);
    killed.store(true, Ordering::Relaxed);
    // The test: reads go on for 2 s after the kill.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let (ok_after, errors, wrong) = (
        ok_after.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        wrong.load(Ordering::Relaxed),
    );
    eprintln!("reads after the kill: {ok_after} ok, {errors} errors, {wrong} wrong");
    assert_eq!(wrong, 0);
    assert!(errors <= 4, "at most a blip of failed reads: {errors}");
    assert!(ok_after > 50, "reads go on after the kill: {ok_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_after_the_leader_is_killed() {
    let mut d = Cluster::start_tiered(&[]);
    d.start_proxy(&[
        "--health-interval-ms",
        "200",
        "--request-timeout-ms",
        "8000",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let (acked_all, acked_after, errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut writers = Vec::new();
    for w in 0..3 {
        let mut c = kv(&d.proxy_endpoint()).await;
        let (stop, killed) = (stop.clone(), killed.clone());
        let (acked_all, acked_after, errors) =
            (acked_all.clone(), acked_after.clone(), errors.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let put = c
                    .put(PutRequest {
                        key: format!("w{w}-{n}").into_bytes(),
                        value: n.to_string().into_bytes(),
                        ..Default::default()
                    })
                    .await;
                match put {
                    Ok(_) => {
                        acked.push(n);
                        acked_all.fetch_add(1, Ordering::Relaxed);
                        if killed.load(Ordering::Relaxed) {
                            acked_after.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        eprintln!("writer {w}: {e}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (w, acked)
        }));
    }
    // The writes are under way, then the leader is killed.
    wait_until_async(Duration::from_secs(10), "30 writes acknowledged", || {
        let acked = acked_all.load(Ordering::Relaxed);
        async move { acked >= 30 }
    })
    .await;
    let leader = d.wait_leader();
    let killed_at = Instant::now();
    d.kill(leader);
    killed.store(true, Ordering::Relaxed);
    // Until a write is acknowledged after the kill (the blip), then a little more.
    wait_until_async(
        Duration::from_secs(10),
        format!(
            "a write to go through after the leader was killed (proxy log {})",
            d.proxy().log.display()
        ),
        || {
            let acked = acked_after.load(Ordering::Relaxed);
            async move { acked > 0 }
        },
    )
    .await;
    let blip = killed_at.elapsed();
    // The test's schedule: writes go on for 500 ms after the blip.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut c = kv(&d.proxy_endpoint()).await;
    let errors = errors.load(Ordering::Relaxed);
    eprintln!(
        "blip {blip:?}, {} acked after the kill, {errors} errors",
        acked_after.load(Ordering::Relaxed)
    );
    assert!(
        errors <= 6,
        "only writes in flight at the kill may fail: {errors}"
    );
    // Every acknowledged write survived the failover.
    for w in writers {
        let (w, acked) = w.await.unwrap();
        for n in acked.iter().rev().take(20) {
            let r = get(&mut c, &format!("w{w}-{n}"), "linearizable")
                .await
                .unwrap();
            assert_eq!(r.kvs.len(), 1, "acked write w{w}-{n} lost");
        }
    }
}
