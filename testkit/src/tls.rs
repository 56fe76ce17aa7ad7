//! A deployment with TLS on every channel, on loopback: a development CA (and a second,
//! foreign one for attacks), voters on `https://` client and peer URLs with mutual TLS
//! between peers and on the log stream, learners following them with a certificate, and
//! etcdctl with `--cacert` (and `--cert --key` when clients must present one).
//!
//! Every process has a loopback address of its own ([`Host`], never 127.0.0.1):
//! certificates issued by [`mango_tls::DevCa`] always name 127.0.0.1 and localhost, so a test
//! that checks "valid for another host" needs members elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mango_tls::DevCa;

use crate::net::{CLIENT_PORT, LOGSTREAM_PORT, PEER_PORT};
use crate::proc::Proc;
use crate::{Host, learner_bin, voter_bin};

fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// The development CA, a foreign CA, and the files issued by them, in a temporary folder.
pub struct Pki {
    /// Where the files are.
    pub dir: PathBuf,
    /// The cluster CA.
    pub ca: DevCa,
    /// Its certificate, for `--cacert` and the `--*trusted-ca-file` flags.
    pub ca_file: PathBuf,
    /// A CA nobody in the cluster trusts.
    pub other: DevCa,
    /// Its certificate.
    pub other_ca_file: PathBuf,
    /// A client certificate of the cluster CA (common name `root`).
    pub client: (PathBuf, PathBuf),
}

impl Pki {
    /// Makes both CAs and a client certificate under `dir`.
    pub fn new(dir: &Path) -> Self {
        let ca = DevCa::load_or_create(&dir.join("ca"), "mango test CA").unwrap();
        let other = DevCa::load_or_create(&dir.join("other-ca"), "someone else's CA").unwrap();
        let ca_file = dir.join("ca").join("ca.crt");
        let other_ca_file = dir.join("other-ca").join("ca.crt");
        let client = ca.issue_files(dir, "client", "root", &[]).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca,
            ca_file,
            other,
            other_ca_file,
            client,
        }
    }

    /// A certificate of the cluster CA for `hosts`, kept as `<stem>.crt`/`<stem>.key`.
    pub fn issue(&self, stem: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        self.ca.issue_files(&self.dir, stem, stem, &hosts).unwrap()
    }

    /// A certificate of the foreign CA for `hosts`.
    pub fn issue_other(&self, stem: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        self.other
            .issue_files(&self.dir, stem, stem, &hosts)
            .unwrap()
    }

    /// etcdctl's TLS flags: `--cacert`, and the client certificate when `with_cert`.
    pub fn etcdctl_flags(&self, with_cert: bool) -> Vec<String> {
        let mut flags = vec![format!("--cacert={}", self.ca_file.display())];
        if with_cert {
            flags.push(format!("--cert={}", self.client.0.display()));
            flags.push(format!("--key={}", self.client.1.display()));
        }
        flags
    }
}

/// etcdctl (API 3) at `endpoint` with `flags` (TLS) and `args`.
pub fn etcdctl(endpoint: &str, flags: &[String], args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=5s")
        .arg("--dial-timeout=3s")
        .args(flags)
        .args(args)
        .output()
        .expect("etcdctl is installed")
}

/// One process of the deployment.
pub struct Member {
    pub name: String,
    /// Its loopback address, reserved while the member lives.
    pub reserved: Host,
    /// The address as text.
    pub host: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// The log-stream port (UDP).
    pub stream_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Proc>,
}

impl Member {
    /// `https://host:client_port`.
    pub fn client_url(&self) -> String {
        format!("https://{}:{}", self.host, self.client_port)
    }

    /// `https://host:peer_port`.
    pub fn peer_url(&self) -> String {
        format!("https://{}:{}", self.host, self.peer_port)
    }

    /// `host:stream_port`.
    pub fn stream_addr(&self) -> String {
        format!("{}:{}", self.host, self.stream_port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process has exited (or was never started).
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| c.exited().is_some())
    }

    /// Kills the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    fn new(dir: &Path, name: &str) -> Self {
        let reserved = Host::reserve();
        Member {
            name: name.to_string(),
            host: reserved.ip().to_string(),
            reserved,
            client_port: CLIENT_PORT,
            peer_port: PEER_PORT,
            stream_port: LOGSTREAM_PORT,
            data_dir: dir.join(name),
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    fn spawn(&mut self, cmd: &mut Command) {
        cmd.stdout(Stdio::null()).stderr(log_file(&self.log));
        self.child = Some(Proc::spawn(&self.name, cmd, self.log.clone()).unwrap());
    }
}

/// Voters (and learners) with TLS everywhere; killed on drop.
pub struct SecureCluster {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub voters: Vec<Member>,
    pub learners: Vec<Member>,
    /// Clients must present a certificate of the CA (`--client-cert-auth`).
    pub client_cert_auth: bool,
}

impl SecureCluster {
    /// `n` voters, each on a loopback address of its own; waits for a leader.
    pub fn start(n: usize, client_cert_auth: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let voters = (1..=n)
            .map(|i| Member::new(dir.path(), &format!("v{i}")))
            .collect();
        let mut c = SecureCluster {
            dir,
            pki,
            voters,
            learners: Vec::new(),
            client_cert_auth,
        };
        let ca = c.pki.ca_file.clone();
        for i in 0..n {
            let host = c.voters[i].host.clone();
            let (cert, key) = c.pki.issue(&c.voters[i].name, &[&host]);
            c.spawn_voter(i, "new", &cert, &key, &ca);
        }
        c.wait_leader();
        c
    }

    /// The TLS flags etcdctl needs here.
    pub fn etcdctl_flags(&self) -> Vec<String> {
        self.pki.etcdctl_flags(self.client_cert_auth)
    }

    fn initial_cluster(&self) -> String {
        self.voters
            .iter()
            .map(|v| format!("{}={}", v.name, v.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Adds a voter slot on a loopback address of its own (not started); returns its index.
    pub fn add_slot(&mut self) -> usize {
        let name = format!("v{}", self.voters.len() + 1);
        self.voters.push(Member::new(self.dir.path(), &name));
        self.voters.len() - 1
    }

    /// Starts voter `i` with `cert`/`key` for both channels, trusting `ca` for peers.
    pub fn spawn_voter(&mut self, i: usize, state: &str, cert: &Path, key: &Path, ca: &Path) {
        let initial = self.initial_cluster();
        let client_ca = self.pki.ca_file.clone();
        let cert_auth = self.client_cert_auth;
        let v = &mut self.voters[i];
        let mut cmd = Command::new(voter_bin());
        cmd.args(["--name", &v.name])
            .arg("--data-dir")
            .arg(&v.data_dir)
            .args(["--listen-client-urls", &v.client_url()])
            .args(["--advertise-client-urls", &v.client_url()])
            .args(["--listen-peer-urls", &v.peer_url()])
            .args(["--initial-advertise-peer-urls", &v.peer_url()])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", state])
            .args(["--listen-logstream-addr", &v.stream_addr()])
            .arg("--cert-file")
            .arg(cert)
            .arg("--key-file")
            .arg(key)
            .arg("--trusted-ca-file")
            .arg(&client_ca)
            .arg(format!("--client-cert-auth={cert_auth}"))
            .arg("--peer-cert-file")
            .arg(cert)
            .arg("--peer-key-file")
            .arg(key)
            .arg("--peer-trusted-ca-file")
            .arg(ca)
            .arg("--peer-client-cert-auth");
        v.spawn(&mut cmd);
    }

    /// Adds and starts a learner following voter `upstream`'s log stream with a certificate
    /// of the cluster CA (`with_cert`) or none; returns its index.
    pub fn add_learner(&mut self, upstream: usize, with_cert: bool) -> usize {
        let i = self.learners.len();
        let name = format!("l{}", i + 1);
        let mut l = Member::new(self.dir.path(), &name);
        let (cert, key) = self.pki.issue(&name, &[&l.host.clone()]);
        let mut cmd = Command::new(learner_bin());
        cmd.args(["--name", &name])
            .arg("--data-dir")
            .arg(&l.data_dir)
            .args(["--listen-client-urls", &l.client_url()])
            .args(["--upstream", &self.voters[upstream].stream_addr()])
            .arg("--upstream-ca")
            .arg(&self.pki.ca_file)
            .arg("--cert-file")
            .arg(&cert)
            .arg("--key-file")
            .arg(&key)
            .arg("--trusted-ca-file")
            .arg(&self.pki.ca_file)
            .arg(format!("--client-cert-auth={}", self.client_cert_auth));
        if with_cert {
            cmd.arg("--upstream-cert")
                .arg(&cert)
                .arg("--upstream-key")
                .arg(&key);
        }
        l.spawn(&mut cmd);
        self.learners.push(l);
        i
    }

    /// etcdctl at voter `i` with this cluster's TLS flags.
    pub fn etcdctl(&self, i: usize, args: &[&str]) -> Output {
        etcdctl(&self.voters[i].client_url(), &self.etcdctl_flags(), args)
    }

    /// `endpoint status` of voter `i`, if it answers.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let out = self.etcdctl(i, &["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(v[0]["Status"].clone())
    }

    /// (leader's member id, its index, term): waits up to 20 s for a leader.
    pub fn wait_leader(&self) -> (u64, usize, u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for (i, v) in self.voters.iter().enumerate() {
                if v.child.is_none() {
                    continue;
                }
                if let Some(st) = self.status(i)
                    && let Some(leader) = st["leader"].as_u64().filter(|l| *l != 0)
                    && st["leader"] == st["header"]["member_id"]
                {
                    let term = st["header"]["raft_term"].as_u64().unwrap_or(0);
                    return (leader, i, term);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `check` holds, up to `timeout`; false if it never did.
    pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for SecureCluster {
    fn drop(&mut self) {
        for p in self.voters.iter_mut().chain(self.learners.iter_mut()) {
            p.kill();
        }
    }
}
