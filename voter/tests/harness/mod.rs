//! Test harness: real `mango-voter` processes on loopback, each with its own data directory
//! and log file, driven by real clients (`etcdctl`, `etcd-client`). Processes are killed when
//! the cluster is dropped, also when a test panics.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod etcd;
pub mod netns;
pub mod proxy;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound and released; good enough on a test machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One voter of a test cluster.
pub struct Voter {
    pub name: String,
    /// The loopback address it listens on (127.0.0.x: each voter may have its own, so a test
    /// can cut traffic between them with a firewall).
    pub host: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Voter {
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://{}:{}", self.host, self.peer_port)
    }
}

/// A cluster of voters.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub voters: Vec<Voter>,
    pub token: String,
    /// Extra flags for every voter.
    pub extra: Vec<String>,
    /// The network namespace each voter runs in (empty: the test's own).
    pub netns: Vec<String>,
}

pub fn voter_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mango-voter")
}

impl Cluster {
    /// Starts `n` voters and waits until they have a leader.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, &[])
    }

    /// Starts `n` voters with extra flags, all on 127.0.0.1.
    pub fn start_with(n: usize, extra: &[&str]) -> Self {
        let mut cluster = Self::build(n, extra, |_| "127.0.0.1".into());
        cluster.start_all();
        cluster
    }

    /// Starts one voter on each host of `net`, each in its own network namespace.
    pub fn start_in(net: &netns::Netns, extra: &[&str]) -> Self {
        let mut cluster = Self::build(net.hosts.len(), extra, |i| net.hosts[i].clone());
        cluster.netns = net.names.clone();
        cluster.start_all();
        cluster
    }

    fn start_all(&mut self) {
        for i in 0..self.voters.len() {
            self.spawn(i, "new");
        }
        self.wait_leader(Duration::from_secs(20));
    }

    /// The cluster's voters on `host(i)`, none started.
    fn build(n: usize, extra: &[&str], host: impl Fn(usize) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let voters = (0..n)
            .map(|i| {
                let name = format!("v{}", i + 1);
                Voter {
                    host: host(i),
                    data_dir: dir.path().join(&name),
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client_port: free_port(),
                    peer_port: free_port(),
                    child: None,
                }
            })
            .collect();
        Cluster {
            dir,
            voters,
            token: "test-token".into(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            netns: Vec::new(),
        }
    }

    fn initial_cluster(&self) -> String {
        self.voters
            .iter()
            .map(|v| format!("{}={}", v.name, v.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts voter `i` (again), as a member of a `state` ("new" or "existing") cluster.
    pub fn spawn(&mut self, i: usize, state: &str) {
        let initial = self.initial_cluster();
        let v = &mut self.voters[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&v.log)
            .unwrap();
        let mut command = match self.netns.get(i) {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, voter_bin()]);
                c
            }
            None => Command::new(voter_bin()),
        };
        let child = command
            .args(["--name", &v.name])
            .arg("--data-dir")
            .arg(&v.data_dir)
            .args(["--listen-client-urls", &format!("http://{}", v.endpoint())])
            .args([
                "--advertise-client-urls",
                &format!("http://{}", v.endpoint()),
            ])
            .args(["--listen-peer-urls", &v.peer_url()])
            .args(["--initial-advertise-peer-urls", &v.peer_url()])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mango-voter");
        v.child = Some(child);
    }

    /// Adds a voter slot (not started) and returns its index.
    pub fn add_slot(&mut self) -> usize {
        let i = self.voters.len();
        let name = format!("v{}", i + 1);
        self.voters.push(Voter {
            host: "127.0.0.1".into(),
            data_dir: self.dir.path().join(&name),
            log: self.dir.path().join(format!("{name}.log")),
            name,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
        });
        i
    }

    /// SIGKILL voter `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.voters[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM voter `i` and wait for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.voters[i].child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("{} did not stop on SIGTERM", self.voters[i].name);
        }
    }

    /// Endpoints of the running voters, comma-separated.
    pub fn endpoints(&self) -> String {
        self.voters
            .iter()
            .filter(|v| v.child.is_some())
            .map(Voter::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs etcdctl against `endpoints`.
    pub fn etcdctl_at(endpoints: &str, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg("--command-timeout=10s")
            .args(args)
            .output()
            .expect("etcdctl is installed (apt-get install etcd-client)")
    }

    /// Runs etcdctl against every running voter; panics with its output on failure.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = Self::etcdctl_at(&self.endpoints(), args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `endpoint status -w json` of voter `i`, parsed.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let out = Self::etcdctl_at(
            &self.voters[i].endpoint(),
            &["endpoint", "status", "-w", "json"],
        );
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.get(0)?.get("Status").cloned()
    }

    /// The index of the voter that leads, as every running voter that answers agrees.
    pub fn leader(&self) -> Option<usize> {
        let mut leader = None;
        for (i, v) in self.voters.iter().enumerate() {
            if v.child.is_none() {
                continue;
            }
            let s = self.status(i)?;
            let lead = s["leader"].as_u64()?;
            let me = s["header"]["member_id"].as_u64()?;
            if lead == 0 {
                return None;
            }
            if lead == me {
                leader = Some(i);
            }
        }
        leader
    }

    /// Waits until a leader is known to all running voters.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {timeout:?}; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many keys under `prefix` voter `i` serves from its own state (serializable).
    pub fn local_count(&self, i: usize, prefix: &str) -> Option<u64> {
        let args = [
            "get",
            prefix,
            "--prefix",
            "--consistency=s",
            "--limit=1",
            "-w",
            "json",
        ];
        let out = Self::etcdctl_at(&self.voters[i].endpoint(), &args);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()?["count"].as_u64()
    }

    /// Waits until voter `i` serves `n` keys under `prefix` locally; panics with its log if
    /// it does not within `timeout`.
    pub fn wait_local_count(&self, i: usize, prefix: &str, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let count = self.local_count(i, prefix);
            if count == Some(n) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} serves {count:?} keys under {prefix:?}, not {n}; log:\n{}",
                self.voters[i].name,
                self.log_of(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The log of voter `i`.
    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(&self.voters[i].log).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for v in &mut self.voters {
            if let Some(mut c) = v.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            // Keep the logs of a failed test.
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("voter logs kept in {}", dir.keep().display());
        }
    }
}
