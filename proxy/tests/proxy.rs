//! `mango-proxy` in front of real voters and learners: etcdctl through it, routing by
//! consistency level, a learner killed under read load, the leader killed under write load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Deployment, get, kv, wait_value};
use mango_proto::etcdserverpb::PutRequest;

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
    let out = Deployment::etcdctl_at(endpoint, &["endpoint", "status", "-w", "json"]);
    json(&out)[0]["Status"]["header"]["member_id"]
        .as_u64()
        .unwrap()
}

fn stream_addrs(d: &Deployment) -> String {
    d.voters
        .iter()
        .map(|v| v.stream_addr())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_works_through_the_proxy_and_reads_are_routed_by_level() {
    let mut d = Deployment::start(&[]);
    let upstream = stream_addrs(&d);
    d.add_learner(&upstream, &[]);
    d.start_proxy(&[]).await;

    // KV.
    assert_eq!(text(&d.etcdctl(&["put", "foo", "bar"])).trim(), "OK");
    assert_eq!(text(&d.etcdctl(&["get", "foo"])), "foo\nbar\n");
    assert_eq!(text(&d.etcdctl(&["put", "foo2", "x"])).trim(), "OK");
    assert_eq!(text(&d.etcdctl(&["del", "foo2"])).trim(), "1");

    // Txn (etcdctl reads it from stdin).
    let mut txn = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", d.proxy_endpoint()))
        .arg("txn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    txn.stdin
        .take()
        .unwrap()
        .write_all(b"value(\"foo\") = \"bar\"\n\nput t1 yes\n\nput t1 no\n\n")
        .unwrap();
    let out = txn.wait_with_output().unwrap();
    assert!(text(&out).starts_with("SUCCESS"), "{}", text(&out));
    assert_eq!(
        text(&d.etcdctl(&["get", "t1", "--print-value-only"])),
        "yes\n"
    );

    // Leases.
    let granted = text(&d.etcdctl(&["lease", "grant", "60"]));
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(
        text(&d.etcdctl(&["put", "--lease", &id, "lk", "lv"])).trim(),
        "OK"
    );
    assert!(text(&d.etcdctl(&["lease", "keep-alive", "--once", &id])).contains(&id));
    assert!(text(&d.etcdctl(&["lease", "timetolive", &id, "--keys"])).contains("lk"));
    assert!(text(&d.etcdctl(&["lease", "revoke", &id])).contains("revoked"));
    assert_eq!(text(&d.etcdctl(&["get", "lk"])), "");

    // Cluster and maintenance.
    assert_eq!(
        text(&d.etcdctl(&["member", "list"])).lines().count(),
        3,
        "three voters"
    );
    let status = json(&d.etcdctl(&["endpoint", "status", "-w", "json"]));
    let leader = d.wait_leader();
    let leader_id = member_id(&d.voters[leader].endpoint());
    assert_eq!(status[0]["Status"]["leader"].as_u64(), Some(leader_id));

    // Watch: a historical event from the client's start revision, then a live one.
    let rev = json(&d.etcdctl(&["put", "wk", "1", "-w", "json"]))["header"]["revision"]
        .as_u64()
        .unwrap();
    let watcher = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", d.proxy_endpoint()))
        .args(["watch", "wk", "--rev", &rev.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(text(&d.etcdctl(&["put", "wk", "2"])).trim(), "OK");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = watcher.id();
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let out = watcher.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "PUT\nwk\n1\nPUT\nwk\n2\n",
        "{}",
        text(&out)
    );

    // Routing: a linearizable read is answered by the leader, a stale one by the learner.
    let learner_id = member_id(&d.learners[0].endpoint());
    wait_value(
        &d.learners[0].endpoint(),
        "foo",
        "bar",
        Duration::from_secs(10),
    )
    .await;
    let lin = json(&d.etcdctl(&["get", "foo", "-w", "json"]));
    assert_eq!(lin["header"]["member_id"].as_u64(), Some(leader_id));
    let stale = json(&d.etcdctl(&["get", "foo", "-w", "json", "--consistency=s"]));
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
    let mut d = Deployment::start(&[]);
    let upstream = stream_addrs(&d);
    d.add_learner(&upstream, &[]);
    d.add_learner(&upstream, &[]);
    d.start_proxy(&["--health-interval-ms", "200"]).await;
    let mut c = kv(&d.proxy_endpoint()).await;
    const KEYS: u64 = 20;
    for i in 0..KEYS {
        common::put(&mut c, &format!("k{i}"), &format!("v{i}")).await;
    }
    for l in &d.learners {
        wait_value(&l.endpoint(), "k19", "v19", Duration::from_secs(10)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let (ok_after, errors, wrong) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut readers = Vec::new();
    for r in 0..4u64 {
        let mut c = kv(&d.proxy_endpoint()).await;
        let (stop, killed) = (stop.clone(), killed.clone());
        let (ok_after, errors, wrong) = (ok_after.clone(), errors.clone(), wrong.clone());
        readers.push(tokio::spawn(async move {
            let mut n = r;
            while !stop.load(Ordering::Relaxed) {
                let i = n % KEYS;
                n += 1;
                match get(&mut c, &format!("k{i}"), "stale").await {
                    Ok(resp) => {
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
    tokio::time::sleep(Duration::from_millis(800)).await;
    d.kill_learner(0);
    killed.store(true, Ordering::Relaxed);
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
    let mut d = Deployment::start(&[]);
    d.start_proxy(&[
        "--health-interval-ms",
        "200",
        "--request-timeout-ms",
        "8000",
    ])
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let (acked_after, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut writers = Vec::new();
    for w in 0..3 {
        let mut c = kv(&d.proxy_endpoint()).await;
        let (stop, killed) = (stop.clone(), killed.clone());
        let (acked_after, errors) = (acked_after.clone(), errors.clone());
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
    tokio::time::sleep(Duration::from_millis(800)).await;
    let leader = d.wait_leader();
    let killed_at = Instant::now();
    d.kill_voter(leader);
    killed.store(true, Ordering::Relaxed);
    // Until a write is acknowledged after the kill (the blip), then a little more.
    while acked_after.load(Ordering::Relaxed) == 0 {
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "no write went through after the leader was killed; proxy log:\n{}",
            d.proxy_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let blip = killed_at.elapsed();
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
