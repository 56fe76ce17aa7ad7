//! The proxy with TLS on both sides, started with an etcd grpc-proxy command line
//! (`--endpoints`, `--listen-addr`, `--cacert --cert --key` towards the voters, etcd's
//! `--cert-file --key-file --trusted-ca-file --client-cert-auth` towards clients): etcdctl
//! with `--cacert --cert --key` → https proxy → https voters that require client
//! certificates. And the start-up rules: https upstreams need a CA, a plaintext listener off
//! loopback needs the flag that names the risk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use mango_testkit::tls::{SecureCluster, etcdctl};

/// Kills the proxy on drop.
struct Proxy(std::process::Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "etcdctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn etcdctl_through_an_https_proxy_to_https_voters() {
    let c = SecureCluster::start(3, true);
    let host = mango_testkit::Host::reserve();
    let ip = host.ip().to_string();
    let (cert, key) = c.pki.issue("proxy", &[&ip]);
    let port = mango_testkit::net::CLIENT_PORT;
    // Bare host:port, as grpc-proxy takes them: TLS because the TLS flags are given.
    let endpoints = c
        .voters
        .iter()
        .map(|v| format!("{}:{}", v.host, v.client_port))
        .collect::<Vec<_>>()
        .join(",");
    let log = c.dir.path().join("proxy.log");
    let ca = c.pki.ca_file.display().to_string();
    let (client_cert, client_key) = c.pki.client.clone();
    let child = Command::new(mango_testkit::proxy_bin())
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--listen-addr={ip}:{port}"))
        .arg(format!("--cacert={ca}"))
        .arg(format!("--cert={}", client_cert.display()))
        .arg(format!("--key={}", client_key.display()))
        .arg(format!("--cert-file={}", cert.display()))
        .arg(format!("--key-file={}", key.display()))
        .arg(format!("--trusted-ca-file={ca}"))
        .arg("--client-cert-auth")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start mango-proxy");
    let _proxy = Proxy(child);
    let url = format!("https://{ip}:{port}");
    let with_cert = c.pki.etcdctl_flags(true);

    let up = SecureCluster::wait_for(Duration::from_secs(20), || {
        etcdctl(&url, &with_cert, &["put", "through", "proxy"])
            .status
            .success()
    });
    assert!(
        up,
        "the proxy never took a put:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(ok(&etcdctl(&url, &with_cert, &["get", "through"])).contains("proxy"));
    assert!(
        ok(&etcdctl(
            &url,
            &with_cert,
            &["get", "through", "--consistency=s"]
        ))
        .contains("proxy")
    );
    // The write reached the voters.
    assert!(ok(&c.etcdctl(2, &["get", "through"])).contains("proxy"));
    // A watch through the proxy sees a write made at a voter.
    let mut watch = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={url}"))
        .args(&with_cert)
        .args(["watch", "w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Puts until the watch has surely started (it prints nothing until then).
    for _ in 0..10 {
        ok(&c.etcdctl(0, &["put", "w", "event"]));
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("event"),
        "the watch through the proxy saw nothing"
    );

    // Without a client certificate, or without the CA, the proxy refuses.
    let without_cert = c.pki.etcdctl_flags(false);
    assert!(
        !etcdctl(&url, &without_cert, &["get", "through"])
            .status
            .success()
    );
    assert!(!etcdctl(&url, &[], &["get", "through"]).status.success());
    let plain = format!("http://{ip}:{port}");
    assert!(!etcdctl(&plain, &[], &["get", "through"]).status.success());
}

/// Runs the proxy with `args` and returns its exit code and stderr (it must exit by itself).
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(mango_testkit::proxy_bin())
        .args(args)
        .output()
        .expect("run mango-proxy");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unsafe_set_ups_are_refused_at_start_naming_the_way_out() {
    let (code, err) = refused(&["--voters=https://127.0.0.1:1"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("--cacert"), "{err}");
    let (code, err) = refused(&[
        "--voters=127.0.0.1:1",
        "--listen-client-urls=http://192.0.2.1:2379",
    ]);
    assert_ne!(code, Some(0));
    assert!(err.contains("insecure-plaintext-clients"), "{err}");
    let (code, err) = refused(&[
        "--voters=127.0.0.1:1",
        "--listen-client-urls=https://127.0.0.1:2379",
    ]);
    assert_ne!(code, Some(0));
    assert!(err.contains("certificate"), "{err}");
}
