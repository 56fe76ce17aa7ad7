//! A voter configured by a TOML file (etcd's flag names as keys), with a flag overriding it.
#![allow(clippy::unwrap_used)]

mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Cluster, free_port, voter_bin};

#[test]
fn a_single_voter_runs_from_a_toml_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer, other) = (free_port(), free_port(), free_port());
    let file = dir.path().join("voter.toml");
    std::fs::write(
        &file,
        format!(
            r#"
name = "solo"
data-dir = "{data}"
listen-client-urls = "http://127.0.0.1:{other}"
listen-peer-urls = "http://127.0.0.1:{peer}"
initial-cluster = "solo=http://127.0.0.1:{peer}"
heartbeat-interval = 50
election-timeout = 500
"#,
            data = dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(voter_bin())
        .arg("--config-file")
        .arg(&file)
        // The flag wins over the file's listen-client-urls.
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("127.0.0.1:{client}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = Cluster::etcdctl_at(&endpoint, &["put", "from", "toml"]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the voter never answered on the flag's port"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = Cluster::etcdctl_at(&endpoint, &["get", "from", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "toml");
    assert!(
        dir.path().join("data/member/db").exists(),
        "data-dir from the file is used"
    );
    let _ = child.kill();
    let _ = child.wait();
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
