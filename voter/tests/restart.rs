//! Stop and restart every voter: the data and the revision come back identical.
#![allow(clippy::unwrap_used)]

use mango_testkit::{Cluster, etcdctl};

#[test]
fn stop_and_restart_all_voters_keeps_data_and_revision() {
    let mut c = Cluster::start(3);
    for i in 0..50 {
        c.etcdctl(&["put", &format!("key{i:02}"), &format!("value{i}")]);
    }
    c.etcdctl(&["del", "key07"]);
    let before = c.etcdctl(&["get", "key", "--prefix", "-w", "json"]);
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    for i in 0..3 {
        c.stop(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    c.wait_leader();
    let after: serde_json::Value =
        serde_json::from_str(&c.etcdctl(&["get", "key", "--prefix", "-w", "json"])).unwrap();
    assert_eq!(after["kvs"], before["kvs"]);
    assert_eq!(after["header"]["revision"], before["header"]["revision"]);
    assert_eq!(after["count"], 49);
    // And every voter serves the same thing locally.
    for i in 0..3 {
        let out = etcdctl(
            &c.voters[i].endpoint(),
            &["get", "key", "--prefix", "--consistency=s", "-w", "json"],
        );
        let local: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(local["kvs"], before["kvs"], "voter {i}");
    }
}

#[test]
fn kill_9_all_voters_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3);
    for i in 0..30 {
        c.etcdctl(&["put", &format!("k{i:02}"), "v"]);
    }
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    c.wait_leader();
    let out: serde_json::Value =
        serde_json::from_str(&c.etcdctl(&["get", "k", "--prefix", "-w", "json"])).unwrap();
    assert_eq!(out["count"], 30);
}

#[test]
fn kill_9_after_raft_log_compaction_replays_from_the_durable_store() {
    // The store is not fsynced per batch (the Raft log is the durable record); it is synced
    // before the log is compacted. Kill everything after several compactions: what the store
    // lost must still be in the log.
    let mut c = Cluster::start_with(
        3,
        &[
            "--snapshot-count",
            "100",
            "--snapshot-catchup-entries",
            "10",
        ],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let eps: Vec<String> = c
        .endpoints()
        .split(',')
        .map(|e| format!("http://{e}"))
        .collect();
    rt.block_on(async {
        let mut client = etcd_client::Client::connect(eps, None).await.unwrap();
        for i in 0..700 {
            client
                .put(format!("d/{i:04}"), format!("v{i}"), None)
                .await
                .unwrap();
        }
    });
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    c.wait_leader();
    let out: serde_json::Value =
        serde_json::from_str(&c.etcdctl(&["get", "d/", "--prefix", "--limit=1", "-w", "json"]))
            .unwrap();
    assert_eq!(out["count"], 700);
    assert_eq!(out["header"]["revision"], 701);
}
