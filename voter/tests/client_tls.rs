//! Client TLS with real clients (etcdctl and the `etcd-client` crate) against voters and
//! learners on `https://` URLs, with peers and the log stream on mutual TLS: `--cacert` is
//! needed to trust them; with `--client-cert-auth` a client certificate of the CA is needed
//! too. And the log stream: an unmodified learner with no client certificate, pointed at a
//! voter's log-stream port, is refused and serves nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use mango_testkit::tls::{SecureCluster, etcdctl};

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "etcdctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `get key` with `flags` at `endpoint` (serializable) prints `value`.
fn wait_get(endpoint: &str, flags: &[String], key: &str, value: &str) {
    let served = SecureCluster::wait_for(Duration::from_secs(20), || {
        let out = etcdctl(endpoint, flags, &["get", key, "--consistency=s"]);
        String::from_utf8_lossy(&out.stdout).contains(value)
    });
    assert!(served, "{endpoint} never served {key}={value}");
}

/// etcd-client over TLS trusting the CA, presenting `identity` when given.
async fn etcd_client(
    c: &SecureCluster,
    url: &str,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Client, etcd_client::Error> {
    let ca = std::fs::read(&c.pki.ca_file).unwrap();
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    let opts = ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5));
    Client::connect([url], Some(opts)).await
}

async fn client_get(client: &mut Client, key: &str) -> Result<Option<String>, etcd_client::Error> {
    let r = client
        .get(key, Some(GetOptions::new().with_serializable()))
        .await?;
    Ok(r.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cacert_is_enough_to_reach_voters_and_learners_over_https() {
    let mut c = SecureCluster::start(3, false);
    let l = c.add_learner(0, true);
    let flags = c.etcdctl_flags();
    let voter = c.voters[0].client_url();
    let learner = c.learners[l].client_url();

    // etcdctl with --cacert: put and get at a voter, the write read back at the learner.
    assert_eq!(
        ok(&etcdctl(&voter, &flags, &["put", "k", "v1"])).trim(),
        "OK"
    );
    assert!(ok(&etcdctl(&voter, &flags, &["get", "k"])).contains("v1"));
    wait_get(&learner, &flags, "k", "v1");
    // A put at the learner is forwarded to the voters (over https, trusting the same CA).
    assert_eq!(
        ok(&etcdctl(&learner, &flags, &["put", "k2", "via-learner"])).trim(),
        "OK"
    );
    assert!(ok(&etcdctl(&voter, &flags, &["get", "k2"])).contains("via-learner"));

    // Without --cacert the server is not trusted.
    for url in [&voter, &learner] {
        let out = etcdctl(url, &[], &["get", "k"]);
        assert!(!out.status.success(), "{url} answered without --cacert");
    }
    // Plaintext to an https URL gets nothing either.
    let plain = format!("http://{}:{}", c.voters[0].host, c.voters[0].client_port);
    assert!(!etcdctl(&plain, &[], &["get", "k"]).status.success());

    // etcd-client with the CA: put and get at the voter, get at the learner.
    let mut vc = etcd_client(&c, &voter, None).await.unwrap();
    vc.put("k3", "from-etcd-client", None).await.unwrap();
    assert_eq!(
        client_get(&mut vc, "k3").await.unwrap().as_deref(),
        Some("from-etcd-client")
    );
    wait_get(&learner, &flags, "k3", "from-etcd-client");
    let mut lc = etcd_client(&c, &learner, None).await.unwrap();
    assert_eq!(
        client_get(&mut lc, "k").await.unwrap().as_deref(),
        Some("v1")
    );
    // etcd-client trusting another CA is refused.
    let other = std::fs::read(&c.pki.other_ca_file).unwrap();
    let opts = ConnectOptions::new()
        .with_tls(TlsOptions::new().ca_certificate(Certificate::from_pem(other)))
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(3));
    let refused = match Client::connect([voter.as_str()], Some(opts)).await {
        Ok(mut client) => client_get(&mut client, "k").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client trusting another CA reached the voter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_cert_auth_only_clients_with_a_certificate_get_in() {
    let mut c = SecureCluster::start(3, true);
    let l = c.add_learner(0, true);
    let with_cert = c.pki.etcdctl_flags(true);
    let without = c.pki.etcdctl_flags(false);
    let voter = c.voters[1].client_url();
    let learner = c.learners[l].client_url();

    assert_eq!(
        ok(&etcdctl(&voter, &with_cert, &["put", "k", "v"])).trim(),
        "OK"
    );
    wait_get(&learner, &with_cert, "k", "v");
    assert_eq!(
        ok(&etcdctl(
            &learner,
            &with_cert,
            &["put", "k2", "via-learner"]
        ))
        .trim(),
        "OK",
        "the learner forwards with its own certificate"
    );
    for url in [&voter, &learner] {
        let out = etcdctl(url, &without, &["get", "k"]);
        assert!(
            !out.status.success(),
            "{url} answered a client without a certificate"
        );
    }
    // A certificate of another CA is refused too.
    let (cert, key) = c.pki.issue_other("stranger", &[]);
    let mut foreign = without.clone();
    foreign.push(format!("--cert={}", cert.display()));
    foreign.push(format!("--key={}", key.display()));
    assert!(!etcdctl(&voter, &foreign, &["get", "k"]).status.success());

    // etcd-client: with the client certificate in, without refused.
    let (ccert, ckey) = c.pki.client.clone();
    for url in [&voter, &learner] {
        let mut client = etcd_client(&c, url, Some((&ccert, &ckey))).await.unwrap();
        assert_eq!(
            client_get(&mut client, "k").await.unwrap().as_deref(),
            Some("v")
        );
        let refused = match etcd_client(&c, url, None).await {
            Ok(mut client) => client_get(&mut client, "k").await.is_err(),
            Err(_) => true,
        };
        assert!(refused, "{url}: etcd-client without a certificate got in");
    }
}

/// Issue 16: "an unmodified mango-learner with no credentials, pointed at a voter's
/// log-stream port, installs a full snapshot and serves every key". Now the voter asks for a
/// client certificate of the cluster CA and the learner gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_without_a_certificate_is_refused_by_the_log_stream() {
    let mut c = SecureCluster::start(3, false);
    let flags = c.etcdctl_flags();
    assert_eq!(ok(&c.etcdctl(0, &["put", "secret", "s3cr3t"])).trim(), "OK");
    let good = c.add_learner(0, true);
    let bad = c.add_learner(0, false);
    // The learner with a certificate catches up: the stream works at all.
    wait_get(&c.learners[good].client_url(), &flags, "secret", "s3cr3t");
    // The one without never serves the key (its client API may answer, empty, or not at all).
    let bad_url = c.learners[bad].client_url();
    let leaked = SecureCluster::wait_for(Duration::from_secs(5), || {
        let out = etcdctl(&bad_url, &flags, &["get", "secret", "--consistency=s"]);
        String::from_utf8_lossy(&out.stdout).contains("s3cr3t")
    });
    assert!(
        !leaked,
        "a learner without a certificate served the key:\n{}",
        c.learners[bad].log_text()
    );
    // Refused at the handshake, as the voter logs or the learner reports it: QUIC reports
    // the refusal as a TLS alert naming the certificate, or (when the server closes during
    // the handshake) as a lost connection, depending on timing.
    let logs = format!("{}{}", c.learners[bad].log_text(), c.voters[0].log_text()).to_lowercase();
    assert!(
        logs.contains("certificate") || logs.contains("connection lost"),
        "no word of a refused connection in the logs:\n{logs}"
    );
}
