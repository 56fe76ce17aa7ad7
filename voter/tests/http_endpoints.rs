//! etcdctl with `http://` endpoints: its per-endpoint commands dial `passthrough:///<url>`, so
//! grpc-go sends the whole URL as the HTTP/2 `:authority`. etcd ignores it; mango must too
//! (third_party/h2 carries the patch), or these commands fail with PROTOCOL_ERROR.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::time::Duration;

use harness::Cluster;

#[test]
fn per_endpoint_commands_work_with_http_endpoints() {
    let c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(20));
    let urls: Vec<String> = c
        .voters
        .iter()
        .map(|v| format!("http://{}", v.endpoint()))
        .collect();
    let all = urls.join(",");
    for args in [
        vec!["put", "k", "v"],
        vec!["endpoint", "status"],
        vec!["endpoint", "hashkv"],
        vec!["defrag"],
    ] {
        let out = Cluster::etcdctl_at(&all, &args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "etcdctl {args:?} with http:// endpoints failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] == "endpoint" {
            assert_eq!(stdout.lines().count(), 3, "one line per endpoint: {stdout}");
        }
    }
    // move-leader asks each endpoint for its status first.
    let status = c.status((leader + 1) % 3).unwrap();
    let target = status["header"]["member_id"].as_u64().unwrap();
    let out = Cluster::etcdctl_at(&all, &["move-leader", &format!("{target:x}")]);
    assert!(
        out.status.success(),
        "move-leader: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
