//! A 3-member cluster of etcd or mango for the benchmark, with learners and the proxy when
//! asked: mango-testkit's `Cluster` (every process on a loopback address of its own, killed
//! on every way out), waited for until every member serves a linearizable read, measured
//! (CPU, peak RSS, disk, log trouble), stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mango_testkit::cluster::Builder;
use mango_testkit::etcdctl::{command_with, leader_of};
use mango_testkit::{Cluster as Processes, Member};

use crate::loadgen::Loadgen;
use crate::procfs;

/// The two systems under test.
pub use mango_testkit::System;

/// How many members every cluster has.
pub const MEMBERS: usize = 3;

/// A running cluster; every process is killed when it is dropped.
#[derive(Debug)]
pub struct Cluster {
    pub system: System,
    /// Where the data dirs and logs are.
    pub dir: PathBuf,
    /// The processes: voters (etcd's members are e1..e3, mango's m1..m3), learners, proxy.
    pub inner: Processes,
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
        Self::start_with(system, bin, dir, loadgen, health_timeout, |b| b)
    }

    /// [`Cluster::start`], built with more settings (`more`): the log stream for learners,
    /// the learners' and the proxy's binaries.
    pub fn start_with(
        system: System,
        bin: &Path,
        dir: &Path,
        loadgen: &Loadgen,
        health_timeout: Duration,
        more: impl for<'a> FnOnce(Builder<'a>) -> Builder<'a>,
    ) -> Result<Cluster, String> {
        let prefix = match system {
            System::Etcd => "e",
            System::Mango => "m",
        };
        let builder = Processes::builder(MEMBERS)
            .system(system)
            .voter_bin(bin)
            .dir(dir)
            .names(prefix)
            .token("bench");
        let mut cluster = Cluster {
            system,
            dir: dir.to_owned(),
            inner: more(builder).spawn()?,
        };
        cluster.wait_healthy(loadgen, health_timeout)?;
        Ok(cluster)
    }

    /// The members (voters).
    pub fn members(&self) -> &[Member] {
        &self.inner.voters
    }

    /// Waits until every member answers a linearizable read (which needs a leader).
    fn wait_healthy(&mut self, loadgen: &Loadgen, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut healthy = vec![false; MEMBERS];
        let mut last_problem = vec![String::from("not probed yet"); MEMBERS];
        loop {
            if let Some(dead) = self.dead_member() {
                return Err(dead);
            }
            for (i, m) in self.members().iter().enumerate() {
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
                    .members()
                    .iter()
                    .zip(&healthy)
                    .zip(&last_problem)
                    .filter(|((_, h), _)| !**h)
                    .map(|((m, _), why)| {
                        format!(
                            "  {} ({}): {why}\n  log {}:\n{}",
                            m.name,
                            m.endpoint(),
                            m.log.display(),
                            indent(&tail(&m.log, 10))
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
            // Poll interval of the wait (each probe starts a loadgen process).
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Adds a learner following `upstreams` (log-stream addresses) and waits until it
    /// answers a linearizable read (a read index from upstream, then applied up to it).
    pub fn add_learner(
        &mut self,
        upstreams: &[String],
        loadgen: &Loadgen,
        timeout: Duration,
    ) -> Result<usize, String> {
        let i = self.inner.try_add_learner(&upstreams.join(","), &[])?;
        let what = format!("learner {}", self.inner.learners[i].name);
        wait_serving(
            &mut self.inner.learners[i],
            &what,
            loadgen,
            &self.dir,
            timeout,
        )?;
        Ok(i)
    }

    /// Starts `mango-proxy` over the voters and the learners and waits until a
    /// linearizable read through it succeeds (so it has found the leader).
    pub fn start_proxy(&mut self, loadgen: &Loadgen, timeout: Duration) -> Result<(), String> {
        self.inner.try_spawn_proxy(&[])?;
        let proxy = self.inner.proxy.as_mut().expect("the proxy just started");
        wait_serving(proxy, "mango-proxy", loadgen, &self.dir, timeout)
    }

    /// A message naming the first member that has exited, with its log.
    pub fn dead_member(&mut self) -> Option<String> {
        let system = self.system;
        self.inner.voters.iter_mut().find_map(|m| {
            let status = m.proc.as_mut()?.exited()?;
            Some(format!(
                "{system} {} exited ({status}); log {}:\n{}",
                m.name,
                m.log.display(),
                indent(&tail(&m.log, 15))
            ))
        })
    }

    /// `host:port` of every member, comma-separated.
    pub fn endpoints(&self) -> String {
        self.inner.endpoints()
    }

    /// CPU seconds used so far by all members together.
    pub fn cpu_seconds(&self) -> Result<f64, String> {
        self.cpu_seconds_each().map(|each| each.iter().sum())
    }

    /// CPU seconds used so far by each member, in member order.
    pub fn cpu_seconds_each(&self) -> Result<Vec<f64>, String> {
        self.members()
            .iter()
            .map(|m| cpu_seconds(m).map_err(|e| format!("{} {}: {e}", self.system, m.name)))
            .collect()
    }

    /// The index of the leading member, as `etcdctl endpoint status` (the Maintenance Status
    /// RPC) reports it: the member whose own id is the leader id it names.
    pub fn leader(&self, etcdctl: &Path) -> Result<usize, String> {
        let out = command_with(etcdctl, &self.endpoints())
            .args(["--command-timeout=5s", "endpoint", "status", "-w", "json"])
            .output()
            .map_err(|e| format!("running {}: {e}", etcdctl.display()))?;
        let endpoints: Vec<String> = self.members().iter().map(Member::endpoint).collect();
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
        self.members()
            .iter()
            .map(|m| {
                procfs::peak_rss_kib(pid(m)?)
                    .map_err(|e| format!("{} {}: {e}", self.system, m.name))
            })
            .try_fold(0, |max, r| r.map(|v| max.max(v)))
    }

    /// Bytes in all data dirs together.
    pub fn disk_bytes(&self) -> Result<u64, String> {
        self.members()
            .iter()
            .map(|m| {
                procfs::dir_size(&m.data_dir).map_err(|e| format!("{}: {e}", m.data_dir.display()))
            })
            .sum()
    }

    /// Log lines of every member that look like trouble (warnings, errors, panics).
    pub fn trouble_lines(&self) -> Vec<(String, usize, Vec<String>)> {
        self.members()
            .iter()
            .map(|m| {
                let text = m.log_text();
                let bad: Vec<&str> = text.lines().filter(|l| is_trouble(l)).collect();
                let samples = bad.iter().take(5).map(|s| strip_ansi(s)).collect();
                (m.name.clone(), bad.len(), samples)
            })
            .collect()
    }

    /// Name and log file of every process: members, learners, the proxy.
    pub fn logs(&self) -> Vec<(String, PathBuf)> {
        let inner = &self.inner;
        inner
            .voters
            .iter()
            .chain(&inner.learners)
            .chain(&inner.proxy)
            .map(|m| (m.name.clone(), m.log.clone()))
            .collect()
    }

    /// Kills every process and removes the data dirs (the logs stay).
    pub fn stop(self) {
        let data: Vec<PathBuf> = self
            .inner
            .voters
            .iter()
            .chain(&self.inner.learners)
            .map(|m| m.data_dir.clone())
            .collect();
        drop(self.inner);
        for d in data {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The pid of a started process.
pub fn pid(m: &Member) -> Result<u32, String> {
    m.pid().ok_or_else(|| format!("{} is not running", m.name))
}

/// CPU seconds used so far by one process.
pub fn cpu_seconds(m: &Member) -> Result<f64, String> {
    procfs::cpu_seconds(pid(m)?).map_err(|e| e.to_string())
}

/// Waits until `m` (a learner or the proxy) answers a linearizable read; an error naming
/// `what`, with its log, if it exits or does not within `timeout`.
fn wait_serving(
    m: &mut Member,
    what: &str,
    loadgen: &Loadgen,
    dir: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = m.proc.as_mut().and_then(|p| p.exited()) {
            return Err(format!(
                "{what} exited ({status}); log {}:\n{}",
                m.log.display(),
                tail(&m.log, 15)
            ));
        }
        match loadgen.probe(&m.endpoint(), &dir.join(format!("probe-{}", m.name))) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "{what} not serving linearizable reads within {} s: {e}; log {}:\n{}",
                    timeout.as_secs(),
                    m.log.display(),
                    tail(&m.log, 15)
                ));
            }
            // Poll interval of the wait (each probe starts a loadgen process).
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
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
