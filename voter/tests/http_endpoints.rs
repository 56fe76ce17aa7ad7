//! etcdctl with `http://` endpoints: its per-endpoint commands dial `passthrough:///<url>`, so
//! grpc-go sends the whole URL as the HTTP/2 `:authority`. etcd ignores it; mango must too
//! (third_party/h2 carries the patch), or these commands fail with PROTOCOL_ERROR.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mango_testkit::{Cluster, etcdctl};

#[test]
fn per_endpoint_commands_work_with_http_endpoints() {
    let c = Cluster::start(3);
    let leader = c.wait_leader();
    let all = c.voter_urls().join(",");
    for args in [
        vec!["put", "k", "v"],
        vec!["endpoint", "status"],
        vec!["endpoint", "hashkv"],
        vec!["defrag"],
    ] {
        let out = etcdctl(&all, &args);
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
    let target = c.member_id((leader + 1) % 3).unwrap();
    let out = etcdctl(&all, &["move-leader", &format!("{target:x}")]);
    assert!(
        out.status.success(),
        "move-leader: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
