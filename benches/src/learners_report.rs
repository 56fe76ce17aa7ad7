//! The learner benchmark's results: one [`ReadRun`] per measured run, medians over rounds,
//! and the markdown report.

use std::fmt::Write as _;

use crate::cluster::System;
use crate::learners::{CLIENTS, read_args};
use crate::loadgen::Report;
use crate::report::{DURABILITY, Meta, median, num, render_table};

/// What one read run measured.
#[derive(Debug, Clone, Default)]
pub struct ReadRun {
    pub round: u32,
    /// loadgen's results, or why there are none.
    pub report: Option<Report>,
    pub failure: Option<String>,
    /// CPU seconds of the leading voter over the run.
    pub leader_cpu_s: Option<f64>,
    /// CPU seconds of the 3 voters (members) together over the run.
    pub voters_cpu_s: Option<f64>,
    /// CPU seconds of all learners together over the run (none when no learner runs).
    pub learners_cpu_s: Option<f64>,
    /// The leader's CPU seconds per second while the cluster idled just before.
    pub leader_idle_cpu: Option<f64>,
    /// What went wrong besides request errors.
    pub notes: Vec<String>,
}

impl ReadRun {
    /// `cpu_s` as CPU-milliseconds per 1,000 successful reads.
    fn per_1k_ms(&self, cpu_s: Option<f64>) -> Option<f64> {
        let ops = self.report.as_ref()?.ops;
        (ops > 0).then(|| cpu_s.map(|s| s * 1e6 / ops as f64))?
    }

    pub fn leader_ms_per_1k(&self) -> Option<f64> {
        self.per_1k_ms(self.leader_cpu_s)
    }

    /// The leader's CPU beyond what it burns idle over the same time, per 1,000 reads.
    pub fn leader_above_idle_ms_per_1k(&self) -> Option<f64> {
        let seconds = self.report.as_ref()?.seconds;
        let extra = self.leader_cpu_s? - self.leader_idle_cpu? * seconds;
        self.per_1k_ms(Some(extra))
    }

    pub fn voters_ms_per_1k(&self) -> Option<f64> {
        self.per_1k_ms(self.voters_cpu_s)
    }

    pub fn learners_ms_per_1k(&self) -> Option<f64> {
        self.per_1k_ms(self.learners_cpu_s)
    }

    pub fn errors(&self) -> u64 {
        self.report.as_ref().map_or(0, Report::error_count)
    }
}

/// One configuration and consistency level, over the rounds.
#[derive(Debug, Clone)]
pub struct Row {
    pub system: System,
    /// mango: how many learners serve the reads (0: the voters do); etcd: none.
    pub learners: Option<u32>,
    /// loadgen's `--consistency` value.
    pub consistency: String,
    pub runs: Vec<ReadRun>,
}

impl Row {
    fn new(system: System, learners: Option<u32>, consistency: &str) -> Row {
        Row {
            system,
            learners,
            consistency: consistency.to_owned(),
            runs: Vec::new(),
        }
    }

    fn median(&self, f: impl Fn(&ReadRun) -> Option<f64>) -> Option<f64> {
        median(&self.runs.iter().filter_map(f).collect::<Vec<_>>())
    }
}

/// The rows in report order: etcd serializable and linearizable, then mango stale and
/// learner-linearizable on the voters and on 1..=`max_learners` learners.
pub fn rows(max_learners: u32) -> Vec<Row> {
    let mut rows = vec![
        Row::new(System::Etcd, None, "s"),
        Row::new(System::Etcd, None, "l"),
    ];
    for k in 0..=max_learners {
        rows.push(Row::new(System::Mango, Some(k), "stale"));
        rows.push(Row::new(System::Mango, Some(k), "learner-linearizable"));
    }
    rows
}

/// Who serves the reads.
pub fn readers(learners: Option<u32>) -> String {
    match learners {
        None => "3 members".into(),
        Some(0) => "3 voters".into(),
        Some(1) => "1 learner".into(),
        Some(k) => format!("{k} learners"),
    }
}

/// A consistency level as the report names it.
pub fn level_name(consistency: &str) -> &str {
    match consistency {
        "s" => "serializable",
        "l" => "linearizable",
        other => other,
    }
}

/// A file-name-safe form of a consistency level.
pub fn slug(consistency: &str) -> String {
    level_name(consistency)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// One line of progress on stderr.
pub fn progress_line(row: &Row, run: &ReadRun) -> String {
    let mut s = match &run.report {
        Some(r) => format!(
            "{:<21} {:>9.1} reads/s  p99 {:>8.3} ms  {} errors",
            level_name(&row.consistency),
            r.ops_per_sec,
            r.p99_ms,
            r.error_count()
        ),
        None => format!(
            "{:<21} FAILED: {}",
            level_name(&row.consistency),
            run.failure.as_deref().unwrap_or("?")
        ),
    };
    if let Some(c) = run.leader_ms_per_1k() {
        let _ = write!(s, "  leader {c:.2} CPU-ms/1k");
    }
    if let Some(c) = run.leader_above_idle_ms_per_1k() {
        let _ = write!(s, " ({c:.2} above idle)");
    }
    for n in &run.notes {
        let _ = write!(s, "\n    note: {n}");
    }
    s
}

pub const HEADERS: [&str; 9] = [
    "system, reads served by",
    "consistency",
    "reads/s",
    "p99 ms",
    "leader CPU-ms / 1k reads",
    "leader above idle, CPU-ms / 1k reads",
    "all voters CPU-ms / 1k reads",
    "learners CPU-ms / 1k reads",
    "errors",
];

/// The main table and its footnotes (errors, failed runs, notes), numbered from 1.
pub fn main_table(rows: &[Row]) -> (String, Vec<String>) {
    let mut footnotes = Vec::new();
    let mut cells = Vec::new();
    for row in rows {
        let mut details = Vec::new();
        for run in &row.runs {
            if let Some(r) = &run.report
                && !r.errors.is_empty()
            {
                let codes: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
                details.push(format!("round {}: {}", run.round, codes.join(", ")));
            }
            if let Some(f) = &run.failure {
                details.push(format!("round {}: no results: {f}", run.round));
            }
            for n in &run.notes {
                details.push(format!("round {}: {n}", run.round));
            }
        }
        let mut errors = row
            .runs
            .iter()
            .map(ReadRun::errors)
            .sum::<u64>()
            .to_string();
        let failed = row.runs.iter().filter(|r| r.report.is_none()).count();
        if failed > 0 {
            let _ = write!(errors, " ({failed} run(s) failed)");
        }
        if !details.is_empty() {
            footnotes.push(format!(
                "{} {} {}: {}",
                row.system,
                readers(row.learners),
                level_name(&row.consistency),
                details.join("; ")
            ));
            let _ = write!(errors, " [{}]", footnotes.len());
        }
        let rate = row.median(|r| r.report.as_ref().map(|r| r.ops_per_sec));
        cells.push(vec![
            format!("{}, {}", row.system, readers(row.learners)),
            level_name(&row.consistency).to_owned(),
            num(rate, 0),
            num(
                row.median(|r| r.report.as_ref().filter(|r| r.ops > 0).map(|r| r.p99_ms)),
                2,
            ),
            num(row.median(ReadRun::leader_ms_per_1k), 2),
            num(row.median(ReadRun::leader_above_idle_ms_per_1k), 2),
            num(row.median(ReadRun::voters_ms_per_1k), 2),
            num(row.median(ReadRun::learners_ms_per_1k), 2),
            errors,
        ]);
    }
    (render_table(&HEADERS, &cells), footnotes)
}

/// Every run, for the appendix.
pub fn runs_table(rows: &[Row]) -> String {
    let mut cells = Vec::new();
    for row in rows {
        for run in &row.runs {
            let r = run.report.as_ref();
            cells.push(vec![
                format!("{}, {}", row.system, readers(row.learners)),
                level_name(&row.consistency).to_owned(),
                run.round.to_string(),
                r.map_or("–".into(), |r| r.ops.to_string()),
                num(r.map(|r| r.seconds), 2),
                num(r.map(|r| r.ops_per_sec), 0),
                num(r.filter(|r| r.ops > 0).map(|r| r.p99_ms), 2),
                num(run.leader_cpu_s, 2),
                num(run.leader_idle_cpu.map(|c| c * 1000.0), 1),
                num(run.voters_cpu_s, 2),
                num(run.learners_cpu_s, 2),
            ]);
        }
    }
    render_table(
        &[
            "readers",
            "consistency",
            "round",
            "reads",
            "s",
            "reads/s",
            "p99 ms",
            "leader CPU s",
            "leader idle CPU-ms/s",
            "voters CPU s",
            "learners CPU s",
        ],
        &cells,
    )
}

/// Facts for the report's header besides [`Meta`].
#[derive(Debug, Clone)]
pub struct Facts {
    pub meta: Meta,
    /// Reads per run.
    pub reads: u64,
    /// Seconds of idle measured before each configuration.
    pub idle_seconds: f64,
    pub learner_version: String,
    /// One line per server log with warnings or errors.
    pub log_notes: Vec<String>,
}

/// The whole markdown file.
pub fn render_markdown(f: &Facts, rows: &[Row]) -> String {
    let m = &f.meta;
    let mut s = String::new();
    let _ = writeln!(s, "# Reads on learners: mango vs etcd, {}\n", m.date);
    let mem = m.mem_mib.map_or(String::new(), |x| {
        format!(", {:.1} GiB RAM", x as f64 / 1024.0)
    });
    let _ = writeln!(
        s,
        "- Machine: {} CPUs (nproc), {}{mem}",
        m.nproc, m.cpu_model
    );
    let _ = writeln!(s, "- Durability: {DURABILITY}");
    let _ = writeln!(
        s,
        "- Rounds: {} (median reported), scale {}: {} reads per run, {CLIENTS} clients{}",
        m.rounds,
        m.scale,
        f.reads,
        if m.smoke {
            " (smoke: tiny sizes, not a measurement)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "- etcd: {}; mango: {}; learner: {}",
        m.etcd_version, m.mango_version, f.learner_version
    );
    let _ = writeln!(
        s,
        "- Per round: a fresh 3-member etcd cluster (serializable, then linearizable reads on \
         all 3 members), stopped; then a fresh 3-voter mango cluster serving its log stream, \
         reads on the 3 voters, then on 1, 2, ... learners only (one learner added at a time, \
         each following a follower's stream, round-robin over the 2 followers, so the leader \
         streams to no learner). One key, preloaded through the voters."
    );
    let _ = writeln!(
        s,
        "- **Learners, voters and the load generator share the same {} cores**: throughput \
         cannot scale with learners on this machine. The point is the leader's CPU per read.",
        m.nproc
    );
    let _ = writeln!(
        s,
        "- Wall time: {:.0} s; load average at the start {}, at the end {}\n",
        m.wall_seconds, m.load_start, m.load_end
    );
    let (table, footnotes) = main_table(rows);
    s.push_str(&table);
    s.push('\n');
    let _ = writeln!(
        s,
        "reads/s and p99: loadgen's (successful reads only). CPU: utime+stime from \
         `/proc/<pid>/stat` (10 ms ticks) over the measured run, in CPU-milliseconds per 1,000 \
         successful reads. The leader is found with `etcdctl endpoint status` (the Maintenance \
         Status RPC) before and after each run. \"Above idle\" subtracts what the leader burnt \
         per second while the cluster idled for {:.1} s just before (heartbeats, ticks, \
         log-stream stamps), times the run's length; it is noisy at this tick size and may \
         come out below zero. On the voters (0 learners) learner-linearizable is mango's \
         linearizable read (one ReadIndex per batch of waiting reads); on a learner it is one \
         read-index request upstream per batch, which the follower voter turns into a \
         ReadIndex at the leader. etcd's serializable and linearizable are etcd's own; etcd \
         ignores the `mango-consistency` metadata.\n",
        f.idle_seconds
    );
    for (i, note) in footnotes.iter().enumerate() {
        let _ = writeln!(s, "{}. [{}] {note}", i + 1, i + 1);
    }
    if !footnotes.is_empty() {
        s.push('\n');
    }
    let _ = writeln!(s, "## Commands\n");
    let _ = writeln!(
        s,
        "- every run: `mango-loadgen --endpoints <the readers> --json {}` with `<level>` s, l \
         (etcd) or stale, learner-linearizable (mango)",
        read_args(f.reads, "<level>").join(" ")
    );
    let _ = writeln!(
        s,
        "- learners: `mango-learner --name lK --data-dir <dir> --listen-client-urls \
         http://127.0.0.1:<port> --upstream <follower stream>,<other follower stream>`; voters \
         as in the main benchmark plus `--listen-logstream-addr 127.0.0.1:<udp port>`"
    );
    let _ = writeln!(s, "\n## Server log warnings and errors\n");
    if f.log_notes.is_empty() {
        let _ = writeln!(s, "- none");
    }
    for n in &f.log_notes {
        let _ = writeln!(s, "- {n}");
    }
    let _ = writeln!(s, "\n## Every run\n");
    s.push_str(&runs_table(rows));
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn run(ops: u64, seconds: f64, leader: f64, idle: f64) -> ReadRun {
        ReadRun {
            round: 1,
            report: Some(Report {
                ops,
                seconds,
                ops_per_sec: ops as f64 / seconds,
                p50_ms: 1.0,
                p99_ms: 2.0,
                errors: BTreeMap::new(),
            }),
            leader_cpu_s: Some(leader),
            voters_cpu_s: Some(leader * 2.0),
            leader_idle_cpu: Some(idle),
            ..Default::default()
        }
    }

    #[test]
    fn cpu_per_1k_reads_in_ms_and_above_idle() {
        let r = run(10_000, 2.0, 0.5, 0.05);
        assert_eq!(r.leader_ms_per_1k(), Some(50.0));
        // 0.5 s - 0.05 CPU-s/s * 2 s = 0.4 s over 10k reads.
        assert!((r.leader_above_idle_ms_per_1k().unwrap() - 40.0).abs() < 1e-9);
        assert_eq!(r.voters_ms_per_1k(), Some(100.0));
        assert_eq!(r.learners_ms_per_1k(), None);
        let zero = run(0, 1.0, 0.5, 0.0);
        assert_eq!(zero.leader_ms_per_1k(), None);
    }

    #[test]
    fn rows_cover_etcd_and_every_learner_count() {
        let rows = rows(2);
        assert_eq!(rows.len(), 2 + 3 * 2);
        let names: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {} {}", r.system, readers(r.learners), r.consistency))
            .collect();
        assert_eq!(names[0], "etcd 3 members s");
        assert_eq!(names[2], "mango 3 voters stale");
        assert_eq!(names[5], "mango 1 learner learner-linearizable");
        assert_eq!(names[7], "mango 2 learners learner-linearizable");
        assert_eq!(slug("learner-linearizable"), "learner-linearizable");
        assert_eq!(slug("s"), "serializable");
    }

    #[test]
    fn table_has_medians_and_footnotes() {
        let mut rows = rows(0);
        rows[0].runs = vec![run(1000, 1.0, 0.1, 0.0), run(1000, 1.0, 0.3, 0.0)];
        let mut bad = run(1000, 1.0, 0.1, 0.0);
        bad.notes.push("leadership moved".into());
        rows[2].runs = vec![bad];
        let (table, notes) = main_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("leader CPU-ms / 1k reads"));
        assert!(lines[2].starts_with("| etcd, 3 members "), "{table}");
        assert!(
            lines[2].contains(" 200.00 |"),
            "median of 100 and 300: {table}"
        );
        assert!(lines[4].contains("0 [1]"), "{table}");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("mango 3 voters stale: round 1: leadership moved"));
    }
}
