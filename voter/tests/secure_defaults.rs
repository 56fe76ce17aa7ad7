//! Secure by default: a peer or client listener off loopback without TLS (peers: mutual TLS
//! against a CA) is refused at start, naming the flag that would accept the risk; a learner
//! with no CA for its upstream refuses to start unless told to skip the check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn start(bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn listeners_off_loopback_need_tls_or_a_flag_naming_the_risk() {
    let voter = env!("CARGO_BIN_EXE_mango-voter");
    // 192.0.2.1 (TEST-NET-1) is never bound: the check refuses before any bind.
    let (code, err) = start(
        voter,
        &[
            "--listen-peer-urls",
            "http://192.0.2.1:2380",
            "--initial-cluster",
            "default=http://192.0.2.1:2380",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--insecure-unauthenticated-peers"), "{err}");
    let (code, err) = start(voter, &["--listen-client-urls", "http://192.0.2.1:2379"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--insecure-plaintext-clients"), "{err}");
    // https:// needs a certificate.
    let (code, err) = start(voter, &["--listen-client-urls", "https://127.0.0.1:1"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("certificate"), "{err}");
    // --peer-client-cert-auth needs the CA to check against.
    let (code, err) = start(voter, &["--peer-client-cert-auth"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--peer-trusted-ca-file"), "{err}");
}

#[test]
fn a_learner_without_a_ca_for_its_upstream_refuses_to_start() {
    let learner = mango_testkit::learner_bin();
    let (code, err) = start(learner.to_str().unwrap(), &["--upstream", "127.0.0.1:1"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--upstream-ca"), "{err}");
    assert!(err.contains("--insecure-skip-upstream-verify"), "{err}");
}
