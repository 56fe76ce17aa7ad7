//! A 3-member cluster of etcd or mango on loopback: start, wait until healthy, measure, kill.

use std::fmt;
use std::fs::File;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::children::Proc;
use crate::loadgen::Loadgen;
use crate::procfs;

/// The two systems under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum System {
    Etcd,
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

    /// Member name prefix: etcd's members are e1..e3, mango's m1..m3.
    fn prefix(self) -> &'static str {
        match self {
            System::Etcd => "e",
            System::Mango => "m",
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many members every cluster has.
pub const MEMBERS: usize = 3;

/// One member.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    /// UDP port of the QUIC log stream to learners (mango with `--listen-logstream-addr`).
    pub logstream_port: Option<u16>,
    pub data_dir: PathBuf,
    pub proc: Proc,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `ip:port` of its log stream, if it serves one.
    pub fn logstream_addr(&self) -> Option<String> {
        self.logstream_port.map(|p| format!("127.0.0.1:{p}"))
    }
}

/// A running cluster; every member is killed when it is dropped.
#[derive(Debug)]
pub struct Cluster {
    pub system: System,
    /// Where the data dirs and logs are.
    pub dir: PathBuf,
    pub members: Vec<Member>,
}

/// `n` distinct free loopback ports (all bound at once, then released).
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("no free loopback port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// `n` distinct free loopback UDP ports (all bound at once, then released).
pub fn free_udp_ports(n: usize) -> Result<Vec<u16>, String> {
    let sockets = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("no free loopback UDP port: {e}"))?;
    sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("no free loopback UDP port: {e}"))
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Cluster {
    /// Starts 3 members of `system` with data dirs and logs under `dir` and waits (at most
    /// `health_timeout`) until each answers a linearizable read.
    pub fn start(
        system: System,
        bin: &Path,
        dir: &Path,
        loadgen: &Loadgen,
        health_timeout: Duration,
    ) -> Result<Cluster, String> {
        Self::start_with(system, bin, dir, loadgen, health_timeout, false)
    }

    /// [`Cluster::start`], and with `logstream` (mango only) every voter also serves its
    /// committed log to learners (`--listen-logstream-addr`).
    pub fn start_with(
        system: System,
        bin: &Path,
        dir: &Path,
        loadgen: &Loadgen,
        health_timeout: Duration,
        logstream: bool,
    ) -> Result<Cluster, String> {
        if logstream && system != System::Mango {
            return Err(format!("{system} has no log stream"));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let ports = free_ports(2 * MEMBERS)?;
        let stream_ports = if logstream {
            free_udp_ports(MEMBERS)?
        } else {
            Vec::new()
        };
        let names: Vec<String> = (1..=MEMBERS)
            .map(|i| format!("{}{i}", system.prefix()))
            .collect();
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}={}", peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::with_capacity(MEMBERS);
        for (i, name) in names.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{}", ports[2 * i]);
            let data_dir = dir.join(name);
            let log_path = dir.join(format!("{name}.log"));
            let log = File::create(&log_path)
                .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
            let log2 = log
                .try_clone()
                .map_err(|e| format!("{}: {e}", log_path.display()))?;
            let mut cmd = Command::new(bin);
            cmd.args(["--name", name])
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url(i)])
                .args(["--initial-advertise-peer-urls", &peer_url(i)])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-token", "bench"])
                .args(["--initial-cluster-state", "new"]);
            if let Some(port) = stream_ports.get(i) {
                cmd.args(["--listen-logstream-addr", &format!("127.0.0.1:{port}")]);
            }
            cmd.env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2);
            let proc = Proc::spawn(&format!("{system} {name}"), &mut cmd, log_path)?;
            members.push(Member {
                name: name.clone(),
                client_port: ports[2 * i],
                logstream_port: stream_ports.get(i).copied(),
                data_dir,
                proc,
            });
        }
        let mut cluster = Cluster {
            system,
            dir: dir.to_owned(),
            members,
        };
        cluster.wait_healthy(loadgen, health_timeout)?;
        Ok(cluster)
    }

    /// Waits until every member answers a linearizable read (which needs a leader).
    fn wait_healthy(&mut self, loadgen: &Loadgen, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut healthy = vec![false; self.members.len()];
        let mut last_problem = vec![String::from("not probed yet"); self.members.len()];
        loop {
            if let Some(dead) = self.dead_member() {
                return Err(dead);
            }
            for (i, m) in self.members.iter().enumerate() {
                if healthy[i] {
                    continue;
                }
                match loadgen.probe(&m.endpoint(), &self.dir.join(format!("probe-{}", m.name))) {
                    Ok(()) => healthy[i] = true,
                    Err(e) => last_problem[i] = e,
                }
            }
            if healthy.iter().all(|&h| h) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let sick: Vec<String> = self
                    .members
                    .iter()
                    .zip(&healthy)
                    .zip(&last_problem)
                    .filter(|((_, h), _)| !**h)
                    .map(|((m, _), why)| {
                        format!(
                            "  {} ({}): {why}\n  log {}:\n{}",
                            m.name,
                            m.endpoint(),
                            m.proc.log.display(),
                            indent(&tail(&m.proc.log, 10))
                        )
                    })
                    .collect();
                return Err(format!(
                    "{} cluster not healthy within {} s:\n{}",
                    self.system,
                    timeout.as_secs(),
                    sick.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A message naming the first member that has exited, with its log.
    pub fn dead_member(&mut self) -> Option<String> {
        self.members.iter_mut().find_map(|m| {
            let status = m.proc.exited()?;
            Some(format!(
                "{} {} exited ({status}); log {}:\n{}",
                self.system,
                m.name,
                m.proc.log.display(),
                indent(&tail(&m.proc.log, 15))
            ))
        })
    }

    /// `host:port` of every member, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Member::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// CPU seconds used so far by all members together.
    pub fn cpu_seconds(&self) -> Result<f64, String> {
        self.members
            .iter()
            .map(|m| {
                procfs::cpu_seconds(m.proc.pid())
                    .map_err(|e| format!("{} {}: {e}", self.system, m.name))
            })
            .sum()
    }

    /// CPU seconds used so far by each member, in member order.
    pub fn cpu_seconds_each(&self) -> Result<Vec<f64>, String> {
        self.members
            .iter()
            .map(|m| {
                procfs::cpu_seconds(m.proc.pid())
                    .map_err(|e| format!("{} {}: {e}", self.system, m.name))
            })
            .collect()
    }

    /// The index of the leading member, as `etcdctl endpoint status` (the Maintenance Status
    /// RPC) reports it: the member whose own id is the leader id it names.
    pub fn leader(&self, etcdctl: &Path) -> Result<usize, String> {
        let out = Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints()))
            .args(["--command-timeout=5s", "endpoint", "status", "-w", "json"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", etcdctl.display()))?;
        let endpoints: Vec<String> = self.members.iter().map(Member::endpoint).collect();
        leader_of(&String::from_utf8_lossy(&out.stdout), &endpoints).ok_or_else(|| {
            format!(
                "no leader in `etcdctl endpoint status` ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
    }

    /// The largest peak RSS (VmHWM) of any member, in KiB.
    pub fn max_peak_rss_kib(&self) -> Result<u64, String> {
        self.members
            .iter()
            .map(|m| {
                procfs::peak_rss_kib(m.proc.pid())
                    .map_err(|e| format!("{} {}: {e}", self.system, m.name))
            })
            .try_fold(0, |max, r| r.map(|v| max.max(v)))
    }

    /// Bytes in all data dirs together.
    pub fn disk_bytes(&self) -> Result<u64, String> {
        self.members
            .iter()
            .map(|m| {
                procfs::dir_size(&m.data_dir).map_err(|e| format!("{}: {e}", m.data_dir.display()))
            })
            .sum()
    }

    /// Log lines of every member that look like trouble (warnings, errors, panics).
    pub fn trouble_lines(&self) -> Vec<(String, usize, Vec<String>)> {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(&m.proc.log).unwrap_or_default();
                let bad: Vec<&str> = text.lines().filter(|l| is_trouble(l)).collect();
                let samples = bad.iter().take(5).map(|s| strip_ansi(s)).collect();
                (m.name.clone(), bad.len(), samples)
            })
            .collect()
    }

    /// Kills every member and removes the data dirs (the logs stay).
    pub fn stop(mut self) {
        for m in &mut self.members {
            m.proc.kill();
            let _ = std::fs::remove_dir_all(&m.data_dir);
        }
    }
}

/// The index in `endpoints` of the leader, out of `etcdctl endpoint status -w json` output:
/// the entry whose `Status.header.member_id` equals its `Status.leader`.
pub fn leader_of(status_json: &str, endpoints: &[String]) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_str(status_json.trim()).ok()?;
    v.as_array()?.iter().find_map(|entry| {
        let status = entry.get("Status")?;
        let leader = status.get("leader")?.as_u64()?;
        let me = status.get("header")?.get("member_id")?.as_u64()?;
        if leader == 0 || leader != me {
            return None;
        }
        let endpoint = entry.get("Endpoint")?.as_str()?;
        let endpoint = endpoint.strip_prefix("http://").unwrap_or(endpoint);
        endpoints.iter().position(|e| e == endpoint)
    })
}

/// Whether a server log line reports a warning, an error or a panic. Matches mango's tracing
/// format (` WARN `, ` ERROR `), etcd's capnslog (` W | `, ` E | `, ` C | `) and zap
/// (`"level":"warn"`) lines, and panics.
pub fn is_trouble(line: &str) -> bool {
    const NEEDLES: [&str; 10] = [
        " WARN ",
        " ERROR ",
        " W | ",
        " E | ",
        " C | ",
        "\"level\":\"warn\"",
        "\"level\":\"error\"",
        "\"level\":\"fatal\"",
        "panicked",
        "panic:",
    ];
    /// etcd's warning at every start with the default auth token: noise here.
    const BENIGN: [&str; 1] = ["simple token is not cryptographically signed"];
    let line = strip_ansi(line);
    NEEDLES.iter().any(|n| line.contains(n)) && !BENIGN.iter().any(|b| line.contains(b))
}

/// `line` without ANSI colour sequences (`ESC [ ... letter`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let mut p = free_ports(6).unwrap();
        p.sort_unstable();
        p.dedup();
        assert_eq!(p.len(), 6);
    }

    #[test]
    fn leader_is_the_member_that_names_itself() {
        let eps = ["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()];
        let json = r#"[{"Endpoint":"127.0.0.1:1","Status":{"header":{"member_id":7},"leader":9}},
            {"Endpoint":"http://127.0.0.1:2","Status":{"header":{"member_id":9},"leader":9}}]"#;
        assert_eq!(leader_of(json, &eps), Some(1));
        let none = r#"[{"Endpoint":"127.0.0.1:1","Status":{"header":{"member_id":7},"leader":0}}]"#;
        assert_eq!(leader_of(none, &eps), None);
        assert_eq!(leader_of("", &eps), None);
        assert_eq!(leader_of("[{}]", &eps), None);
    }

    #[test]
    fn trouble_lines_of_both_log_formats() {
        assert!(is_trouble(
            "2026-01-01T00:00:00.1Z  WARN mango_consensus::node: slow fsync"
        ));
        assert!(is_trouble(
            "2026-01-01 00:00:00.000000 W | etcdserver: apply entries took too long"
        ));
        assert!(is_trouble(
            "thread 'raft' panicked at consensus/src/x.rs:1:1"
        ));
        assert!(is_trouble(
            "\u{1b}[2m2026-01-01T00:00:00.1Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m \u{1b}[2mx\u{1b}[0m: y"
        ));
        assert_eq!(strip_ansi("\u{1b}[33m WARN\u{1b}[0m x"), " WARN x");
        assert!(!is_trouble(
            "2026-01-01T00:00:00.1Z  INFO mango_voter::server: serving clients"
        ));
        assert!(!is_trouble(
            "2026-01-01 00:00:00.000000 I | etcdserver: published"
        ));
        assert!(!is_trouble(
            "2026-11-25 21:32:17.608862 W | auth: simple token is not cryptographically signed"
        ));
    }

    #[test]
    fn tail_takes_the_last_lines() {
        let p = std::env::temp_dir().join(format!("mango-bench-tail-{}", std::process::id()));
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&p, 2), "c\nd");
        assert_eq!(tail(&p, 10), "a\nb\nc\nd");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(tail(&p, 3), "");
    }
}
