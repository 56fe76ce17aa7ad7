//! Alarms as etcd 3.4 has them: an `AlarmRequest` ACTIVATE from a client goes through Raft
//! and is listed; while NOSPACE is raised puts, writing txns and lease grants fail with
//! etcd's error and code, while reads, deletes and read-only txns go on; `alarm disarm`
//! lifts it; CORRUPT refuses every write. The same script runs against a real etcd and
//! against mango, and the transcripts must be equal once member ids are normalised.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mango_proto::etcdserverpb::alarm_request::AlarmAction;
use mango_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use mango_proto::etcdserverpb::{AlarmRequest, AlarmType};
use mango_testkit::etcdctl::etcdctl_stdin;
use mango_testkit::{Cluster, etcdctl};

/// One line per observable outcome: stdout and stderr of etcdctl (member ids replaced), or
/// the gRPC answer of an ACTIVATE.
fn transcript(c: &Cluster) -> Vec<String> {
    let endpoints = c.endpoints();
    let member = c.member_id(0).expect("member id");
    let hex = format!("{member:x}");
    let mut out = Vec::new();
    let run = |args: &[&str], stdin: Option<&str>| -> String {
        let o = match stdin {
            Some(input) => etcdctl_stdin(&endpoints, args, input.as_bytes()),
            None => etcdctl(&endpoints, args),
        };
        let text = format!(
            "{args:?} -> {} | {} | {}",
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).trim(),
            // etcdctl prefixes errors with a timestamp and the client's log noise: keep the
            // error itself.
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .filter_map(|l| l.split("Error: ").nth(1))
                .collect::<Vec<_>>()
                .join(";"),
        );
        text.replace(&hex, "MEMBER")
            .replace(&member.to_string(), "MEMBER")
    };
    let activate = |alarm: AlarmType| {
        let url = c.voters[0].client_url();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut client = MaintenanceClient::connect(url).await.unwrap();
            let answer = client
                .alarm(AlarmRequest {
                    action: AlarmAction::Activate as i32,
                    member_id: member,
                    alarm: alarm as i32,
                })
                .await;
            match answer {
                Ok(r) => format!(
                    "activate {alarm:?} -> {:?}",
                    r.into_inner()
                        .alarms
                        .iter()
                        .map(|a| (a.member_id == member, a.alarm))
                        .collect::<Vec<_>>()
                ),
                Err(s) => format!("activate {alarm:?} -> {:?} {}", s.code(), s.message()),
            }
        })
    };

    out.push(run(&["put", "a", "1"], None));
    out.push(activate(AlarmType::None));
    out.push(activate(AlarmType::Nospace));
    out.push(run(&["alarm", "list"], None));
    out.push(run(&["put", "b", "2"], None));
    out.push(run(&["get", "a"], None));
    out.push(run(&["txn"], Some("\nput b 2\n\n\n")));
    out.push(run(&["txn"], Some("\nget a\n\n\n")));
    out.push(run(&["lease", "grant", "60"], None));
    out.push(run(&["del", "a"], None));
    out.push(run(&["alarm", "disarm"], None));
    out.push(run(&["alarm", "list"], None));
    out.push(run(&["put", "b", "2"], None));
    out.push(activate(AlarmType::Corrupt));
    out.push(run(&["alarm", "list"], None));
    out.push(run(&["put", "c", "3"], None));
    out.push(run(&["del", "b"], None));
    out.push(run(&["get", "b", "--consistency=s"], None));
    out
}

#[test]
fn alarms_answer_as_etcd_does() {
    let etcd = Cluster::etcd(1);
    etcd.wait_leader();
    let expected = transcript(&etcd);
    drop(etcd);
    let mango = Cluster::start(3);
    mango.wait_leader();
    let got = transcript(&mango);
    for (e, g) in expected.iter().zip(&got) {
        assert_eq!(g, e, "\netcd : {expected:#?}\nmango: {got:#?}");
    }
    assert_eq!(got.len(), expected.len());
    // The alarm really blocked writes (not only both systems failing alike).
    assert!(
        got.iter().any(|l| l.contains("database space exceeded")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|l| l.contains("corrupt cluster")),
        "{got:#?}"
    );
}
