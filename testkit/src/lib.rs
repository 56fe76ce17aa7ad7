//! Test support for the crates whose tests start real processes: a deployment on loopback of
//! 3 `mango-voter`s serving the log stream, any number of `mango-learner`s (each following a
//! voter or another learner) and optionally a `mango-proxy` in front of them, killed on
//! drop; and raw KV helpers that set `mango-consistency` metadata. Only tests depend on it.
//!
//! The binaries are found in the target directory of the test that runs (the workspace's
//! test command builds them all), or in `MANGO_BIN_DIR`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod layers;

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mango_proto::etcdserverpb::kv_client::KvClient;
use mango_proto::etcdserverpb::{PutRequest, RangeRequest, RangeResponse};
use tonic::transport::Channel;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where the binaries are: `MANGO_BIN_DIR`, else the profile directory of the running test
/// executable (`target/<profile>/deps/<test>` → `target/<profile>`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MANGO_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's directory");
    deps.parent().unwrap_or(deps).to_path_buf()
}

/// A binary of the workspace (`mango-voter`, `mango-learner`, `mango-proxy`).
fn sibling(name: &str) -> PathBuf {
    let bin = bin_dir().join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p mango-voter -p mango-learner -p \
         mango-proxy, or run the workspace's tests)",
        bin.display()
    );
    bin
}

/// The proxy binary.
pub fn proxy_bin() -> PathBuf {
    sibling("mango-proxy")
}

pub fn voter_bin() -> PathBuf {
    sibling("mango-voter")
}

pub fn learner_bin() -> PathBuf {
    sibling("mango-learner")
}

pub struct Proc {
    pub name: String,
    pub client_port: u16,
    pub stream_port: u16,
    pub peer_port: u16,
    /// Where `/metrics`, `/health` and friends are served (`--listen-metrics-urls`).
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    /// What a learner follows (log-stream addresses).
    pub upstream: String,
    pub extra: Vec<String>,
}

impl Proc {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn stream_addr(&self) -> String {
        format!("127.0.0.1:{}", self.stream_port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub voters: Vec<Proc>,
    pub learners: Vec<Proc>,
    pub voter_extra: Vec<String>,
    /// The proxy under test, if started.
    pub proxy: Option<Child>,
    /// Its client port.
    pub proxy_port: u16,
}

fn log_file(path: &PathBuf) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

impl Deployment {
    /// 3 voters serving the log stream, with `extra` flags; waits for a leader.
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let voters = (1..=3)
            .map(|i| {
                let name = format!("v{i}");
                Proc {
                    data_dir: dir.path().join(&name),
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client_port: free_port(),
                    stream_port: free_udp_port(),
                    peer_port: free_port(),
                    metrics_port: free_port(),
                    child: None,
                    upstream: String::new(),
                    extra: extra.iter().map(|s| s.to_string()).collect(),
                }
            })
            .collect();
        let mut d = Deployment {
            dir,
            voters,
            learners: Vec::new(),
            voter_extra: extra.iter().map(|s| s.to_string()).collect(),
            proxy: None,
            proxy_port: 0,
        };
        for i in 0..3 {
            d.spawn_voter(i);
        }
        d.wait_leader();
        d
    }

    fn initial_cluster(&self) -> String {
        self.voters
            .iter()
            .map(|v| format!("{}=http://127.0.0.1:{}", v.name, v.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn spawn_voter(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let v = &mut self.voters[i];
        let child = Command::new(voter_bin())
            .args(["--name", &v.name])
            .arg("--data-dir")
            .arg(&v.data_dir)
            .args(["--listen-client-urls", &format!("http://{}", v.endpoint())])
            .args([
                "--advertise-client-urls",
                &format!("http://{}", v.endpoint()),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", v.peer_port),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", v.peer_port),
            ])
            .args(["--initial-cluster", &initial])
            .args(["--listen-logstream-addr", &v.stream_addr()])
            .args([
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{}", v.metrics_port),
            ])
            .args(&v.extra)
            .stdout(Stdio::null())
            .stderr(log_file(&v.log))
            .spawn()
            .expect("start mango-voter");
        v.child = Some(child);
    }

    /// Adds and starts a learner following `upstream` (log-stream addresses); returns its index.
    pub fn add_learner(&mut self, upstream: &str, extra: &[&str]) -> usize {
        let i = self.learners.len();
        let name = format!("l{}", i + 1);
        self.learners.push(Proc {
            data_dir: self.dir.path().join(&name),
            log: self.dir.path().join(format!("{name}.log")),
            name,
            client_port: free_port(),
            stream_port: free_udp_port(),
            peer_port: 0,
            metrics_port: free_port(),
            child: None,
            upstream: upstream.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        });
        self.spawn_learner(i);
        i
    }

    pub fn spawn_learner(&mut self, i: usize) {
        let l = &mut self.learners[i];
        let child = Command::new(learner_bin())
            .args(["--name", &l.name])
            .arg("--data-dir")
            .arg(&l.data_dir)
            .args(["--listen-client-urls", &format!("http://{}", l.endpoint())])
            .args(["--upstream", &l.upstream])
            // On loopback the upstreams serve development certificates.
            .arg("--insecure-skip-upstream-verify")
            .args(["--listen-logstream-addr", &l.stream_addr()])
            .args([
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{}", l.metrics_port),
            ])
            .args(&l.extra)
            .stdout(Stdio::null())
            .stderr(log_file(&l.log))
            .spawn()
            .expect("start mango-learner");
        l.child = Some(child);
    }

    pub fn kill_learner(&mut self, i: usize) {
        if let Some(mut c) = self.learners[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill_voter(&mut self, i: usize) {
        if let Some(mut c) = self.voters[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn voter_endpoints(&self) -> Vec<String> {
        self.voters
            .iter()
            .filter(|v| v.child.is_some())
            .map(|v| format!("http://{}", v.endpoint()))
            .collect()
    }

    pub fn etcdctl_at(endpoint: &str, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .arg("--command-timeout=5s")
            .args(args)
            .output()
            .expect("etcdctl is installed")
    }

    /// The index of the leading voter.
    pub fn wait_leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for (i, v) in self.voters.iter().enumerate() {
                if v.child.is_none() {
                    continue;
                }
                let out = Self::etcdctl_at(&v.endpoint(), &["endpoint", "status", "-w", "json"]);
                if let Ok(s) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                    let st = &s[0]["Status"];
                    if st["leader"].as_u64().is_some_and(|l| l != 0)
                        && st["leader"] == st["header"]["member_id"]
                    {
                        return i;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Deployment {
    /// Starts `mango-proxy` over the voters and the learners started so far, with `extra`
    /// flags, and waits until it answers a stale read.
    pub async fn start_proxy(&mut self, extra: &[&str]) {
        let port = free_port();
        let voters = self.voter_endpoints().join(",");
        let learners = self
            .learners
            .iter()
            .map(|l| format!("http://{}", l.endpoint()))
            .collect::<Vec<_>>()
            .join(",");
        let log = self.dir.path().join("proxy.log");
        let child = Command::new(proxy_bin())
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{port}")])
            .args(["--voters", &voters])
            .args(["--learners", &learners])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log_file(&log))
            .spawn()
            .expect("start mango-proxy");
        self.proxy = Some(child);
        self.proxy_port = port;
        let mut c = kv(&self.proxy_endpoint()).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while get(&mut c, "startup", "linearizable").await.is_err() {
            assert!(Instant::now() < deadline, "the proxy never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The proxy's client endpoint (host:port).
    pub fn proxy_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.proxy_port)
    }

    /// The proxy's log.
    pub fn proxy_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// etcdctl against the proxy.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        Self::etcdctl_at(&self.proxy_endpoint(), args)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if let Some(mut c) = self.proxy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for p in self.voters.iter_mut().chain(self.learners.iter_mut()) {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A raw KV client (to set `mango-consistency` metadata).
pub async fn kv(endpoint: &str) -> KvClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(c) = KvClient::connect(format!("http://{endpoint}")).await {
            return c;
        }
        assert!(Instant::now() < deadline, "cannot connect to {endpoint}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Range with a consistency level.
pub async fn get(
    client: &mut KvClient<Channel>,
    key: &str,
    consistency: &str,
) -> Result<RangeResponse, tonic::Status> {
    let mut req = tonic::Request::new(RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("mango-consistency", consistency.parse().unwrap());
    client.range(req).await.map(|r| r.into_inner())
}

pub async fn put(client: &mut KvClient<Channel>, key: &str, value: &str) -> i64 {
    client
        .put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision
}

/// Waits until `endpoint` serves `key` = `value` with a stale read.
pub async fn wait_value(endpoint: &str, key: &str, value: &str, timeout: Duration) {
    let mut c = kv(endpoint).await;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = get(&mut c, key, "stale").await
            && r.kvs.first().is_some_and(|kv| kv.value == value.as_bytes())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{endpoint} never served {key}={value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` on 127.0.0.1:`port` (a metrics endpoint): the status code and the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The samples of a Prometheus page: `(name{labels}, value)`, comments skipped.
pub fn samples(page: &str) -> Vec<(String, f64)> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            Some((series.to_string(), value))
        })
        .collect()
}

/// The value of the series `series` (name with its labels as written) on `page`.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    samples(page)
        .into_iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| v)
}
