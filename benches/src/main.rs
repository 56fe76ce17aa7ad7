//! `mango-bench`: side-by-side benchmarks of mango against etcd 3.4.
//!
//! For every round and workload it starts a fresh 3-member etcd cluster on loopback, runs the
//! workload with `mango-loadgen`, stops it, then does the same with a 3-voter mango cluster.
//! Only one cluster runs at a time, so the two never compete for the cores. It prints a
//! table of medians over the rounds and writes it, with the machine and the durability, to a
//! markdown file. The store's micro-benchmarks live in `store/benches/`.
//!
//! Exit codes: 0 when every run produced results (request errors are reported, not fatal),
//! 1 when a cluster did not come up or a run failed, 2 for usage errors.

#![forbid(unsafe_code)]

mod cluster;
mod learners;
mod learners_report;
mod loadgen;
mod procfs;
mod proxy;
mod proxy_report;
mod report;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

use crate::cluster::{Cluster, System};
use crate::loadgen::Loadgen;
use crate::report::{Measurement, Meta, Row};
use crate::workloads::Workload;

/// Side-by-side benchmarks of mango against etcd: 3-member clusters on loopback, one at a time.
#[derive(Debug, Parser)]
#[command(name = "mango-bench", version, about)]
struct Args {
    /// Another benchmark instead of the side-by-side table.
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Rounds (etcd then mango for every workload, fresh data dirs each time); medians are
    /// reported.
    #[arg(long, global = true, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Multiplies every workload's size (1.0: 20k puts per put run, 1M keys in the dataset).
    #[arg(long, global = true, default_value_t = 1.0)]
    scale: f64,
    /// Every workload tiny and one round: a check that everything runs, in seconds.
    #[arg(long, global = true)]
    smoke: bool,
    /// Only the workloads whose name contains one of these, comma-separated, written as in
    /// the work dir: put-1-client, put-64-clients, put-256-clients, range-linearizable,
    /// range-serializable, txn-put, watch-latency, lease-keepalive, dataset-load (a prefix is
    /// enough).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The markdown report [default: benches/results/<date>.md, <date>-smoke.md with --smoke;
    /// <date>-learners.md for `learners`, <date>-proxy.md for `proxy`].
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Keep data dirs' logs and loadgen output here (kept afterwards) instead of a temporary
    /// folder (removed after a successful run).
    #[arg(long, global = true)]
    work_dir: Option<PathBuf>,
    /// mango-voter binary [default: <target dir>/release/mango-voter].
    #[arg(long, global = true)]
    voter_bin: Option<PathBuf>,
    /// mango-loadgen binary [default: <target dir>/release/mango-loadgen].
    #[arg(long, global = true)]
    loadgen_bin: Option<PathBuf>,
    /// etcd binary.
    #[arg(long, global = true, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// Seconds a cluster has to become healthy.
    #[arg(long, global = true, default_value_t = 30)]
    health_timeout: u64,
    /// Seconds one loadgen run may take before it is killed and reported as failed.
    #[arg(long, global = true, default_value_t = 1800)]
    workload_timeout: u64,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Learner scale-out: stale and learner-linearizable reads served by 0..=N learners, with
    /// the leader's CPU per 1,000 reads, against etcd's serializable and linearizable reads.
    Learners(learners::LearnerArgs),
    /// The proxy as a sidecar: p50/p99 latency it adds and throughput through it against
    /// going directly to the members, with its CPU per 1,000 requests and peak RSS.
    Proxy(proxy::ProxyArgs),
}

/// The workspace root (this crate's parent folder).
fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// Cargo's target dir: `CARGO_TARGET_DIR` (relative to the workspace) or `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace().join(dir),
        _ => workspace().join("target"),
    }
}

/// `path` if it is an executable file, else an error saying how to get it.
fn check_bin(path: &Path, what: &str, hint: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path.to_owned())
    } else {
        Err(format!("{what} not found at {}: {hint}", path.display()))
    }
}

/// Copies `bin` into `dir` (same file name, same permissions) and returns the copy.
fn snapshot_bin(bin: &Path, dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let name = bin
        .file_name()
        .ok_or_else(|| format!("{} is not a file", bin.display()))?;
    let copy = dir.join(name);
    std::fs::copy(bin, &copy)
        .map_err(|e| format!("copying {} to {}: {e}", bin.display(), copy.display()))?;
    Ok(copy)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Today's date (UTC) as YYYY-MM-DD and the time as HH:MM.
fn now_utc() -> (String, String) {
    utc(SystemTime::now())
}

/// `t` (UTC) as YYYY-MM-DD and HH:MM.
fn utc(t: SystemTime) -> (String, String) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}", s / 3600, s % 3600 / 60),
    )
}

/// First line of `bin --version`, or "unknown".
fn version_of(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown version".into())
}

/// The workspace's git commit, with "+ uncommitted changes" when the tree is dirty.
fn git_describe() -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(workspace())
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    // This crate's own files do not change what is measured.
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":!benches",
        ":!Cargo.lock",
    ])
    .is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("commit {commit} + uncommitted changes outside benches/ (at the start of the run)")
    } else {
        format!("commit {commit}")
    })
}

/// Everything a run needs besides the workload.
struct Setup {
    loadgen: Loadgen,
    voter_bin: PathBuf,
    etcd_bin: PathBuf,
    health_timeout: Duration,
    workload_timeout: Duration,
}

impl Setup {
    fn server_bin(&self, system: System) -> &Path {
        match system {
            System::Etcd => &self.etcd_bin,
            System::Mango => &self.voter_bin,
        }
    }
}

/// Runs `workload` once on a fresh `system` cluster under `dir`. A cluster that does not come
/// up is an `Err` (fatal); everything else that goes wrong is recorded in the measurement.
fn run_once(
    setup: &Setup,
    system: System,
    workload: &Workload,
    round: u32,
    dir: &Path,
) -> Result<Measurement, String> {
    let mut cluster = Cluster::start(
        system,
        setup.server_bin(system),
        dir,
        &setup.loadgen,
        setup.health_timeout,
    )?;
    let endpoints = cluster.endpoints();
    let mut m = Measurement {
        round,
        ..Default::default()
    };
    if let Some(preload) = &workload.preload {
        match setup.loadgen.run(
            &endpoints,
            preload,
            &dir.join("preload"),
            setup.workload_timeout,
        ) {
            Ok(r) if r.error_count() == 0 && r.ops > 0 => {}
            Ok(r) => m.notes.push(format!(
                "preload failed: {} ok, errors {:?}",
                r.ops, r.errors
            )),
            Err(e) => m.notes.push(format!("preload failed: {e}")),
        }
    }
    let cpu_before = cluster.cpu_seconds();
    let result = setup.loadgen.run(
        &endpoints,
        &workload.args,
        &dir.join("loadgen"),
        setup.workload_timeout,
    );
    let cpu_after = cluster.cpu_seconds();
    match result {
        Ok(r) => m.report = Some(r),
        Err(e) => m.failure = Some(e),
    }
    if let Some(dead) = cluster.dead_member() {
        m.notes.push(format!("a member died: {dead}"));
    } else {
        match (cpu_before, cpu_after) {
            (Ok(a), Ok(b)) => m.server_cpu_seconds = Some(b - a),
            (Err(e), _) | (_, Err(e)) => m.notes.push(format!("CPU time: {e}")),
        }
        match cluster.max_peak_rss_kib() {
            Ok(kib) => m.peak_rss_mib = Some(kib as f64 / 1024.0),
            Err(e) => m.notes.push(format!("peak RSS: {e}")),
        }
    }
    if workload.dataset {
        match cluster.disk_bytes() {
            Ok(b) => m.disk_mib = Some(b as f64 / (1024.0 * 1024.0)),
            Err(e) => m.notes.push(format!("on-disk size: {e}")),
        }
    }
    m.trouble = cluster.trouble_lines();
    cluster.stop();
    Ok(m)
}

/// One line of progress on stderr.
fn progress_line(system: System, m: &Measurement) -> String {
    let mut s = match &m.report {
        Some(r) => format!(
            "{system:>5}: {:>9.1} ops/s  p99 {:>8.3} ms  {} ops  {} errors",
            r.ops_per_sec,
            r.p99_ms,
            r.ops,
            r.error_count()
        ),
        None => format!(
            "{system:>5}: FAILED: {}",
            m.failure.as_deref().unwrap_or("?")
        ),
    };
    if let Some(c) = m.cpu_per_1k_ops() {
        s.push_str(&format!("  {c:.3} CPU-s/1k"));
    }
    if let Some(r) = m.peak_rss_mib {
        s.push_str(&format!("  RSS {r:.0} MiB"));
    }
    if let Some(d) = m.disk_mib {
        s.push_str(&format!("  disk {d:.1} MiB"));
    }
    for n in &m.notes {
        s.push_str(&format!("\n         note: {n}"));
    }
    s
}

/// What every mode shares, fixed at the start of a run: the binaries (copied into the work
/// dir), the work dir, the report's path, the date and the versions.
struct Prepared {
    setup: Setup,
    rounds: u32,
    scale: f64,
    smoke: bool,
    date: String,
    time: String,
    mango_version: String,
    out: PathBuf,
    work: PathBuf,
    /// The work dir is ours to remove after a successful run.
    temporary: bool,
    started: Instant,
    load_start: String,
}

/// Checks the shared flags and binaries, and makes the work dir. The default report is
/// `benches/results/<date><suffix>.md` (`-smoke` is appended under --smoke).
fn prepare(args: &Args, suffix: &str) -> Result<Prepared, String> {
    let started = Instant::now();
    let load_start = procfs::load_average();
    if !(args.scale.is_finite() && args.scale > 0.0) {
        return Err(format!(
            "--scale must be a positive number, got {}",
            args.scale
        ));
    }
    let build_hint = "build it with `cargo build --release -p mango-voter -p mango-loadgen` or \
                      name it with --voter-bin/--loadgen-bin";
    let release = target_dir().join("release");
    let mut setup = Setup {
        loadgen: Loadgen {
            bin: check_bin(
                &args
                    .loadgen_bin
                    .clone()
                    .unwrap_or_else(|| release.join("mango-loadgen")),
                "mango-loadgen",
                build_hint,
            )?,
        },
        voter_bin: check_bin(
            &args
                .voter_bin
                .clone()
                .unwrap_or_else(|| release.join("mango-voter")),
            "mango-voter",
            build_hint,
        )?,
        etcd_bin: check_bin(
            &args.etcd_bin,
            "etcd",
            "install etcd 3.4 (`apt-get install etcd-server`) or name it with --etcd-bin",
        )?,
        health_timeout: Duration::from_secs(args.health_timeout),
        workload_timeout: Duration::from_secs(args.workload_timeout),
    };
    let rounds = if args.smoke { 1 } else { args.rounds };
    let (date, time) = now_utc();
    // Recorded at the start: others may commit while a long run goes on.
    let built = std::fs::metadata(&setup.voter_bin)
        .and_then(|m| m.modified())
        .map_or_else(
            |_| String::new(),
            |t| {
                let (d, t) = utc(t);
                format!(", binary built {d} {t} UTC")
            },
        );
    let mango_version = match git_describe() {
        Some(g) => format!("{} ({g}{built})", version_of(&setup.voter_bin)),
        None => format!("{}{built}", version_of(&setup.voter_bin)),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let smoke = if args.smoke { "-smoke" } else { "" };
        workspace()
            .join("benches/results")
            .join(format!("{date}{suffix}{smoke}.md"))
    });
    let (work, temporary) = match &args.work_dir {
        Some(d) => (d.clone(), false),
        None => {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            (
                std::env::temp_dir().join(format!("mango-bench-{}-{secs}", std::process::id())),
                true,
            )
        }
    };
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    // Run copies, so a rebuild in the workspace during a long run changes nothing mid-way.
    let bin_dir = work.join("bin");
    setup.voter_bin = snapshot_bin(&setup.voter_bin, &bin_dir)?;
    setup.loadgen.bin = snapshot_bin(&setup.loadgen.bin, &bin_dir)?;
    Ok(Prepared {
        setup,
        rounds,
        scale: args.scale,
        smoke: args.smoke,
        date,
        time,
        mango_version,
        out,
        work,
        temporary,
        started,
        load_start,
    })
}

impl Prepared {
    /// The report header's facts, as of now.
    fn meta(&self) -> Meta {
        Meta {
            date: format!("{} {} UTC", self.date, self.time),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: procfs::cpu_model(),
            mem_mib: procfs::mem_total_mib(),
            rounds: self.rounds,
            scale: self.scale,
            smoke: self.smoke,
            etcd_version: version_of(&self.setup.etcd_bin).replace("etcd Version: ", ""),
            mango_version: self.mango_version.clone(),
            wall_seconds: self.started.elapsed().as_secs_f64(),
            load_start: self.load_start.clone(),
            load_end: procfs::load_average(),
        }
    }

    /// Writes the report, and removes a temporary work dir if every run went well.
    fn finish(&self, md: &str, all_ok: bool) -> Result<(), String> {
        if let Some(parent) = self.out.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&self.out, md)
            .map_err(|e| format!("writing {}: {e}", self.out.display()))?;
        eprintln!("mango-bench: report written to {}", self.out.display());
        if self.temporary && all_ok {
            let _ = std::fs::remove_dir_all(&self.work);
        } else {
            eprintln!(
                "mango-bench: logs and loadgen output kept in {}",
                self.work.display()
            );
        }
        Ok(())
    }
}

fn run(args: Args) -> Result<bool, String> {
    match &args.mode {
        Some(Mode::Learners(l)) => {
            let p = prepare(&args, "-learners")?;
            learners::run(&p, l)
        }
        Some(Mode::Proxy(a)) => {
            let p = prepare(&args, "-proxy")?;
            proxy::run(&p, a)
        }
        None => {
            let p = prepare(&args, "")?;
            run_comparison(&p, &args.only)
        }
    }
}

/// The side-by-side table: every workload on etcd, then on mango, over the rounds.
fn run_comparison(p: &Prepared, only: &[String]) -> Result<bool, String> {
    let (setup, rounds, work) = (&p.setup, p.rounds, &p.work);
    let workloads = workloads::select(workloads::all(p.scale, p.smoke), only);
    if workloads.is_empty() {
        return Err(format!("no workload matches --only {only:?}"));
    }
    eprintln!(
        "mango-bench: {} workload(s) x {rounds} round(s) x etcd, mango; scale {}{}; work dir {}",
        workloads.len(),
        p.scale,
        if p.smoke { " (smoke)" } else { "" },
        work.display()
    );

    let mut rows: Vec<Row> = workloads
        .iter()
        .map(|w| {
            Row::new(
                &w.name,
                w.args.join(" "),
                w.preload
                    .as_ref()
                    .map(|p| format!("mango-loadgen {}", p.join(" "))),
                w.dataset,
            )
        })
        .collect();
    let mut all_ok = true;
    for round in 1..=rounds {
        for (w, row) in workloads.iter().zip(rows.iter_mut()) {
            eprintln!("[round {round}/{rounds}] {}", w.name);
            for system in System::BOTH {
                let dir = work
                    .join(format!("r{round}"))
                    .join(workloads::slug(&w.name))
                    .join(system.name());
                let m = run_once(setup, system, w, round, &dir)
                    .map_err(|e| format!("{e}\n(work dir kept: {})", work.display()))?;
                eprintln!("  {}", progress_line(system, &m));
                all_ok &= m.report.is_some() && m.notes.is_empty();
                if let Some(runs) = row.runs.get_mut(&system) {
                    runs.push(m);
                }
            }
        }
    }

    let md = report::render_markdown(&p.meta(), &rows);
    let (table, footnotes) = report::main_table(&rows);
    println!("{table}");
    for (i, f) in footnotes.iter().enumerate() {
        println!("[{}] {f}", i + 1);
    }
    if let Some(t) = report::dataset_table(&rows) {
        println!("\n{t}");
    }
    p.finish(&md, all_ok)?;
    Ok(all_ok)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = mango_testkit::proc::install_handlers() {
        eprintln!("mango-bench: {e}");
        return ExitCode::FAILURE;
    }
    let code = match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("mango-bench: some runs failed or had problems; see the report's notes");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mango-bench: {e}");
            ExitCode::FAILURE
        }
    };
    mango_testkit::proc::kill_all();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
