//! etcd's auth end to end: the same etcdctl transcript (users, roles, read/readwrite/write
//! permissions on a prefix, a range and a key, `auth enable`, reads and writes inside and
//! outside a role, wrong passwords, root-only calls, `auth disable`) runs against a fresh
//! etcd 3.4 and a fresh 3-voter mango, directly and through mango-proxy, and the outputs must
//! be equal line by line (only the endpoint in per-endpoint messages is normalised). Then what
//! mango adds or etcd cannot show: token expiry, root-only admin calls with the etcd-client
//! crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mango_testkit::Cluster;
use mango_testkit::etcdctl::etcdctl_command;

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw";

/// One etcdctl call: its arguments and what it reads on stdin.
struct Step {
    args: Vec<String>,
    stdin: Option<String>,
}

fn step(args: &[&str]) -> Step {
    Step {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
    }
}

fn with_stdin(args: &[&str], stdin: &str) -> Step {
    Step {
        stdin: Some(stdin.into()),
        ..step(args)
    }
}

/// The input of `etcdctl txn`: compares, success ops, failure ops, each ended by an empty line.
fn txn(compares: &[&str], success: &[&str]) -> String {
    let section = |lines: &[&str]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    format!("{}\n{}\n\n", section(compares), section(success))
}

/// The transcript. Revisions are not printed, so a 3-voter mango and a 1-member etcd agree.
fn script() -> Vec<Step> {
    vec![
        step(&["auth", "enable"]), // root user does not exist
        step(&["user", "add", "root:rootpw"]),
        step(&["user", "add", "root:again"]), // already exists
        step(&["user", "add", ":pw"]),        // user name is empty
        step(&["role", "add", "r1"]),
        step(&["role", "add", "r1"]), // already exists
        step(&[
            "role",
            "grant-permission",
            "r1",
            "readwrite",
            "--prefix=true",
            "foo",
        ]),
        step(&["role", "grant-permission", "r1", "read", "a", "c"]),
        step(&["role", "grant-permission", "r1", "write", "w"]),
        step(&["role", "grant-permission", "nope", "read", "x"]), // role not found
        step(&["role", "get", "r1"]),
        step(&["user", "add", "alice:alicepw"]),
        step(&["user", "grant-role", "alice", "r1"]),
        step(&["user", "grant-role", "alice", "nope"]), // role not found
        step(&["user", "get", "alice"]),
        step(&["user", "list"]),
        step(&["role", "list"]),
        step(&["auth", "enable"]), // grants root the root role first
        // Without credentials.
        step(&["auth", "enable"]),
        step(&["put", "foo", "1"]),
        step(&["get", "foo"]),
        step(&["user", "list"]),
        // Wrong passwords.
        step(&["--user=alice:wrong", "get", "foo"]),
        step(&["--user=nobody:pw", "get", "foo"]),
        // Inside and outside alice's role.
        step(&[ALICE, "put", "foo1", "x"]),
        step(&[ALICE, "get", "foo1"]),
        step(&[ALICE, "get", "foo", "--prefix"]),
        step(&[ALICE, "get", "b"]),
        step(&[ALICE, "get", "a", "c"]),
        step(&[ALICE, "get", "a", "d"]), // beyond the range
        step(&[ALICE, "put", "b", "x"]), // read only
        step(&[ALICE, "put", "w", "x"]), // write only
        step(&[ALICE, "get", "w"]),
        step(&[ALICE, "put", "zzz", "x"]),
        step(&[ALICE, "get", "zzz"]),
        step(&[ALICE, "del", "zzz"]),
        step(&[ALICE, "put", "foo2", "y", "--prev-kv"]),
        with_stdin(
            &[ALICE, "txn"],
            &txn(&["value(\"b\") = \"x\""], &["put foo3 z"]),
        ),
        with_stdin(
            &[ALICE, "txn"],
            &txn(&["value(\"zzz\") = \"x\""], &["put foo3 z"]),
        ),
        with_stdin(&[ALICE, "txn"], &txn(&[], &["put foo3 z", "put zzz z"])),
        step(&[ALICE, "del", "foo", "--prefix"]),
        // Auth management is root's; a user reads itself and its roles.
        step(&[ALICE, "user", "list"]),
        step(&[ALICE, "user", "get", "alice"]),
        step(&[ALICE, "user", "get", "root"]),
        step(&[ALICE, "role", "get", "r1"]),
        step(&[ALICE, "role", "get", "root"]),
        step(&[ALICE, "role", "add", "r2"]),
        step(&[ALICE, "user", "add", "bob:pw"]),
        step(&[ALICE, "auth", "disable"]),
        // Admin calls etcd checks.
        step(&[
            ALICE,
            "member",
            "update",
            "1",
            "--peer-urls=http://127.0.0.1:1",
        ]),
        step(&[
            ROOT,
            "member",
            "update",
            "1",
            "--peer-urls=http://127.0.0.1:1",
        ]),
        step(&[ALICE, "defrag"]),
        step(&[ALICE, "endpoint", "hashkv"]),
        step(&[ALICE, "alarm", "list"]),
        // Root.
        step(&[ROOT, "put", "zzz", "r"]),
        step(&[ROOT, "get", "", "--prefix"]),
        step(&[ROOT, "user", "get", "root"]),
        step(&[ROOT, "role", "get", "root"]),
        step(&[ROOT, "user", "delete", "root"]),
        step(&[ROOT, "role", "delete", "root"]),
        step(&[ROOT, "user", "revoke-role", "root", "root"]),
        step(&[
            ROOT,
            "role",
            "revoke-permission",
            "r1",
            "foo",
            "--prefix=true",
        ]),
        step(&[ROOT, "role", "revoke-permission", "r1", "nope"]), // not granted
        step(&[ROOT, "role", "get", "r1"]),
        step(&[ALICE, "put", "foo1", "y"]), // no longer permitted
        with_stdin(
            &[ROOT, "user", "passwd", "alice", "--interactive=false"],
            "newpw\n",
        ),
        step(&[ALICE, "get", "b"]), // the old password
        step(&["--user=alice:newpw", "get", "b"]),
        step(&[ROOT, "user", "revoke-role", "alice", "r1"]),
        step(&[ROOT, "user", "revoke-role", "alice", "r1"]), // not granted
        step(&["--user=alice:newpw", "get", "b"]),
        step(&[ROOT, "user", "delete", "alice"]),
        step(&["--user=alice:newpw", "get", "b"]),
        step(&[ROOT, "role", "delete", "r1"]),
        step(&[ROOT, "auth", "disable"]),
        // Disabled again: anyone may do anything.
        step(&["auth", "disable"]),
        step(&["get", "", "--prefix"]),
        step(&["put", "free", "v"]),
        step(&["user", "list"]),
        step(&["role", "list"]),
        step(&["user", "delete", "root"]),
        step(&["user", "list"]),
    ]
}

/// Runs one step against `endpoint`: what it printed (stdout, then stderr without the
/// client's JSON log lines) and how it exited, with the endpoint normalised.
fn run(endpoint: &str, step: &Step) -> Vec<String> {
    let mut child = etcdctl_command(endpoint)
        .args(&step.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl is installed");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = &step.stdin {
        stdin.write_all(input.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let mut lines = vec![format!("$ etcdctl {}", step.args.join(" "))];
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    lines.extend(
        text.lines()
            .filter(|l| !l.starts_with("{\"level\""))
            .map(|l| l.replace(endpoint, "ENDPOINT")),
    );
    lines.push(format!("[exit {}]", out.status.code().unwrap_or(-1)));
    lines
}

fn transcript(endpoint: &str, steps: &[Step]) -> Vec<String> {
    steps.iter().flat_map(|s| run(endpoint, s)).collect()
}

/// Fails with the first differing line and its context (both transcripts are written to
/// `$AUTH_TRANSCRIPT_DIR`, if set, to read them whole).
fn assert_same(etcd: &[String], mango: &[String], what: &str) {
    if let Some(dir) = std::env::var_os("AUTH_TRANSCRIPT_DIR") {
        let dir = std::path::Path::new(&dir);
        std::fs::write(dir.join(format!("{what} etcd.txt")), etcd.join("\n")).unwrap();
        std::fs::write(dir.join(format!("{what} mango.txt")), mango.join("\n")).unwrap();
    }
    for (i, (a, b)) in etcd.iter().zip(mango).enumerate() {
        if a != b {
            let from = i.saturating_sub(6);
            panic!(
                "{what}: line {i} differs\netcd:\n{}\nmango:\n{}",
                etcd[from..(i + 3).min(etcd.len())].join("\n"),
                mango[from..(i + 3).min(mango.len())].join("\n")
            );
        }
    }
    assert_eq!(etcd.len(), mango.len(), "{what}: lengths differ");
}

#[test]
fn etcdctl_auth_transcript_matches_etcd() {
    let steps = script();
    let etcd = Cluster::etcd(1);
    let expected = transcript(&etcd.voters[0].endpoint(), &steps);
    drop(etcd);
    let cluster = Cluster::start(3);
    let mango = transcript(&cluster.voters[1].endpoint(), &steps);
    assert_same(&expected, &mango, "mango voter");
}

#[test]
fn etcdctl_auth_transcript_through_the_proxy_matches_etcd() {
    let steps = script();
    let etcd = Cluster::etcd(1);
    let expected = transcript(&etcd.voters[0].endpoint(), &steps);
    drop(etcd);
    let mut cluster = Cluster::start_tiered(&[]);
    cluster.start_proxy(&[]);
    let mango = transcript(&cluster.proxy().endpoint(), &steps);
    assert_same(&expected, &mango, "mango proxy");
}

/// The transcript against a learner: auth changes and writes are forwarded to the voters
/// with the caller's token; reads and permission checks come from the learner's own copy of
/// the auth state (simple tokens reach its token table through the log).
#[test]
fn etcdctl_auth_transcript_on_a_learner_matches_etcd() {
    let steps = script();
    let etcd = Cluster::etcd(1);
    let expected = transcript(&etcd.voters[0].endpoint(), &steps);
    drop(etcd);
    let mut d = Cluster::start_tiered(&[]);
    let upstream = d.voters[0].stream_addr();
    let l = d.add_learner(&upstream, &[]);
    let endpoint = d.learners[l].endpoint();
    // Ready once it has learned the voters' client URLs (it forwards writes to them).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !mango_testkit::etcdctl::etcdctl(&endpoint, &["put", "ready", "1"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the learner never took a write");
        std::thread::sleep(Duration::from_millis(100));
    }
    mango_testkit::etcdctl::etcdctl(&endpoint, &["del", "ready"]);
    let mango = transcript(&endpoint, &steps);
    assert_same(&expected, &mango, "mango learner");
}

/// Sets up root and a user `alice` with read on `foo` (prefix), then enables auth.
fn setup(endpoint: &str) {
    for s in [
        step(&["user", "add", "root:rootpw"]),
        step(&["role", "add", "r1"]),
        step(&[
            "role",
            "grant-permission",
            "r1",
            "read",
            "--prefix=true",
            "foo",
        ]),
        step(&["user", "add", "alice:alicepw"]),
        step(&["user", "grant-role", "alice", "r1"]),
        step(&["auth", "enable"]),
    ] {
        let out = run(endpoint, &s);
        assert_eq!(out.last().map(String::as_str), Some("[exit 0]"), "{out:?}");
    }
}

/// A simple token unused for `--auth-token-ttl` is forgotten: the next call with it answers
/// "invalid auth token"; the user authenticates again and goes on.
#[test]
fn simple_tokens_expire_after_their_ttl() {
    let cluster = Cluster::start_with(3, &["--auth-token-ttl", "2"]);
    let endpoint = cluster.voters[0].endpoint();
    setup(&endpoint);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let options = etcd_client::ConnectOptions::new().with_user("alice", "alicepw");
        let mut client = etcd_client::Client::connect([endpoint.as_str()], Some(options))
            .await
            .unwrap();
        client.get("foo", None).await.unwrap();
        let denied = client.put("foo", "x", None).await.unwrap_err();
        assert!(
            denied.to_string().contains("etcdserver: permission denied"),
            "{denied}"
        );
        // Unused for longer than the TTL (the sweep runs every second).
        tokio::time::sleep(Duration::from_secs(4)).await;
        let expired = client.get("foo", None).await.unwrap_err();
        assert!(
            expired
                .to_string()
                .contains("etcdserver: invalid auth token"),
            "{expired}"
        );
        let options = etcd_client::ConnectOptions::new().with_user("alice", "alicepw");
        let mut again = etcd_client::Client::connect([endpoint.as_str()], Some(options))
            .await
            .unwrap();
        again.get("foo", None).await.unwrap();
    });
}

/// Admin calls with the etcd-client crate: member update, alarm disarm, defragment,
/// compaction and move-leader refused to a user without the root role, done for root.
#[test]
fn admin_calls_are_root_only() {
    use etcd_client::{AlarmAction, AlarmOptions, AlarmType, ConnectOptions};
    let cluster = Cluster::start(3);
    let endpoint = cluster.voters[0].endpoint();
    setup(&endpoint);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let connect = |user: &'static str, pw: &'static str| {
            let endpoint = endpoint.clone();
            async move {
                etcd_client::Client::connect(
                    [endpoint.as_str()],
                    Some(ConnectOptions::new().with_user(user, pw)),
                )
                .await
                .unwrap()
            }
        };
        let mut alice = connect("alice", "alicepw").await;
        let mut root = connect("root", "rootpw").await;
        let members = root.member_list().await.unwrap();
        let me = members.members()[0].clone();
        let peer_urls = me.peer_urls().to_vec();
        let mut disarm_me = AlarmOptions::new();
        disarm_me.with_member(me.id());
        let denied = |e: etcd_client::Error| {
            let text = e.to_string();
            assert!(text.contains("permission denied"), "{text}");
        };
        denied(
            alice
                .member_update(me.id(), peer_urls.clone())
                .await
                .unwrap_err(),
        );
        root.member_update(me.id(), peer_urls).await.unwrap();
        denied(
            alice
                .alarm(
                    AlarmAction::Deactivate,
                    AlarmType::Nospace,
                    Some(disarm_me.clone()),
                )
                .await
                .unwrap_err(),
        );
        root.alarm(
            AlarmAction::Deactivate,
            AlarmType::Nospace,
            Some(disarm_me.clone()),
        )
        .await
        .unwrap();
        denied(alice.defragment().await.unwrap_err());
        root.defragment().await.unwrap();
        denied(alice.compact(1, None).await.unwrap_err());
        denied(alice.move_leader(me.id()).await.unwrap_err());
        // Anonymous: etcd's "user name is empty".
        let mut anonymous = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .unwrap();
        let empty = anonymous.get("foo", None).await.unwrap_err();
        assert!(
            empty.to_string().contains("etcdserver: user name is empty"),
            "{empty}"
        );
    });
    // The cluster is unharmed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.leader().is_none() {
        assert!(Instant::now() < deadline, "no leader after the admin calls");
        std::thread::sleep(Duration::from_millis(50));
    }
}
