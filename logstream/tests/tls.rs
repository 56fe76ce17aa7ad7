//! Who trusts whom: development certificates, a CA, the wrong CA, names, insecure mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{Follower, GROUP, MemLog, Server, init_tracing, localhost0};
use mango_logstream::{
    ClientTls, DEV_CERT_FILE, DEV_KEY_FILE, LogStreamError, ReadIndexClient, ServerTls,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA and a server certificate it issued for `names`, written as PEM files into `dir`
/// (`ca.crt`, `server.crt`, `server.key`).
fn ca_and_server(dir: &Path, names: &[&str]) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let server_cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
}

async fn leader_server(tls: ServerTls) -> Server {
    let source = MemLog::leader();
    source.commit(7, 10);
    Server::start(localhost0(), tls, source).await
}

#[tokio::test]
async fn a_ca_issued_certificate_is_trusted_and_another_ca_is_refused() {
    init_tracing();
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    ca_and_server(ours.path(), &["127.0.0.1"]);
    ca_and_server(theirs.path(), &["127.0.0.1"]);
    let tls = ServerTls::from_pem_files(
        &ours.path().join("server.crt"),
        &ours.path().join("server.key"),
    )
    .unwrap();
    let server = leader_server(tls).await;

    let trusted = ClientTls::trust_pem_file(&ours.path().join("ca.crt")).unwrap();
    let client = ReadIndexClient::new(vec![server.addr], trusted);
    assert_eq!(client.read_index(GROUP).await.unwrap(), 7);

    let other = ClientTls::trust_pem_file(&theirs.path().join("ca.crt")).unwrap();
    let client = ReadIndexClient::new(vec![server.addr], other.clone());
    let err = client.read_index(GROUP).await.unwrap_err();
    assert!(matches!(err, LogStreamError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // A follower that does not trust the server gets nothing.
    let sink = MemLog::learner();
    let follower = Follower::start(vec![server.addr], other, sink.clone());
    // The test: a window in which nothing may arrive (the absence of an event).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.last_index(), 0);
    follower.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_certificate_must_name_the_upstream() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    ca_and_server(dir.path(), &["logstream.example"]);
    let tls = ServerTls::from_pem_files(
        &dir.path().join("server.crt"),
        &dir.path().join("server.key"),
    )
    .unwrap();
    let server = leader_server(tls).await;
    let trusted = ClientTls::trust_pem_file(&dir.path().join("ca.crt")).unwrap();

    // Checked against 127.0.0.1, which the certificate does not name.
    let client = ReadIndexClient::new(vec![server.addr], trusted.clone());
    assert!(client.read_index(GROUP).await.is_err());

    let named = ReadIndexClient::new(
        vec![server.addr],
        trusted.with_server_name("logstream.example"),
    );
    assert_eq!(named.read_index(GROUP).await.unwrap(), 7);
    server.stop().await;
}

#[tokio::test]
async fn insecure_dev_accepts_any_server() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    ca_and_server(dir.path(), &["somewhere.else"]);
    let tls = ServerTls::from_pem_files(
        &dir.path().join("server.crt"),
        &dir.path().join("server.key"),
    )
    .unwrap();
    let server = leader_server(tls).await;
    let client = ReadIndexClient::new(vec![server.addr], ClientTls::insecure_dev());
    assert_eq!(client.read_index(GROUP).await.unwrap(), 7);

    let sink = MemLog::learner();
    let follower = Follower::start(vec![server.addr], ClientTls::insecure_dev(), sink.clone());
    common::wait_until(Duration::from_secs(5), "entries", || sink.last_index() == 7).await;
    follower.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_dev_certificate_is_made_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    let first = ServerTls::dev(&certs, &["learner-1.local".into(), "10.1.2.3".into()]).unwrap();
    let mode = std::fs::metadata(certs.join(DEV_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = ServerTls::dev(&certs, &[]).unwrap();
    assert_eq!(first.cert_pem(), again.cert_pem());
    assert_eq!(
        std::fs::read_to_string(certs.join(DEV_CERT_FILE)).unwrap(),
        first.cert_pem()
    );

    // Its SANs include the given name, localhost and 127.0.0.1.
    let server = leader_server(first).await;
    let trust = ClientTls::trust_pem_file(&certs.join(DEV_CERT_FILE)).unwrap();
    for name in ["learner-1.local", "localhost", "127.0.0.1"] {
        let client = ReadIndexClient::new(vec![server.addr], trust.clone().with_server_name(name));
        assert_eq!(client.read_index(GROUP).await.unwrap(), 7, "{name}");
    }
    server.stop().await;
}

#[test]
fn unusable_pem_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    assert!(ClientTls::trust_pem_file(&junk).is_err());
    assert!(ServerTls::from_pem_files(&junk, &junk).is_err());
    assert!(ClientTls::trust_pem_file(&dir.path().join("missing.pem")).is_err());
}

/// A server that requires client certificates (mutual TLS, the cluster CA) serves a follower
/// presenting one the CA issued, and refuses one without a certificate or with one of
/// another CA: only members of the cluster read the log.
#[tokio::test]
async fn a_server_requiring_client_certificates_refuses_strangers() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let ca = mango_tls::DevCa::load_or_create(&dir.path().join("ca"), "cluster").unwrap();
    let other = mango_tls::DevCa::generate("other").unwrap();
    let server_id = ca.issue("voter", &["127.0.0.1".into()]).unwrap();
    let tls = ServerTls::new(server_id).require_clients(ca.roots().unwrap());
    let server = leader_server(tls).await;
    let trust = ClientTls::trust(ca.roots().unwrap());

    let anonymous = ReadIndexClient::new(vec![server.addr], trust.clone());
    assert!(anonymous.read_index(GROUP).await.is_err(), "no certificate");
    let stranger = ReadIndexClient::new(
        vec![server.addr],
        trust.clone().with_identity(other.issue("x", &[]).unwrap()),
    );
    assert!(stranger.read_index(GROUP).await.is_err(), "another CA");
    let sink = MemLog::learner();
    let follower = Follower::start(vec![server.addr], trust.clone(), sink.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sink.last_index(),
        0,
        "a follower without a certificate got entries"
    );
    follower.stop().await;

    let member = trust.with_identity(ca.issue("learner", &[]).unwrap());
    let client = ReadIndexClient::new(vec![server.addr], member.clone());
    assert_eq!(client.read_index(GROUP).await.unwrap(), 7);
    server.stop().await;
}
