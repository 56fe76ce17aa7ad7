//! A voter configured by a TOML file (etcd's flag names as keys), with a flag overriding it.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use mango_testkit::proc::Proc;
use mango_testkit::{Host, etcdctl, voter_bin, wait_until};

#[test]
fn a_single_voter_runs_from_a_toml_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    // The voter's address, and another one for the file's client URL (never listened on).
    let (host, other) = (Host::reserve(), Host::reserve());
    let file = dir.path().join("voter.toml");
    std::fs::write(
        &file,
        format!(
            r#"
name = "solo"
data-dir = "{data}"
listen-client-urls = "{other}"
listen-peer-urls = "{peer}"
initial-cluster = "solo={peer}"
heartbeat-interval = 50
election-timeout = 500
"#,
            data = dir.path().join("data").display(),
            other = other.client_url(),
            peer = host.peer_url(),
        ),
    )
    .unwrap();
    let log = dir.path().join("solo.log");
    let _voter = Proc::spawn(
        "solo",
        Command::new(voter_bin())
            .arg("--config-file")
            .arg(&file)
            // The flag wins over the file's listen-client-urls.
            .args(["--listen-client-urls", &host.client_url()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
        log.clone(),
    )
    .unwrap();
    let endpoint = host.client_endpoint();
    wait_until(
        Duration::from_secs(15),
        "the voter to take a put on the flag's address",
        || {
            etcdctl(&endpoint, &["put", "from", "toml"])
                .status
                .success()
        },
    );
    let got = etcdctl(&endpoint, &["get", "from", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "toml");
    assert!(
        dir.path().join("data/member/db").exists(),
        "data-dir from the file is used"
    );
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    let out = Command::new(voter_bin())
        .args(["--initial-cluster-state", "sideways"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("new or existing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
