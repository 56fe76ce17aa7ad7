//! etcd's own CLI (Debian's etcdctl 3.4) against the services: put, get, del, endpoint status
//! and member list, checking what it prints.

mod common;

use common::{CLUSTER_ID, MEMBER_ID, TERM, TestServer};
use mango_api::ApiConfig;
use mango_testkit::etcdctl::{etcdctl_async, etcdctl_ok_async};
use serde_json::Value;

/// Runs etcdctl against `server` (its `http://` endpoint); returns stdout, failing the test on
/// a non-zero exit. Async: the server runs on this test's runtime.
async fn etcdctl(server: &TestServer, args: &[&str]) -> String {
    etcdctl_ok_async(&server.endpoint(), args).await
}

/// etcdctl prints ids as JSON numbers; u64 ids above 2^53 must still come through exactly.
fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

fn check_header(header: &Value, revision: i64) {
    assert_eq!(u64_of(&header["cluster_id"]), CLUSTER_ID, "{header}");
    assert_eq!(u64_of(&header["member_id"]), MEMBER_ID, "{header}");
    assert_eq!(u64_of(&header["raft_term"]), TERM, "{header}");
    assert_eq!(
        header["revision"].as_i64().unwrap_or(0),
        revision,
        "{header}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_speaks_to_the_services() {
    let server = TestServer::start(ApiConfig::default()).await;

    assert_eq!(etcdctl(&server, &["put", "foo/a", "1"]).await, "OK\n");
    assert_eq!(etcdctl(&server, &["put", "foo/b", "2"]).await, "OK\n");
    assert_eq!(etcdctl(&server, &["put", "other", "3"]).await, "OK\n");

    assert_eq!(
        etcdctl(&server, &["get", "--prefix", "foo/"]).await,
        "foo/a\n1\nfoo/b\n2\n"
    );
    assert_eq!(
        etcdctl(
            &server,
            &["get", "--prefix", "--keys-only", "--consistency=s", ""]
        )
        .await,
        "foo/a\n\nfoo/b\n\nother\n\n"
    );
    let json: Value =
        serde_json::from_str(&etcdctl(&server, &["get", "foo/a", "-w", "json"]).await)
            .expect("get prints JSON");
    check_header(&json["header"], 4);
    assert_eq!(json["count"], 1);

    assert_eq!(etcdctl(&server, &["del", "foo/a"]).await, "1\n");
    assert_eq!(etcdctl(&server, &["del", "--prefix", "foo/"]).await, "1\n");
    assert_eq!(etcdctl(&server, &["del", "nothing"]).await, "0\n");
    assert_eq!(etcdctl(&server, &["get", "--prefix", "foo/"]).await, "");

    // etcdctl 3.4 dials each endpoint of `endpoint status` (also `endpoint hashkv` and
    // `defrag`) on its own connection, sending the endpoint as given as the HTTP/2 :authority.
    // With a scheme ("http://host:port") that is not a valid authority: grpc-go servers let it
    // pass, hyper's h2 (under tonic) resets the stream with PROTOCOL_ERROR. Give these
    // commands the endpoint as host:port, which is also etcdctl's own default form.
    let host_port = server.addr.to_string();
    let status: Value = serde_json::from_str(
        &etcdctl_ok_async(&host_port, &["endpoint", "status", "-w", "json"]).await,
    )
    .expect("endpoint status prints JSON");
    let entry = &status[0];
    assert_eq!(entry["Endpoint"], host_port.as_str());
    let st = &entry["Status"];
    check_header(&st["header"], 6);
    assert_eq!(st["version"], "3.4.23");
    assert_eq!(u64_of(&st["leader"]), MEMBER_ID);
    // Six proposals: three puts and three deletes (one that deleted nothing).
    assert_eq!(u64_of(&st["raftIndex"]), 6);
    assert_eq!(u64_of(&st["raftAppliedIndex"]), 6);
    assert_eq!(u64_of(&st["raftTerm"]), TERM);
    assert!(st["dbSize"].as_i64().unwrap_or(0) > 0, "{st}");

    let members: Value =
        serde_json::from_str(&etcdctl(&server, &["member", "list", "-w", "json"]).await)
            .expect("member list prints JSON");
    check_header(&members["header"], 0);
    let list = members["members"].as_array().expect("members");
    assert_eq!(list.len(), 1);
    assert_eq!(u64_of(&list[0]["ID"]), MEMBER_ID);
    assert_eq!(list[0]["name"], "test-member");
    assert_eq!(list[0]["peerURLs"][0], "http://127.0.0.1:2380");
    assert_eq!(list[0]["clientURLs"][0], server.endpoint().as_str());

    let hashkv: Value = serde_json::from_str(
        &etcdctl_ok_async(&host_port, &["endpoint", "hashkv", "-w", "json"]).await,
    )
    .expect("endpoint hashkv prints JSON");
    check_header(&hashkv[0]["HashKV"]["header"], 6);
    assert_eq!(hashkv[0]["HashKV"]["compact_revision"], -1);
    assert!(hashkv[0]["HashKV"]["hash"].as_u64().is_some(), "{hashkv}");
    assert_eq!(etcdctl(&server, &["alarm", "list"]).await, "");
    assert_eq!(
        etcdctl_ok_async(&host_port, &["defrag"]).await,
        format!("Finished defragmenting etcd member[{host_port}]\n")
    );
    // `endpoint health` reads the key "health" and reports on stderr.
    let health = etcdctl_async(&server.endpoint(), &["endpoint", "health"]).await;
    assert!(health.status.success(), "{health:?}");
    let report = String::from_utf8_lossy(&health.stderr);
    assert!(
        report.starts_with(&format!("{} is healthy", server.endpoint())),
        "{report}"
    );

    // The table form, as people read it.
    let table = etcdctl(&server, &["member", "list"]).await;
    assert_eq!(
        table,
        format!(
            "{MEMBER_ID:x}, started, test-member, http://127.0.0.1:2380, {}, false\n",
            server.endpoint()
        )
    );
}
