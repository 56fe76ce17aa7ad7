//! `mango-bench learners`: read scale-out on learners, and what it costs the leader.
//!
//! Per round: a 3-member etcd cluster serves serializable and linearizable reads (the
//! comparison rows); then a 3-voter mango cluster serving its log stream
//! (`--listen-logstream-addr`) serves stale and learner-linearizable reads, first from the
//! voters (0 learners), then from 1, 2, ... learners only, one learner added at a time, each
//! following a follower's stream (round-robin over the followers, so the leader streams to
//! nobody). Every run is the same `mango-loadgen range` (256 clients, one key); the leader's
//! CPU (utime+stime from `/proc`) over the run is the figure that matters, with its idle CPU
//! measured just before so what the reads cost it shows apart from heartbeats and ticks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use crate::cluster::{self, Cluster, System, is_trouble, strip_ansi};
use crate::learners_report::{self, ReadRun, Row};
use crate::{Prepared, check_bin, snapshot_bin, target_dir, workloads};

/// Flags of `mango-bench learners` (the shared ones, like --rounds and --scale, also apply).
#[derive(Debug, Args)]
pub struct LearnerArgs {
    /// Largest number of learners: every count from 0 (reads on the voters) up is measured.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub max_learners: u32,
    /// mango-learner binary [default: <target dir>/release/mango-learner].
    #[arg(long)]
    pub learner_bin: Option<PathBuf>,
    /// etcdctl (3.4), to find the leader with `endpoint status`.
    #[arg(long, default_value = "/usr/bin/etcdctl")]
    pub etcdctl_bin: PathBuf,
    /// Seconds the cluster idles before each configuration's runs, to measure the leader's
    /// idle CPU (0.5 under --smoke).
    #[arg(long, default_value_t = 3.0)]
    pub idle_seconds: f64,
}

/// Concurrent readers of every run.
pub const CLIENTS: u32 = 256;
/// Reads per run at scale 1.
const READS: u64 = 100_000;
/// Reads per run under --smoke.
const SMOKE_READS: u64 = 300;

/// The loadgen arguments of one measured run.
pub fn read_args(reads: u64, consistency: &str) -> Vec<String> {
    [
        "--clients",
        &CLIENTS.to_string(),
        "--total",
        &reads.to_string(),
        "range",
        workloads::RANGE_KEY,
        "--consistency",
        consistency,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The upstreams of the learner numbered `k` (from 0): the followers' streams rotated by
/// `k`, so learners spread round-robin over the followers and fall back to the others.
pub fn upstreams_for(k: usize, followers: &[String]) -> Vec<String> {
    if followers.is_empty() {
        return Vec::new();
    }
    let first = k % followers.len();
    followers[first..]
        .iter()
        .chain(&followers[..first])
        .cloned()
        .collect()
}

/// Everything one round needs.
struct Bench<'a> {
    p: &'a Prepared,
    learner_bin: PathBuf,
    etcdctl: PathBuf,
    reads: u64,
    idle: Duration,
    /// Warning/error lines of the servers' logs, one summary line per server with any.
    log_notes: Vec<String>,
}

impl Bench<'_> {
    /// Preloads the key the reads read, through the voters.
    fn preload(&self, cluster: &Cluster, dir: &Path) -> Result<(), String> {
        let setup = &self.p.setup;
        let r = setup.loadgen.run(
            &cluster.endpoints(),
            &workloads::range_preload(),
            &dir.join("preload"),
            setup.workload_timeout,
        )?;
        if r.error_count() == 0 && r.ops == 1 {
            Ok(())
        } else {
            Err(format!(
                "preload failed: {} ok, errors {:?}",
                r.ops, r.errors
            ))
        }
    }

    /// The leader's CPU seconds per second over `self.idle` of doing nothing.
    fn idle_cpu(&self, cluster: &Cluster, leader: usize) -> Result<f64, String> {
        let before = cluster.cpu_seconds_each()?;
        let t = Instant::now();
        std::thread::sleep(self.idle);
        let after = cluster.cpu_seconds_each()?;
        Ok((after[leader] - before[leader]) / t.elapsed().as_secs_f64())
    }

    /// Runs every consistency of `rows` against `targets`, each into the row's runs.
    fn measure(
        &self,
        round: u32,
        cluster: &mut Cluster,
        targets: &str,
        rows: &mut [&mut Row],
        dir: &Path,
    ) {
        let leader = cluster.leader(&self.etcdctl);
        let idle = leader
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|&l| self.idle_cpu(cluster, l));
        for row in rows.iter_mut() {
            let mut run = ReadRun {
                round,
                leader_idle_cpu: idle.as_ref().ok().copied(),
                ..Default::default()
            };
            if let Err(e) = &leader {
                run.notes.push(format!("leader: {e}"));
            }
            if let Err(e) = &idle {
                run.notes.push(format!("idle CPU: {e}"));
            }
            let voters_before = cluster.cpu_seconds_each();
            let learners_before = learners_cpu(cluster);
            let result = self.p.setup.loadgen.run(
                targets,
                &read_args(self.reads, &row.consistency),
                &dir.join(learners_report::slug(&row.consistency)),
                self.p.setup.workload_timeout,
            );
            let voters_after = cluster.cpu_seconds_each();
            let learners_after = learners_cpu(cluster);
            match result {
                Ok(r) => run.report = Some(r),
                Err(e) => run.failure = Some(e),
            }
            if let Some(dead) = cluster.dead_member() {
                run.notes.push(format!("a voter died: {dead}"));
            }
            for l in cluster.inner.learners.iter_mut() {
                if let Some(status) = l.proc.as_mut().and_then(|p| p.exited()) {
                    run.notes
                        .push(format!("learner {} exited ({status})", l.name));
                }
            }
            match (&voters_before, &voters_after) {
                (Ok(a), Ok(b)) => {
                    run.voters_cpu_s = Some(b.iter().sum::<f64>() - a.iter().sum::<f64>());
                    if let Ok(l) = leader {
                        run.leader_cpu_s = Some(b[l] - a[l]);
                    }
                }
                (Err(e), _) | (_, Err(e)) => run.notes.push(format!("voters' CPU: {e}")),
            }
            if !cluster.inner.learners.is_empty() {
                match (learners_before, learners_after) {
                    (Ok(a), Ok(b)) => run.learners_cpu_s = Some(b - a),
                    (Err(e), _) | (_, Err(e)) => run.notes.push(format!("learners' CPU: {e}")),
                }
            }
            match (&leader, cluster.leader(&self.etcdctl)) {
                (Ok(a), Ok(b)) if *a != b => run.notes.push(format!(
                    "leadership moved from {} to {} during the run",
                    cluster.members()[*a].name,
                    cluster.members()[b].name
                )),
                (Ok(_), Err(e)) => run.notes.push(format!("leader after the run: {e}")),
                _ => {}
            }
            eprintln!("  {}", learners_report::progress_line(row, &run));
            row.runs.push(run);
        }
    }

    /// Adds one summary line per server log with warning or error lines to `log_notes`.
    fn collect_logs(&mut self, round: u32, system: System, logs: &[(String, PathBuf)]) {
        for (name, path) in logs {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let bad: Vec<&str> = text.lines().filter(|l| is_trouble(l)).collect();
            if let Some(first) = bad.first() {
                self.log_notes.push(format!(
                    "round {round} {system} {name}: {} line(s), first: `{}`",
                    bad.len(),
                    strip_ansi(first).replace('`', "'")
                ));
            }
        }
    }

    /// etcd's serializable and linearizable reads on all 3 members.
    fn etcd_round(&mut self, round: u32, rows: &mut [Row]) -> Result<(), String> {
        let setup = &self.p.setup;
        let dir = self.p.work.join(format!("r{round}")).join("etcd");
        eprintln!("[round {round}] etcd, reads on 3 members");
        let mut cluster = Cluster::start(
            System::Etcd,
            &setup.etcd_bin,
            &dir,
            &setup.loadgen,
            setup.health_timeout,
        )?;
        self.preload(&cluster, &dir)?;
        let targets = cluster.endpoints();
        let mut mine: Vec<&mut Row> = rows.iter_mut().filter(|r| r.learners.is_none()).collect();
        self.measure(round, &mut cluster, &targets, &mut mine, &dir);
        let logs = cluster.logs();
        cluster.stop();
        self.collect_logs(round, System::Etcd, &logs);
        Ok(())
    }

    /// mango's stale and learner-linearizable reads on the voters, then on 1, 2, ...
    /// learners.
    fn mango_round(&mut self, round: u32, rows: &mut [Row], max: u32) -> Result<(), String> {
        let setup = &self.p.setup;
        let dir = self.p.work.join(format!("r{round}")).join("mango");
        let mut cluster = Cluster::start_with(
            System::Mango,
            &setup.voter_bin,
            &dir,
            &setup.loadgen,
            setup.health_timeout,
            |b| b.logstream().learner_bin(&self.learner_bin),
        )?;
        self.preload(&cluster, &dir)?;
        let leader = cluster.leader(&self.etcdctl)?;
        let followers: Vec<String> = cluster
            .members()
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != leader)
            .map(|(_, m)| m.stream_addr())
            .collect();
        let mut outcome = Ok(());
        for k in 0..=max {
            if k > 0 {
                let ups = upstreams_for(k as usize - 1, &followers);
                if let Err(e) = cluster.add_learner(&ups, &setup.loadgen, setup.health_timeout) {
                    outcome = Err(e);
                    break;
                }
            }
            let targets = if k == 0 {
                cluster.endpoints()
            } else {
                cluster.inner.learner_endpoints()
            };
            eprintln!(
                "[round {round}] mango, reads on {}",
                learners_report::readers(Some(k))
            );
            let mut mine: Vec<&mut Row> =
                rows.iter_mut().filter(|r| r.learners == Some(k)).collect();
            let sub = dir.join(format!("k{k}"));
            std::fs::create_dir_all(&sub)
                .map_err(|e| format!("creating {}: {e}", sub.display()))?;
            self.measure(round, &mut cluster, &targets, &mut mine, &sub);
        }
        let logs = cluster.logs();
        cluster.stop();
        self.collect_logs(round, System::Mango, &logs);
        outcome
    }
}

/// CPU seconds used so far by all of the cluster's learners together.
fn learners_cpu(cluster: &Cluster) -> Result<f64, String> {
    cluster
        .inner
        .learners
        .iter()
        .map(|l| cluster::cpu_seconds(l).map_err(|e| format!("{}: {e}", l.name)))
        .sum()
}

/// Runs the learner benchmark and writes its report; `Ok(false)` when some run had trouble.
pub fn run(p: &Prepared, a: &LearnerArgs) -> Result<bool, String> {
    if !(a.idle_seconds.is_finite() && a.idle_seconds > 0.0) {
        return Err(format!(
            "--idle-seconds must be a positive number, got {}",
            a.idle_seconds
        ));
    }
    let learner_bin = check_bin(
        &a.learner_bin
            .clone()
            .unwrap_or_else(|| target_dir().join("release/mango-learner")),
        "mango-learner",
        "build it with `cargo build --release -p mango-learner` or name it with --learner-bin",
    )?;
    let etcdctl = check_bin(
        &a.etcdctl_bin,
        "etcdctl",
        "install etcdctl 3.4 (`apt-get install etcd-client`) or name it with --etcdctl-bin",
    )?;
    let mut bench = Bench {
        p,
        learner_bin: snapshot_bin(&learner_bin, &p.work.join("bin"))?,
        etcdctl,
        reads: if p.smoke {
            SMOKE_READS
        } else {
            workloads::scaled(READS, p.scale, 1)
        },
        idle: Duration::from_secs_f64(if p.smoke { 0.5 } else { a.idle_seconds }),
        log_notes: Vec::new(),
    };
    let mut rows = learners_report::rows(a.max_learners);
    eprintln!(
        "mango-bench learners: {} round(s), {} reads per run, 0..={} learners; work dir {}",
        p.rounds,
        bench.reads,
        a.max_learners,
        p.work.display()
    );
    for round in 1..=p.rounds {
        bench
            .etcd_round(round, &mut rows)
            .and_then(|()| bench.mango_round(round, &mut rows, a.max_learners))
            .map_err(|e| format!("{e}\n(work dir kept: {})", p.work.display()))?;
    }
    let all_ok = rows.iter().all(|r| {
        r.runs
            .iter()
            .all(|m| m.report.as_ref().is_some_and(|r| r.error_count() == 0) && m.notes.is_empty())
    });
    let facts = learners_report::Facts {
        meta: p.meta(),
        reads: bench.reads,
        idle_seconds: bench.idle.as_secs_f64(),
        learner_version: crate::version_of(&bench.learner_bin),
        log_notes: bench.log_notes,
    };
    let (table, footnotes) = learners_report::main_table(&rows);
    println!("{table}");
    for (i, f) in footnotes.iter().enumerate() {
        println!("[{}] {f}", i + 1);
    }
    p.finish(&learners_report::render_markdown(&facts, &rows), all_ok)?;
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learners_spread_round_robin_over_followers() {
        let f = ["a:1".to_owned(), "b:2".to_owned()];
        assert_eq!(upstreams_for(0, &f), ["a:1", "b:2"]);
        assert_eq!(upstreams_for(1, &f), ["b:2", "a:1"]);
        assert_eq!(upstreams_for(2, &f), ["a:1", "b:2"]);
        assert!(upstreams_for(0, &[]).is_empty());
    }

    #[test]
    fn every_run_is_the_same_range_with_a_consistency() {
        let a = read_args(500, "stale");
        assert_eq!(
            a,
            [
                "--clients",
                "256",
                "--total",
                "500",
                "range",
                "00000000",
                "--consistency",
                "stale"
            ]
        );
    }
}
