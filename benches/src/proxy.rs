//! `mango-bench proxy`: the latency and throughput `mango-proxy` costs a client, with the
//! proxy as a sidecar next to the load generator.
//!
//! Per round: a fresh 3-voter mango cluster serving its log stream
//! (`--listen-logstream-addr`), one learner following a follower's stream, and `mango-proxy`
//! over them (`--voters`, `--learners`), all on loopback. Every workload then runs twice with
//! `mango-loadgen`: directly against the members that serve it, and through the proxy, which
//! routes it by consistency level. The order alternates by round (direct first in odd rounds,
//! proxy first in even ones) so neither side always runs on the fuller store or the warmer
//! caches. The proxy's CPU (utime+stime from `/proc`) over each run and its peak RSS (VmHWM,
//! reset before each run) are read too; so are the learner's and the voters' CPU, which show
//! where the requests went.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cluster::{self, Cluster, System, is_trouble, strip_ansi};
use crate::learners::upstreams_for;
use crate::proxy_report::{self, Facts, Path as Via, Row, Run, Target};
use crate::{Prepared, check_bin, procfs, snapshot_bin, target_dir, workloads};

/// Flags of `mango-bench proxy` (the shared ones, like --rounds and --scale, also apply).
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// mango-proxy binary [default: <target dir>/release/mango-proxy].
    #[arg(long)]
    pub proxy_bin: Option<PathBuf>,
    /// mango-learner binary [default: <target dir>/release/mango-learner].
    #[arg(long)]
    pub learner_bin: Option<PathBuf>,
    /// etcdctl (3.4), to find the leader with `endpoint status` (the learner follows a
    /// follower).
    #[arg(long, default_value = "/usr/bin/etcdctl")]
    pub etcdctl_bin: PathBuf,
}

/// One workload: a loadgen invocation, and who serves it when the proxy is not in the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Short name, the table's first column.
    pub name: String,
    /// loadgen arguments (endpoints and --json are added).
    pub args: Vec<String>,
    /// The members loadgen talks to directly.
    pub direct: Target,
    /// Where the proxy sends it, in words.
    pub routed_to: &'static str,
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// The workloads at `scale`, or tiny ones under `smoke`.
pub fn all(scale: f64, smoke: bool) -> Vec<Workload> {
    let size = |base: u64, tiny: u64| {
        if smoke {
            tiny
        } else {
            workloads::scaled(base, scale, 1)
        }
    };
    let put = |clients: u32, total: u64| {
        args(&[
            "--conns",
            "3",
            "--clients",
            &clients.to_string(),
            "--total",
            &total.to_string(),
            "put",
            "--key-space-size",
            "100000",
            "--val-size",
            "256",
        ])
    };
    let range = |consistency: &str, total: u64| {
        args(&[
            "--conns",
            "3",
            "--clients",
            "64",
            "--total",
            &total.to_string(),
            "range",
            workloads::RANGE_KEY,
            "--consistency",
            consistency,
        ])
    };
    vec![
        Workload {
            name: "put, 1 client".into(),
            args: put(1, size(5_000, 30)),
            direct: Target::Voters,
            routed_to: "leader",
        },
        Workload {
            name: "put, 64 clients".into(),
            args: put(64, size(20_000, 200)),
            direct: Target::Voters,
            routed_to: "leader",
        },
        Workload {
            name: "range linearizable, 64 clients".into(),
            args: range("l", size(40_000, 200)),
            direct: Target::Voters,
            routed_to: "leader",
        },
        Workload {
            name: "range stale, 64 clients".into(),
            args: range("stale", size(40_000, 200)),
            direct: Target::Learner,
            routed_to: "learner",
        },
    ]
}

/// Everything the rounds share.
struct Bench<'a> {
    p: &'a Prepared,
    proxy_bin: PathBuf,
    learner_bin: PathBuf,
    etcdctl: PathBuf,
    /// Warning/error lines of the servers' logs, one summary line per server with any.
    log_notes: Vec<String>,
}

/// What one round has running: the voters, one learner and the proxy.
struct Deployment {
    cluster: Cluster,
}

impl Deployment {
    fn endpoints(&self, via: Via, target: Target) -> String {
        match (via, target) {
            (Via::Proxy, _) => self.cluster.inner.proxy_endpoint(),
            (Via::Direct, Target::Voters) => self.cluster.endpoints(),
            (Via::Direct, Target::Learner) => self.cluster.inner.learner_endpoints(),
        }
    }
}

impl Bench<'_> {
    /// Starts the voters, the learner (following a follower) and the proxy; preloads the
    /// key the range workloads read.
    fn deploy(&self, dir: &Path) -> Result<Deployment, String> {
        let setup = &self.p.setup;
        let mut cluster = Cluster::start_with(
            System::Mango,
            &setup.voter_bin,
            dir,
            &setup.loadgen,
            setup.health_timeout,
            |b| {
                b.logstream()
                    .learner_bin(&self.learner_bin)
                    .proxy_bin(&self.proxy_bin)
            },
        )?;
        let r = setup.loadgen.run(
            &cluster.endpoints(),
            &workloads::range_preload(),
            &dir.join("preload"),
            setup.workload_timeout,
        )?;
        if r.error_count() != 0 || r.ops != 1 {
            return Err(format!(
                "preload failed: {} ok, errors {:?}",
                r.ops, r.errors
            ));
        }
        let leader = cluster.leader(&self.etcdctl)?;
        let followers: Vec<String> = cluster
            .members()
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != leader)
            .map(|(_, m)| m.stream_addr())
            .collect();
        cluster.add_learner(
            &upstreams_for(0, &followers),
            &setup.loadgen,
            setup.health_timeout,
        )?;
        cluster.start_proxy(&setup.loadgen, setup.health_timeout)?;
        Ok(Deployment { cluster })
    }

    /// Runs `w` once `via` the proxy or directly.
    fn measure(&self, d: &mut Deployment, w: &Workload, via: Via, round: u32, dir: &Path) -> Run {
        let mut run = Run {
            round,
            ..Default::default()
        };
        let proxy_pid = match cluster::pid(d.cluster.inner.proxy()) {
            Ok(pid) => pid,
            Err(e) => {
                run.failure = Some(e);
                return run;
            }
        };
        if via == Via::Proxy
            && let Err(e) = procfs::reset_peak_rss(proxy_pid)
        {
            run.notes
                .push(format!("resetting the proxy's peak RSS: {e}"));
        }
        let cpu = |d: &Deployment| {
            let proxy = procfs::cpu_seconds(proxy_pid).map_err(|e| format!("proxy: {e}"))?;
            let learner = cluster::cpu_seconds(&d.cluster.inner.learners[0])
                .map_err(|e| format!("learner: {e}"))?;
            Ok::<_, String>((proxy, learner, d.cluster.cpu_seconds()?))
        };
        let before = cpu(d);
        let result = self.p.setup.loadgen.run(
            &d.endpoints(via, w.direct),
            &w.args,
            &dir.join(format!("{}-{}", workloads::slug(&w.name), via.name())),
            self.p.setup.workload_timeout,
        );
        let after = cpu(d);
        match result {
            Ok(r) => run.report = Some(r),
            Err(e) => run.failure = Some(e),
        }
        if let Some(dead) = d.cluster.dead_member() {
            run.notes.push(format!("a voter died: {dead}"));
        }
        let inner = &mut d.cluster.inner;
        if let Some(status) = inner.learners[0].proc.as_mut().and_then(|p| p.exited()) {
            run.notes.push(format!("the learner exited ({status})"));
        }
        if let Some(status) = inner.proxy.as_mut().and_then(|p| p.proc.as_mut()?.exited()) {
            run.notes.push(format!("the proxy exited ({status})"));
        }
        match (before, after) {
            (Ok(a), Ok(b)) => {
                run.proxy_cpu_s = Some(b.0 - a.0);
                run.learner_cpu_s = Some(b.1 - a.1);
                run.voters_cpu_s = Some(b.2 - a.2);
            }
            (Err(e), _) | (_, Err(e)) => run.notes.push(format!("CPU time: {e}")),
        }
        if via == Via::Proxy {
            match procfs::peak_rss_kib(proxy_pid) {
                Ok(kib) => run.proxy_peak_rss_mib = Some(kib as f64 / 1024.0),
                Err(e) => run.notes.push(format!("the proxy's peak RSS: {e}")),
            }
        }
        eprintln!("  {}", proxy_report::progress_line(via, &run));
        run
    }

    /// One round: a fresh deployment, every workload direct and through the proxy.
    fn round(
        &mut self,
        round: u32,
        workloads: &[Workload],
        rows: &mut [Row],
    ) -> Result<(), String> {
        let dir = self.p.work.join(format!("r{round}"));
        let mut d = self.deploy(&dir)?;
        let order = if round % 2 == 1 {
            [Via::Direct, Via::Proxy]
        } else {
            [Via::Proxy, Via::Direct]
        };
        for (w, row) in workloads.iter().zip(rows.iter_mut()) {
            eprintln!("[round {round}/{}] {}", self.p.rounds, w.name);
            for via in order {
                let run = self.measure(&mut d, w, via, round, &dir);
                row.runs_mut(via).push(run);
            }
        }
        let logs = d.cluster.logs();
        d.cluster.stop();
        for (name, path) in logs {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let bad: Vec<&str> = text.lines().filter(|l| is_trouble(l)).collect();
            if let Some(first) = bad.first() {
                self.log_notes.push(format!(
                    "round {round} {name}: {} line(s), first: `{}`",
                    bad.len(),
                    strip_ansi(first).replace('`', "'")
                ));
            }
        }
        Ok(())
    }
}

/// Runs the proxy benchmark and writes its report; `Ok(false)` when some run had trouble.
pub fn run(p: &Prepared, a: &ProxyArgs) -> Result<bool, String> {
    let release = target_dir().join("release");
    let proxy_bin = check_bin(
        &a.proxy_bin
            .clone()
            .unwrap_or_else(|| release.join("mango-proxy")),
        "mango-proxy",
        "build it with `cargo build --release -p mango-proxy` or name it with --proxy-bin",
    )?;
    let learner_bin = check_bin(
        &a.learner_bin
            .clone()
            .unwrap_or_else(|| release.join("mango-learner")),
        "mango-learner",
        "build it with `cargo build --release -p mango-learner` or name it with --learner-bin",
    )?;
    let etcdctl = check_bin(
        &a.etcdctl_bin,
        "etcdctl",
        "install etcdctl 3.4 (`apt-get install etcd-client`) or name it with --etcdctl-bin",
    )?;
    let bin_dir = p.work.join("bin");
    let mut bench = Bench {
        p,
        proxy_bin: snapshot_bin(&proxy_bin, &bin_dir)?,
        learner_bin: snapshot_bin(&learner_bin, &bin_dir)?,
        etcdctl,
        log_notes: Vec::new(),
    };
    let workloads = all(p.scale, p.smoke);
    let mut rows: Vec<Row> = workloads.iter().cloned().map(Row::new).collect();
    eprintln!(
        "mango-bench proxy: {} workload(s) x {} round(s) x direct, proxy; scale {}{}; work dir {}",
        workloads.len(),
        p.rounds,
        p.scale,
        if p.smoke { " (smoke)" } else { "" },
        p.work.display()
    );
    for round in 1..=p.rounds {
        bench
            .round(round, &workloads, &mut rows)
            .map_err(|e| format!("{e}\n(work dir kept: {})", p.work.display()))?;
    }
    let all_ok = rows.iter().all(Row::all_ok);
    let facts = Facts {
        meta: p.meta(),
        proxy_version: crate::version_of(&bench.proxy_bin),
        log_notes: bench.log_notes,
    };
    let (table, footnotes) = proxy_report::main_table(&rows);
    println!("{table}");
    for (i, f) in footnotes.iter().enumerate() {
        println!("[{}] {f}", i + 1);
    }
    p.finish(&proxy_report::render_markdown(&facts, &rows), all_ok)?;
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_cover_writes_and_both_read_routes() {
        let w = all(0.25, false);
        let names: Vec<&str> = w.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "put, 1 client",
                "put, 64 clients",
                "range linearizable, 64 clients",
                "range stale, 64 clients"
            ]
        );
        assert_eq!(
            w[0].args[..6],
            ["--conns", "3", "--clients", "1", "--total", "1250"]
        );
        assert_eq!(w[3].args[8..], ["--consistency", "stale"]);
        assert_eq!(w[3].direct, Target::Learner);
        assert!(w[..3].iter().all(|w| w.direct == Target::Voters));
        assert!(
            all(1.0, true)
                .iter()
                .all(|w| w.args[5].parse::<u64>().unwrap() <= 200)
        );
    }
}
