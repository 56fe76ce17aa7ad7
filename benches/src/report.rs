//! Results: one measurement per run, medians over rounds, and the markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::cluster::System;
use crate::loadgen::Report;

/// What one run (one workload on one system in one round) measured.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    pub round: u32,
    /// loadgen's results, or why there are none.
    pub report: Option<Report>,
    pub failure: Option<String>,
    /// Server CPU seconds (all members) during the workload.
    pub server_cpu_seconds: Option<f64>,
    /// Largest VmHWM of any member at the end of the run, in MiB.
    pub peak_rss_mib: Option<f64>,
    /// Bytes in the three data dirs together, in MiB (dataset load only).
    pub disk_mib: Option<f64>,
    /// Things that went wrong besides request errors (a member that exited, a failed
    /// preload...), each one line or a few.
    pub notes: Vec<String>,
    /// Per member: the number of warning/error log lines and a few of them.
    pub trouble: Vec<(String, usize, Vec<String>)>,
}

impl Measurement {
    /// Server CPU seconds per 1,000 successful ops.
    pub fn cpu_per_1k_ops(&self) -> Option<f64> {
        let ops = self.report.as_ref()?.ops;
        (ops > 0).then(|| self.server_cpu_seconds.map(|s| s * 1000.0 / ops as f64))?
    }

    pub fn errors(&self) -> u64 {
        self.report.as_ref().map_or(0, Report::error_count)
    }
}

/// The median of `values` (mean of the two middle ones for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Medians over the rounds of one workload on one system.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub ops_per_sec: Option<f64>,
    pub p99_ms: Option<f64>,
    pub seconds: Option<f64>,
    pub cpu_per_1k_ops: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub disk_mib: Option<f64>,
    /// Failed requests summed over the rounds.
    pub errors: u64,
    /// Runs without loadgen results.
    pub failed_runs: usize,
    pub runs: usize,
}

pub fn summarize(runs: &[Measurement]) -> Summary {
    let pick = |f: &dyn Fn(&Measurement) -> Option<f64>| {
        median(&runs.iter().filter_map(f).collect::<Vec<_>>())
    };
    Summary {
        ops_per_sec: pick(&|m| m.report.as_ref().map(|r| r.ops_per_sec)),
        // A run without a single successful op has no latency to speak of.
        p99_ms: pick(&|m| m.report.as_ref().filter(|r| r.ops > 0).map(|r| r.p99_ms)),
        seconds: pick(&|m| m.report.as_ref().map(|r| r.seconds)),
        cpu_per_1k_ops: pick(&Measurement::cpu_per_1k_ops),
        peak_rss_mib: pick(&|m| m.peak_rss_mib),
        disk_mib: pick(&|m| m.disk_mib),
        errors: runs.iter().map(Measurement::errors).sum(),
        failed_runs: runs.iter().filter(|m| m.report.is_none()).count(),
        runs: runs.len(),
    }
}

/// One workload's runs on both systems.
#[derive(Debug, Clone)]
pub struct Row {
    pub workload: String,
    /// The loadgen command line of the measured run (without endpoints), for the report.
    pub command: String,
    pub preload: Option<String>,
    pub dataset: bool,
    pub runs: BTreeMap<System, Vec<Measurement>>,
}

impl Row {
    pub fn new(workload: &str, command: String, preload: Option<String>, dataset: bool) -> Self {
        Row {
            workload: workload.to_owned(),
            command,
            preload,
            dataset,
            runs: System::BOTH.iter().map(|&s| (s, Vec::new())).collect(),
        }
    }

    pub fn summary(&self, system: System) -> Summary {
        summarize(self.runs.get(&system).map_or(&[][..], Vec::as_slice))
    }
}

/// `x` with `decimals` decimals, or an en dash when absent.
pub fn num(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => "–".into(),
    }
}

/// Throughput: no decimals from 100 up, one below.
fn rate(x: Option<f64>) -> String {
    match x {
        Some(x) if x >= 100.0 => num(Some(x), 0),
        other => num(other, 1),
    }
}

/// Latency: two decimals, three below 1 ms.
fn millis(x: Option<f64>) -> String {
    match x {
        Some(x) if x < 1.0 => num(Some(x), 3),
        other => num(other, 2),
    }
}

/// mango / etcd.
pub fn ratio(mango: Option<f64>, etcd: Option<f64>) -> Option<f64> {
    match (mango, etcd) {
        (Some(m), Some(e)) if e > 0.0 => Some(m / e),
        _ => None,
    }
}

/// A markdown table whose columns are padded to line up in a terminal too.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = " ".repeat(width[i] - c.chars().count());
                // Names left, numbers right, as the rule below says.
                if i == 0 {
                    format!("{c}{pad}")
                } else {
                    format!("{pad}{c}")
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    // The first column (names) aligned left, numbers right.
    let rule: Vec<String> = width
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            if i == 0 {
                format!(":{}", "-".repeat(w.max(3) - 1))
            } else {
                format!("{}:", "-".repeat(w.max(3) - 1))
            }
        })
        .collect();
    // The rule may be wider than the header for columns of width < 3; keep it simple.
    let _ = writeln!(out, "| {} |", rule.join(" | "));
    for row in rows {
        let mut cells = row.clone();
        cells.resize(cols, String::new());
        out.push_str(&line(cells));
    }
    out
}

pub const MAIN_HEADERS: [&str; 11] = [
    "workload",
    "etcd ops/s",
    "mango ops/s",
    "ratio (mango/etcd)",
    "etcd p99 ms",
    "mango p99 ms",
    "etcd CPU-s/1k ops",
    "mango CPU-s/1k ops",
    "etcd peak RSS MiB",
    "mango peak RSS MiB",
    "errors etcd / mango",
];

/// The errors cell: counts summed over rounds, failed runs, and a footnote mark.
fn errors_cell(e: &Summary, m: &Summary, note: Option<usize>) -> String {
    let one = |s: &Summary| {
        if s.failed_runs > 0 {
            format!("{} ({} run(s) failed)", s.errors, s.failed_runs)
        } else {
            s.errors.to_string()
        }
    };
    let mut cell = format!("{} / {}", one(e), one(m));
    if let Some(n) = note {
        let _ = write!(cell, " [{n}]");
    }
    cell
}

/// The main table's rows; footnotes (numbered from 1) for every row with errors, failed runs
/// or notes are returned alongside.
pub fn main_table(rows: &[Row]) -> (String, Vec<String>) {
    let mut footnotes = Vec::new();
    let mut cells = Vec::new();
    for row in rows {
        let e = row.summary(System::Etcd);
        let m = row.summary(System::Mango);
        let details = row_details(row);
        let note = if details.is_empty() {
            None
        } else {
            footnotes.push(format!("{}: {}", row.workload, details.join("; ")));
            Some(footnotes.len())
        };
        cells.push(vec![
            row.workload.clone(),
            rate(e.ops_per_sec),
            rate(m.ops_per_sec),
            num(ratio(m.ops_per_sec, e.ops_per_sec), 2),
            millis(e.p99_ms),
            millis(m.p99_ms),
            num(e.cpu_per_1k_ops, 3),
            num(m.cpu_per_1k_ops, 3),
            num(e.peak_rss_mib, 0),
            num(m.peak_rss_mib, 0),
            errors_cell(&e, &m, note),
        ]);
    }
    (render_table(&MAIN_HEADERS, &cells), footnotes)
}

/// Per system: the request errors by code and round, failed runs and notes of one row.
fn row_details(row: &Row) -> Vec<String> {
    let mut out = Vec::new();
    for (system, runs) in &row.runs {
        let mut parts = Vec::new();
        for m in runs {
            if let Some(r) = &m.report
                && !r.errors.is_empty()
            {
                let codes: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
                parts.push(format!(
                    "round {}: {} errors, {} ok ({})",
                    m.round,
                    r.error_count(),
                    r.ops,
                    codes.join(", ")
                ));
            }
            if let Some(f) = &m.failure {
                parts.push(format!("round {}: no results: {f}", m.round));
            }
            for n in &m.notes {
                parts.push(format!("round {}: {n}", m.round));
            }
        }
        if !parts.is_empty() {
            out.push(format!("{system}: {}", parts.join("; ")));
        }
    }
    out
}

/// The dataset-load table: time, throughput, disk and memory.
pub fn dataset_table(rows: &[Row]) -> Option<String> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| r.dataset)
        .map(|row| {
            let e = row.summary(System::Etcd);
            let m = row.summary(System::Mango);
            vec![
                row.workload.clone(),
                num(e.seconds, 1),
                num(m.seconds, 1),
                num(e.disk_mib, 1),
                num(m.disk_mib, 1),
                num(e.peak_rss_mib, 0),
                num(m.peak_rss_mib, 0),
            ]
        })
        .collect();
    if cells.is_empty() {
        return None;
    }
    Some(render_table(
        &[
            "dataset",
            "etcd load s",
            "mango load s",
            "etcd on-disk MiB (3 dirs)",
            "mango on-disk MiB (3 dirs)",
            "etcd peak RSS MiB",
            "mango peak RSS MiB",
        ],
        &cells,
    ))
}

/// Every run, for the appendix.
pub fn runs_table(rows: &[Row]) -> String {
    let mut cells = Vec::new();
    for row in rows {
        for (system, runs) in &row.runs {
            for m in runs {
                let r = m.report.as_ref();
                cells.push(vec![
                    row.workload.clone(),
                    system.to_string(),
                    m.round.to_string(),
                    r.map_or("–".into(), |r| r.ops.to_string()),
                    rate(r.map(|r| r.ops_per_sec)),
                    millis(r.filter(|r| r.ops > 0).map(|r| r.p50_ms)),
                    millis(r.filter(|r| r.ops > 0).map(|r| r.p99_ms)),
                    r.map_or("–".into(), |r| r.error_count().to_string()),
                    num(m.server_cpu_seconds, 2),
                    num(m.peak_rss_mib, 0),
                    num(m.disk_mib, 1),
                ]);
            }
        }
    }
    render_table(
        &[
            "workload",
            "system",
            "round",
            "ops",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "server CPU s",
            "peak RSS MiB",
            "disk MiB",
        ],
        &cells,
    )
}

/// Warning/error log lines per system and workload, summed over rounds and members, with a
/// few samples of mango's.
pub fn log_section(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        for (system, runs) in &row.runs {
            let mut count = 0;
            let mut samples: Vec<String> = Vec::new();
            for m in runs {
                for (member, n, lines) in &m.trouble {
                    count += n;
                    for l in lines {
                        if samples.len() < 5 {
                            samples.push(format!("round {} {member}: {l}", m.round));
                        }
                    }
                }
            }
            if count == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "- {} on {system}: {count} warning/error line(s) over all members and rounds",
                row.workload
            );
            if *system == System::Mango {
                for s in samples {
                    let _ = writeln!(out, "  - `{}`", s.replace('`', "'"));
                }
            }
        }
    }
    if out.is_empty() {
        out.push_str("- none\n");
    }
    out
}

/// Facts for the report's header.
#[derive(Debug, Clone)]
pub struct Meta {
    pub date: String,
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_mib: Option<u64>,
    pub rounds: u32,
    pub scale: f64,
    pub smoke: bool,
    pub etcd_version: String,
    pub mango_version: String,
    pub wall_seconds: f64,
    /// `/proc/loadavg`'s 1/5/15-minute averages at the start and at the end: other work on
    /// the machine shows here.
    pub load_start: String,
    pub load_end: String,
}

pub const DURABILITY: &str = "fsync on in both: etcd default, mango Raft log fsynced before any entry is acknowledged (one fsync per log write, each write taking every Ready queued meanwhile)";

/// The whole markdown file.
pub fn render_markdown(meta: &Meta, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# mango vs etcd, {}\n", meta.date);
    let mem = meta.mem_mib.map_or(String::new(), |m| {
        format!(", {:.1} GiB RAM", m as f64 / 1024.0)
    });
    let _ = writeln!(
        s,
        "- Machine: {} CPUs (nproc), {}{mem}",
        meta.nproc, meta.cpu_model
    );
    let _ = writeln!(s, "- Durability: {DURABILITY}");
    let _ = writeln!(
        s,
        "- Rounds: {} (median reported), scale {}{}",
        meta.rounds,
        meta.scale,
        if meta.smoke {
            " (smoke: tiny sizes, not a measurement)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "- etcd: {}; mango: {}",
        meta.etcd_version, meta.mango_version
    );
    let _ = writeln!(
        s,
        "- Clusters: 3 members each on loopback, fresh data dirs per run; only one cluster runs \
         at a time (per workload and round: etcd, then mango)"
    );
    let _ = writeln!(
        s,
        "- The load generator (mango-loadgen) runs on the same machine and shares the {} cores \
         with the servers.",
        meta.nproc
    );
    let _ = writeln!(
        s,
        "- Wall time of the whole benchmark: {:.0} s; load average at the start {}, at the end \
         {} (other work on the machine shows here)\n",
        meta.wall_seconds, meta.load_start, meta.load_end
    );

    let (table, footnotes) = main_table(rows);
    s.push_str(&table);
    s.push('\n');
    let _ = writeln!(
        s,
        "ops/s and p99 are loadgen's (successful requests only; for watch-latency one op is one \
         event seen by one watcher, and every event a watcher misses counts as one \
         DeadlineExceeded error). CPU-s/1k ops: utime+stime of the 3 server processes over \
         the measured run, per 1,000 successful ops. Peak RSS: the largest VmHWM of the 3 \
         members at the end of the run. Errors: failed requests summed over the rounds.\n"
    );
    if !footnotes.is_empty() {
        for (i, f) in footnotes.iter().enumerate() {
            let _ = writeln!(s, "{}. [{}] {f}", i + 1, i + 1);
        }
        s.push('\n');
    }
    if let Some(t) = dataset_table(rows) {
        let _ = writeln!(s, "## Dataset load\n");
        s.push_str(&t);
        let _ = writeln!(
            s,
            "\nOn-disk: apparent sizes of all files in the 3 data dirs together, measured while \
             the servers still run (etcd preallocates 64 MB WAL segments, counted in full).\n"
        );
    }
    let _ = writeln!(s, "## Workloads\n");
    for row in rows {
        let _ = write!(
            s,
            "- {}: `mango-loadgen --endpoints <3 members> --json {}`",
            row.workload, row.command
        );
        if let Some(p) = &row.preload {
            let _ = write!(s, " after a preload `{p}`");
        }
        s.push('\n');
    }
    let _ = writeln!(s, "\n## Server log warnings and errors\n");
    s.push_str(&log_section(rows));
    let _ = writeln!(s, "\n## Every run\n");
    s.push_str(&runs_table(rows));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ops: u64, ops_per_sec: f64, p99: f64, errors: &[(&str, u64)]) -> Report {
        Report {
            ops,
            seconds: ops as f64 / ops_per_sec.max(1.0),
            ops_per_sec,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            errors: errors.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        }
    }

    fn run(round: u32, r: Option<Report>, cpu: f64, rss: f64) -> Measurement {
        Measurement {
            round,
            failure: r
                .is_none()
                .then(|| "mango-loadgen exit status: 1".to_owned()),
            report: r,
            server_cpu_seconds: Some(cpu),
            peak_rss_mib: Some(rss),
            ..Default::default()
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn summary_takes_medians_and_sums_errors() {
        let runs = vec![
            run(1, Some(report(1000, 100.0, 5.0, &[])), 1.0, 50.0),
            run(
                2,
                Some(report(1000, 300.0, 1.0, &[("Unavailable", 2)])),
                3.0,
                70.0,
            ),
            run(3, Some(report(1000, 200.0, 9.0, &[])), 2.0, 60.0),
        ];
        let s = summarize(&runs);
        assert_eq!(s.ops_per_sec, Some(200.0));
        assert_eq!(s.p99_ms, Some(5.0));
        assert_eq!(s.cpu_per_1k_ops, Some(2.0));
        assert_eq!(s.peak_rss_mib, Some(60.0));
        assert_eq!(s.errors, 2);
        assert_eq!(s.failed_runs, 0);
        let failed = summarize(&[run(1, None, 1.0, 10.0)]);
        assert_eq!(failed.ops_per_sec, None);
        assert_eq!(failed.cpu_per_1k_ops, None);
        assert_eq!(failed.failed_runs, 1);
        let no_ops = summarize(&[run(
            1,
            Some(report(0, 0.0, 0.0, &[("Unimplemented", 10)])),
            1.0,
            1.0,
        )]);
        assert_eq!(no_ops.p99_ms, None, "no latency without a successful op");
        assert_eq!(no_ops.cpu_per_1k_ops, None);
        assert_eq!(no_ops.ops_per_sec, Some(0.0));
    }

    #[test]
    fn table_columns_line_up() {
        let t = render_table(
            &["name", "n"],
            &[
                vec!["a".into(), "12345".into()],
                vec!["bbbbbb".into(), "1".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "| name   |     n |");
        assert_eq!(lines[1], "| :----- | ----: |");
        assert_eq!(lines[2], "| a      | 12345 |");
        assert_eq!(lines[3], "| bbbbbb |     1 |");
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count())
        );
    }

    #[test]
    fn main_table_has_every_column_and_footnotes_errors() {
        let mut row = Row::new("put-64c", "--clients 64 put".into(), None, false);
        row.runs.insert(
            System::Etcd,
            vec![run(1, Some(report(20000, 10000.0, 12.5, &[])), 4.0, 100.0)],
        );
        row.runs.insert(
            System::Mango,
            vec![run(
                1,
                Some(report(19990, 5000.0, 0.5, &[("Unavailable", 10)])),
                2.0,
                50.4,
            )],
        );
        let mut bad = Row::new("watch", "watch-latency".into(), None, false);
        bad.runs.insert(
            System::Etcd,
            vec![run(1, Some(report(100, 50.0, 2.0, &[])), 0.1, 10.0)],
        );
        bad.runs
            .insert(System::Mango, vec![run(1, None, 0.1, 10.0)]);
        let (table, notes) = main_table(&[row, bad]);
        let lines: Vec<&str> = table.lines().collect();
        for h in MAIN_HEADERS {
            assert!(lines[0].contains(h), "{h} missing");
        }
        let cells: Vec<&str> = lines[2].split('|').map(str::trim).collect();
        assert_eq!(
            &cells[1..12],
            &[
                "put-64c",
                "10000",
                "5000",
                "0.50",
                "12.50",
                "0.500",
                "0.200",
                "0.100",
                "100",
                "50",
                "0 / 10 [1]"
            ]
        );
        assert!(
            lines[3].contains("0 / 0 (1 run(s) failed) [2]"),
            "{}",
            lines[3]
        );
        assert_eq!(notes.len(), 2);
        assert!(
            notes[0].contains("mango: round 1: 10 errors, 19990 ok (Unavailable 10)"),
            "{}",
            notes[0]
        );
        assert!(
            notes[1].contains("no results: mango-loadgen exit status: 1"),
            "{}",
            notes[1]
        );
    }

    #[test]
    fn markdown_names_date_machine_durability_and_sharing() {
        let mut row = Row::new("dataset", "put".into(), None, true);
        let mut m = run(1, Some(report(1000, 100.0, 5.0, &[])), 1.0, 50.0);
        m.disk_mib = Some(12.34);
        m.trouble = vec![("m1".into(), 2, vec!["x WARN slow".into()])];
        row.runs.insert(System::Mango, vec![m]);
        let meta = Meta {
            date: "2026-01-02".into(),
            nproc: 2,
            cpu_model: "AMD EPYC".into(),
            mem_mib: Some(2048),
            rounds: 3,
            scale: 0.5,
            smoke: false,
            etcd_version: "3.4.23".into(),
            mango_version: "0.1.0".into(),
            wall_seconds: 12.0,
            load_start: "0.10 0.20 0.30".into(),
            load_end: "1.00 1.00 1.00".into(),
        };
        let md = render_markdown(&meta, &[row]);
        for needle in [
            "# mango vs etcd, 2026-01-02",
            "2 CPUs (nproc), AMD EPYC, 2.0 GiB RAM",
            DURABILITY,
            "Rounds: 3",
            "scale 0.5",
            "shares the 2 cores with the servers",
            "load average at the start 0.10 0.20 0.30, at the end 1.00 1.00 1.00",
            "## Dataset load",
            "12.3",
            "dataset on mango: 2 warning/error line(s)",
            "`round 1 m1: x WARN slow`",
        ] {
            assert!(md.contains(needle), "{needle:?} missing from\n{md}");
        }
    }
}
