//! The space quota: past --quota-backend-bytes writes fail with etcd's NOSPACE error and the
//! alarm shows; reads and deletes still work.
#![allow(clippy::unwrap_used)]

use mango_testkit::{Cluster, etcdctl};

#[test]
fn writes_past_the_quota_raise_nospace() {
    let c = Cluster::start_with(3, &["--quota-backend-bytes", "200000"]);
    let value = "x".repeat(20_000);
    let mut refused = None;
    for i in 0..200 {
        let out = etcdctl(&c.endpoints(), &["put", &format!("k{i:03}"), &value]);
        if !out.status.success() {
            refused = Some(String::from_utf8_lossy(&out.stderr).to_string());
            break;
        }
    }
    let refused = refused.expect("the quota was never hit");
    assert!(
        refused.contains("etcdserver: mvcc: database space exceeded"),
        "{refused}"
    );
    // Reads still work.
    c.etcdctl(&["get", "k000", "--print-value-only"]);
    // The alarm is cluster-wide: every member lists it and refuses writes.
    for v in &c.voters {
        let out = etcdctl(&v.endpoint(), &["alarm", "list"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("NOSPACE"),
            "{}: {:?}",
            v.name,
            out
        );
        let put = etcdctl(&v.endpoint(), &["put", "more", "x"]);
        assert!(
            String::from_utf8_lossy(&put.stderr).contains("database space exceeded"),
            "{}",
            v.name
        );
    }
    // Deleting, compacting and defragmenting give the space back; disarming lets writes in.
    c.etcdctl(&["del", "k", "--prefix"]);
    let rev = c.etcdctl(&["get", "k000", "-w", "json"]);
    let rev = serde_json::from_str::<serde_json::Value>(&rev).unwrap()["header"]["revision"]
        .as_i64()
        .unwrap();
    c.etcdctl(&["compact", &rev.to_string(), "--physical"]);
    c.etcdctl(&["defrag"]);
    c.etcdctl(&["alarm", "disarm"]);
    assert!(c.etcdctl(&["alarm", "list"]).trim().is_empty());
    c.etcdctl(&["put", "after", "disarm"]);
}
