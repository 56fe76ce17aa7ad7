//! A cluster of real processes: voters (`mango-voter`, or a real etcd speaking the same
//! flags), any number of learners (each following a voter's or another learner's log stream)
//! and optionally `mango-proxy` in front of them. Every process has a loopback address of its
//! own ([`Host`]) and listens on the fixed ports there; data directories and logs are under
//! one directory (a temporary one, kept when a test fails). Everything is killed on drop.
//!
//! The methods that start or query processes panic on failure, as tests want; the
//! benchmark's fallible ones start with `try_`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::bins;
use crate::etcdctl::{etcdctl, etcdctl_ok};
use crate::net::Host;
use crate::netns::Netns;
use crate::proc::Proc;
use crate::wait::wait_until;

/// How long [`Cluster::start`] and [`Cluster::wait_leader`] wait for a leader.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

/// What the voters run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum System {
    /// A real etcd (3.4), with the same flags.
    Etcd,
    /// `mango-voter`.
    Mango,
}

impl System {
    pub const BOTH: [System; 2] = [System::Etcd, System::Mango];

    pub fn name(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Mango => "mango",
        }
    }
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One process of the cluster (a voter, a learner or the proxy), started or not.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    /// Its own address; kept across restarts.
    pub host: Host,
    pub data_dir: PathBuf,
    /// Its stdout and stderr, appended across restarts.
    pub log: PathBuf,
    /// The running process, if started.
    pub proc: Option<Proc>,
    /// Flags of its own, after the cluster's.
    pub flags: Vec<String>,
    /// What a learner follows (log-stream addresses, comma-separated).
    pub upstream: String,
    /// The network namespace a voter runs in (`None`: the test's own).
    pub netns: Option<String>,
    /// Whether a voter starts as a member of an existing cluster (`--initial-cluster-state
    /// existing`): added slots do, founders do not.
    pub joins: bool,
}

impl Member {
    fn new(name: String, host: Host, dir: &Path) -> Member {
        Member {
            data_dir: dir.join(&name),
            log: dir.join(format!("{name}.log")),
            name,
            host,
            proc: None,
            flags: Vec::new(),
            upstream: String::new(),
            netns: None,
            joins: false,
        }
    }

    /// `ip:2379`.
    pub fn endpoint(&self) -> String {
        self.host.client_endpoint()
    }

    /// `http://ip:2379`.
    pub fn client_url(&self) -> String {
        self.host.client_url()
    }

    /// `http://ip:2380`.
    pub fn peer_url(&self) -> String {
        self.host.peer_url()
    }

    /// `ip:2381`: where it serves its log stream (voters with the log stream, learners).
    pub fn stream_addr(&self) -> String {
        self.host.logstream_addr()
    }

    /// `ip:2382`: where the member serves its metrics and health (`--listen-metrics-urls`).
    pub fn metrics_addr(&self) -> String {
        self.host.metrics_addr()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log has a line containing every one of `needles`; that line.
    pub fn wait_log(&self, timeout: Duration, needles: &[&str]) -> String {
        wait_until(
            timeout,
            format_args!("a line with {needles:?} in {}", self.log.display()),
            || {
                self.log_text()
                    .lines()
                    .find(|l| needles.iter().all(|n| l.contains(n)))
                    .map(str::to_owned)
            },
        )
    }

    /// Whether it was started and not killed or stopped since (it may have exited).
    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// Its pid, if started.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Sends `signal` (`STOP`, `CONT`, ...); panics if it is not running.
    pub fn signal(&self, signal: &str) {
        let proc = self
            .proc
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        assert!(proc.signal(signal), "kill -{signal} {}", self.name);
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    fn spawn(&mut self, mut cmd: Command) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        cmd.env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        self.kill();
        self.proc = Some(Proc::spawn(&self.name, &mut cmd, self.log.clone())?);
        Ok(())
    }
}

/// Where the data directories and logs are.
#[derive(Debug)]
enum Workdir {
    /// A temporary directory (kept when the test fails).
    Temp(Option<tempfile::TempDir>),
    /// A directory the caller chose, kept.
    Given(PathBuf),
}

/// The binaries a cluster runs.
#[derive(Clone, Debug, Default)]
struct Bins {
    voter: Option<PathBuf>,
    learner: Option<PathBuf>,
    proxy: Option<PathBuf>,
}

/// How to build a [`Cluster`]: `Cluster::builder(3).flags(&[..]).logstream().start()`.
#[derive(Debug)]
pub struct Builder<'a> {
    voters: usize,
    system: System,
    flags: Vec<String>,
    logstream: bool,
    netns: Option<&'a Netns>,
    dir: Option<PathBuf>,
    bins: Bins,
    token: String,
    prefix: String,
}

impl<'a> Builder<'a> {
    /// Extra flags for every voter.
    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.flags.extend(flags.iter().map(|s| s.to_string()));
        self
    }

    /// Every voter serves its committed log to learners (`--listen-logstream-addr`).
    pub fn logstream(mut self) -> Self {
        self.logstream = true;
        self
    }

    /// One voter on each host of `net`, each in its own network namespace (as many voters
    /// as `net` has hosts).
    pub fn netns(mut self, net: &'a Netns) -> Self {
        self.voters = net.hosts.len();
        self.netns = Some(net);
        self
    }

    /// Real etcd members instead of `mango-voter`s.
    pub fn etcd(mut self) -> Self {
        self.system = System::Etcd;
        self
    }

    /// What the voters run.
    pub fn system(mut self, system: System) -> Self {
        self.system = system;
        self
    }

    /// Data directories and logs in `dir` (kept), not in a temporary directory.
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_owned());
        self
    }

    /// The voters' binary (`mango-voter` or etcd) [default: the test's build, or etcd's].
    pub fn voter_bin(mut self, bin: &Path) -> Self {
        self.bins.voter = Some(bin.to_owned());
        self
    }

    /// The learners' binary [default: the test's build].
    pub fn learner_bin(mut self, bin: &Path) -> Self {
        self.bins.learner = Some(bin.to_owned());
        self
    }

    /// The proxy's binary [default: the test's build].
    pub fn proxy_bin(mut self, bin: &Path) -> Self {
        self.bins.proxy = Some(bin.to_owned());
        self
    }

    /// `--initial-cluster-token` [default: `test-token`].
    pub fn token(mut self, token: &str) -> Self {
        self.token = token.to_owned();
        self
    }

    /// Voters are named `<prefix>1`, `<prefix>2`, ... [default: `v`].
    pub fn names(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// The cluster with every address reserved and nothing started (to prepare a data
    /// directory first, for instance).
    pub fn build(self) -> Result<Cluster, String> {
        let dir = match &self.dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
                Workdir::Given(d.clone())
            }
            None => Workdir::Temp(Some(
                tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?,
            )),
        };
        let mut c = Cluster {
            voters: Vec::new(),
            learners: Vec::new(),
            proxy: None,
            token: self.token,
            system: self.system,
            flags: self.flags,
            logstream: self.logstream,
            bins: self.bins,
            prefix: self.prefix,
            dir,
        };
        for i in 0..self.voters {
            let name = format!("{}{}", c.prefix, i + 1);
            let (host, netns) = match self.netns {
                Some(net) => {
                    let ip = net.hosts[i]
                        .parse()
                        .map_err(|e| format!("{}: {e}", net.hosts[i]))?;
                    (Host::fixed(ip), Some(net.names[i].clone()))
                }
                None => (Host::reserve(), None),
            };
            let mut m = Member::new(name, host, c.path());
            m.netns = netns;
            c.voters.push(m);
        }
        Ok(c)
    }

    /// The cluster with every voter started (nothing awaited).
    pub fn spawn(self) -> Result<Cluster, String> {
        let mut c = self.build()?;
        for i in 0..c.voters.len() {
            c.try_spawn(i)?;
        }
        Ok(c)
    }

    /// The cluster with every voter started, once they have a leader; panics otherwise.
    pub fn start(self) -> Cluster {
        let c = self.spawn().unwrap_or_else(|e| panic!("{e}"));
        c.wait_leader();
        c
    }
}

/// See the module doc.
#[derive(Debug)]
pub struct Cluster {
    pub voters: Vec<Member>,
    pub learners: Vec<Member>,
    /// The proxy, once started.
    pub proxy: Option<Member>,
    /// `--initial-cluster-token`.
    pub token: String,
    system: System,
    /// Extra flags for every voter.
    flags: Vec<String>,
    /// Whether voters serve the log stream.
    logstream: bool,
    bins: Bins,
    /// Voters' name prefix.
    prefix: String,
    dir: Workdir,
}

impl Cluster {
    /// How to build a cluster of `voters`.
    pub fn builder<'a>(voters: usize) -> Builder<'a> {
        Builder {
            voters,
            system: System::Mango,
            flags: Vec::new(),
            logstream: false,
            netns: None,
            dir: None,
            bins: Bins::default(),
            token: "test-token".into(),
            prefix: "v".into(),
        }
    }

    /// `n` voters, once they have a leader.
    pub fn start(n: usize) -> Cluster {
        Self::builder(n).start()
    }

    /// `n` voters with extra flags, once they have a leader.
    pub fn start_with(n: usize, flags: &[&str]) -> Cluster {
        Self::builder(n).flags(flags).start()
    }

    /// One voter on each host of `net` (each in its namespace), once they have a leader.
    pub fn start_in(net: &Netns, flags: &[&str]) -> Cluster {
        Self::builder(0).netns(net).flags(flags).start()
    }

    /// 3 voters serving the log stream, with extra flags, once they have a leader: ready for
    /// learners and the proxy.
    pub fn start_tiered(flags: &[&str]) -> Cluster {
        Self::builder(3).flags(flags).logstream().start()
    }

    /// A real etcd of `n` members, once they have a leader.
    pub fn etcd(n: usize) -> Cluster {
        Self::builder(n).etcd().names("e").start()
    }

    /// The directory of the data directories and logs.
    pub fn path(&self) -> &Path {
        match &self.dir {
            Workdir::Temp(Some(t)) => t.path(),
            Workdir::Temp(None) => Path::new(""),
            Workdir::Given(p) => p,
        }
    }

    pub fn system(&self) -> System {
        self.system
    }

    fn initial_cluster(&self) -> String {
        self.voters
            .iter()
            .map(|v| format!("{}={}", v.name, v.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn voter_bin(&self) -> PathBuf {
        match (&self.bins.voter, self.system) {
            (Some(b), _) => b.clone(),
            (None, System::Mango) => bins::voter_bin(),
            (None, System::Etcd) => bins::etcd_bin(),
        }
    }

    /// The command that starts voter `i` (in its namespace, if it has one).
    fn voter_command(&self, i: usize) -> Command {
        let v = &self.voters[i];
        let bin = self.voter_bin();
        let mut cmd = match &v.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let state = if v.joins { "existing" } else { "new" };
        cmd.args(["--name", &v.name])
            .arg("--data-dir")
            .arg(&v.data_dir)
            .args(["--listen-client-urls", &v.client_url()])
            .args(["--advertise-client-urls", &v.client_url()])
            .args(["--listen-peer-urls", &v.peer_url()])
            .args(["--initial-advertise-peer-urls", &v.peer_url()])
            .args(["--initial-cluster", &self.initial_cluster()])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token]);
        if self.logstream {
            cmd.args(["--listen-logstream-addr", &v.stream_addr()]);
        }
        cmd.args([
            "--listen-metrics-urls",
            &format!("http://{}", v.metrics_addr()),
        ]);
        if v.netns.is_some() && self.system == System::Mango {
            // A namespace's address is not loopback: plaintext there only by name.
            cmd.args([
                "--insecure-plaintext-metrics",
                "--insecure-plaintext-clients",
                "--insecure-unauthenticated-peers",
                "--insecure-unauthenticated-learners",
            ]);
        }
        cmd.args(&self.flags).args(&v.flags);
        cmd
    }

    /// Starts voter `i` (again): a founder as a member of a new cluster, an added slot (or
    /// one marked [`Member::joins`]) as joining an existing one.
    pub fn try_spawn(&mut self, i: usize) -> Result<(), String> {
        let cmd = self.voter_command(i);
        self.voters[i].spawn(cmd)
    }

    /// [`Cluster::try_spawn`], panicking on failure.
    pub fn spawn(&mut self, i: usize) {
        self.try_spawn(i).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts voter `i` as joining an existing cluster (after `member add`).
    pub fn join(&mut self, i: usize) {
        self.voters[i].joins = true;
        self.spawn(i);
    }

    /// Adds a voter slot with an address of its own, not started (start it with
    /// [`Cluster::join`] after `member add`); returns its index.
    pub fn add_slot(&mut self) -> usize {
        let i = self.voters.len();
        let name = format!("{}{}", self.prefix, i + 1);
        let mut m = Member::new(name, Host::reserve(), self.path());
        m.joins = true;
        self.voters.push(m);
        i
    }

    /// SIGKILL voter `i` (and reap it).
    pub fn kill(&mut self, i: usize) {
        self.voters[i].kill();
    }

    /// SIGTERM voter `i` and wait for it to exit; panics if it does not within 10 s.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut p) = self.voters[i].proc.take() {
            p.terminate(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Client endpoints (`ip:port`) of the running voters, comma-separated.
    pub fn endpoints(&self) -> String {
        self.voters
            .iter()
            .filter(|v| v.is_running())
            .map(Member::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client endpoints (`ip:port`) of the voters `at`, comma-separated.
    pub fn endpoints_of(&self, at: &[usize]) -> String {
        at.iter()
            .map(|&i| self.voters[i].endpoint())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client URLs of the running voters.
    pub fn voter_urls(&self) -> Vec<String> {
        self.voters
            .iter()
            .filter(|v| v.is_running())
            .map(Member::client_url)
            .collect()
    }

    /// Log-stream addresses of every voter, comma-separated: what a learner follows to
    /// follow any of them.
    pub fn stream_addrs(&self) -> String {
        self.voters
            .iter()
            .map(Member::stream_addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs etcdctl against every running voter; panics with its output on failure.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        etcdctl_ok(&self.endpoints(), args)
    }

    /// `endpoint status -w json` of voter `i`, its `Status`, if it answers.
    pub fn status(&self, i: usize) -> Option<Value> {
        crate::etcdctl::status(&self.voters[i].endpoint())
    }

    /// Voter `i`'s member id, as its Status header says.
    pub fn member_id(&self, i: usize) -> Option<u64> {
        self.status(i)?["header"]["member_id"].as_u64()
    }

    /// The index of the voter that leads, if every running voter answers and names a
    /// leader, and one of them says it is that leader.
    pub fn leader(&self) -> Option<usize> {
        let mut leader = None;
        for (i, v) in self.voters.iter().enumerate() {
            if !v.is_running() {
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

    /// Waits until a leader is known to all running voters; its index.
    pub fn wait_leader(&self) -> usize {
        wait_until(
            LEADER_TIMEOUT,
            format_args!("a leader (logs in {})", self.path().display()),
            || self.leader(),
        )
    }

    /// Waits until voters `among` agree on a leader other than `old` (a member id); its id.
    pub fn wait_new_leader(&self, among: &[usize], old: Option<u64>, timeout: Duration) -> u64 {
        wait_until(
            timeout,
            format_args!("a new leader among voters {among:?} (not {old:?})"),
            || {
                let leaders: Vec<Option<u64>> = among
                    .iter()
                    .map(|&i| self.status(i).and_then(|s| s["leader"].as_u64()))
                    .collect();
                let first = leaders.first().copied().flatten()?;
                (first != 0 && Some(first) != old && leaders.iter().all(|l| *l == Some(first)))
                    .then_some(first)
            },
        )
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
        let out = etcdctl(&self.voters[i].endpoint(), &args);
        serde_json::from_slice::<Value>(&out.stdout).ok()?["count"].as_u64()
    }

    /// Waits until voter `i` serves `n` keys under `prefix` locally.
    pub fn wait_local_count(&self, i: usize, prefix: &str, n: u64, timeout: Duration) {
        wait_until(
            timeout,
            format_args!(
                "{} to serve {n} keys under {prefix:?} (log {})",
                self.voters[i].name,
                self.voters[i].log.display()
            ),
            || {
                let count = self.local_count(i, prefix);
                if count == Some(n) { Ok(()) } else { Err(count) }
            },
        );
    }

    /// The log of voter `i`.
    pub fn log_of(&self, i: usize) -> String {
        self.voters[i].log_text()
    }
}

/// Learners.
impl Cluster {
    fn learner_command(&self, i: usize) -> Command {
        let l = &self.learners[i];
        let bin = self.bins.learner.clone().unwrap_or_else(bins::learner_bin);
        let mut cmd = Command::new(bin);
        cmd.args(["--name", &l.name])
            .arg("--data-dir")
            .arg(&l.data_dir)
            .args(["--listen-client-urls", &l.client_url()])
            .args(["--upstream", &l.upstream])
            // On loopback the voters serve development certificates.
            .arg("--insecure-skip-upstream-verify")
            .args(["--listen-logstream-addr", &l.stream_addr()])
            .args([
                "--listen-metrics-urls",
                &format!("http://{}", l.metrics_addr()),
            ])
            .args(&l.flags);
        cmd
    }

    /// Adds and starts a learner following `upstream` (log-stream addresses,
    /// comma-separated), with extra flags; returns its index. Nothing is awaited.
    pub fn try_add_learner(&mut self, upstream: &str, flags: &[&str]) -> Result<usize, String> {
        let i = self.learners.len();
        let mut m = Member::new(format!("l{}", i + 1), Host::reserve(), self.path());
        m.upstream = upstream.to_owned();
        m.flags = flags.iter().map(|s| s.to_string()).collect();
        self.learners.push(m);
        self.try_spawn_learner(i)?;
        Ok(i)
    }

    /// [`Cluster::try_add_learner`], panicking on failure.
    pub fn add_learner(&mut self, upstream: &str, flags: &[&str]) -> usize {
        self.try_add_learner(upstream, flags)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts learner `i` (again).
    pub fn try_spawn_learner(&mut self, i: usize) -> Result<(), String> {
        let cmd = self.learner_command(i);
        self.learners[i].spawn(cmd)
    }

    /// [`Cluster::try_spawn_learner`], panicking on failure.
    pub fn spawn_learner(&mut self, i: usize) {
        self.try_spawn_learner(i).unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGKILL learner `i`.
    pub fn kill_learner(&mut self, i: usize) {
        self.learners[i].kill();
    }

    /// Client endpoints of the running learners, comma-separated.
    pub fn learner_endpoints(&self) -> String {
        self.learners
            .iter()
            .filter(|l| l.is_running())
            .map(Member::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The proxy.
impl Cluster {
    /// Starts `mango-proxy` over the running voters and every learner added (running or
    /// not), with extra flags, its metrics on [`Member::metrics_addr`]. Nothing is awaited.
    pub fn try_spawn_proxy(&mut self, flags: &[&str]) -> Result<(), String> {
        let mut m = Member::new("proxy".into(), Host::reserve(), self.path());
        let learners: Vec<String> = self.learners.iter().map(Member::client_url).collect();
        let bin = self.bins.proxy.clone().unwrap_or_else(bins::proxy_bin);
        let mut cmd = Command::new(bin);
        cmd.args(["--listen-client-urls", &m.client_url()])
            .args(["--listen-metrics-addr", &m.metrics_addr()])
            .args(["--voters", &self.voter_urls().join(",")])
            .args(["--learners", &learners.join(",")])
            .args(flags);
        m.flags = flags.iter().map(|s| s.to_string()).collect();
        m.spawn(cmd)?;
        if let Some(mut old) = self.proxy.replace(m) {
            old.kill();
        }
        Ok(())
    }

    /// Starts `mango-proxy` (see [`Cluster::try_spawn_proxy`]) and waits until it answers a
    /// linearizable read (it has found the leader).
    pub fn start_proxy(&mut self, flags: &[&str]) {
        self.try_spawn_proxy(flags)
            .unwrap_or_else(|e| panic!("{e}"));
        let endpoint = self.proxy_endpoint();
        wait_until(
            Duration::from_secs(10),
            format_args!(
                "the proxy to answer a read (log {})",
                self.proxy().log.display()
            ),
            || etcdctl(&endpoint, &["get", "startup"]).status.success(),
        );
    }

    /// The proxy; panics if it was not started.
    pub fn proxy(&self) -> &Member {
        self.proxy.as_ref().expect("the proxy was started")
    }

    /// The proxy's client endpoint (`ip:port`).
    pub fn proxy_endpoint(&self) -> String {
        self.proxy().endpoint()
    }

    /// The proxy's log.
    pub fn proxy_log(&self) -> String {
        self.proxy().log_text()
    }

    /// Waits until stale reads through the proxy have been answered by every running
    /// learner: none is ejected, so reads and watches go to the learners.
    pub fn wait_proxy_reads_on_learners(&self) {
        let ids: Vec<u64> = self
            .learners
            .iter()
            .filter(|l| l.is_running())
            .map(|l| {
                wait_until(
                    Duration::from_secs(10),
                    format_args!("{}'s member id", l.name),
                    || crate::etcdctl::status(&l.endpoint())?["header"]["member_id"].as_u64(),
                )
            })
            .collect();
        let proxy = self.proxy_endpoint();
        let mut answered = Vec::new();
        wait_until(
            Duration::from_secs(20),
            "stale reads through the proxy answered by every learner",
            || {
                let out = etcdctl(&proxy, &["get", "k", "--consistency=s", "-w", "json"]);
                let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                if let Some(id) = json["header"]["member_id"].as_u64()
                    && ids.contains(&id)
                    && !answered.contains(&id)
                {
                    answered.push(id);
                }
                answered.len() == ids.len()
            },
        );
    }

    /// The value of metric `name` (the whole series name, labels included) on the proxy's
    /// metrics endpoint.
    pub fn proxy_metric(&self, name: &str) -> u64 {
        crate::metrics::metric(&self.proxy().metrics_addr(), name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let members = self
            .proxy
            .iter_mut()
            .chain(self.learners.iter_mut())
            .chain(self.voters.iter_mut());
        for m in members {
            m.kill();
        }
        if std::thread::panicking()
            && let Workdir::Temp(t) = &mut self.dir
            && let Some(t) = t.take()
        {
            // Keep the logs of a failed test.
            eprintln!("cluster logs kept in {}", t.keep().display());
        }
    }
}
