//! The proxy benchmark's results: one [`Run`] per loadgen run, medians over rounds, the
//! direct-vs-proxy differences, and the markdown report.

use std::fmt::Write as _;

use crate::loadgen::Report;
use crate::proxy::Workload;
use crate::report::{Meta, median, num, ratio, render_table};

/// The durability of every run (only mango runs here).
pub const DURABILITY: &str = "fsync on: each voter's Raft log is fsynced before an entry is \
                              acknowledged (one fsync per log write, each write taking every \
                              Ready queued meanwhile)";

/// How loadgen reaches the members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Straight to the members that serve the workload.
    Direct,
    /// Through `mango-proxy`.
    Proxy,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Proxy => "proxy",
        }
    }
}

/// Whom loadgen talks to when it goes direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// All 3 voters' client endpoints (followers forward writes to the leader).
    Voters,
    /// The learner's client endpoint.
    Learner,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Voters => "3 voters",
            Target::Learner => "learner",
        }
    }
}

/// What one loadgen run measured.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub round: u32,
    /// loadgen's results, or why there are none.
    pub report: Option<Report>,
    pub failure: Option<String>,
    /// CPU seconds of the proxy over the run (idle health checks only on direct runs).
    pub proxy_cpu_s: Option<f64>,
    /// CPU seconds of the learner over the run: shows the stale reads landed there.
    pub learner_cpu_s: Option<f64>,
    /// CPU seconds of the 3 voters together over the run.
    pub voters_cpu_s: Option<f64>,
    /// The proxy's peak RSS during the run (VmHWM, reset just before); proxy runs only.
    pub proxy_peak_rss_mib: Option<f64>,
    /// What went wrong besides request errors.
    pub notes: Vec<String>,
}

impl Run {
    fn ok_report(&self) -> Option<&Report> {
        self.report.as_ref().filter(|r| r.ops > 0)
    }

    /// The proxy's CPU-milliseconds per 1,000 successful requests.
    pub fn proxy_ms_per_1k(&self) -> Option<f64> {
        let ops = self.ok_report()?.ops;
        self.proxy_cpu_s.map(|s| s * 1e6 / ops as f64)
    }

    pub fn errors(&self) -> u64 {
        self.report.as_ref().map_or(0, Report::error_count)
    }

    fn is_ok(&self) -> bool {
        self.report.is_some() && self.errors() == 0 && self.notes.is_empty()
    }
}

/// One workload over the rounds, both ways.
#[derive(Debug, Clone)]
pub struct Row {
    pub workload: Workload,
    pub direct: Vec<Run>,
    pub proxy: Vec<Run>,
}

/// Medians of one side of a row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Side {
    pub ops_per_sec: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

fn side(runs: &[Run]) -> Side {
    let m = |f: fn(&Report) -> f64| {
        median(
            &runs
                .iter()
                .filter_map(Run::ok_report)
                .map(f)
                .collect::<Vec<_>>(),
        )
    };
    Side {
        ops_per_sec: m(|r| r.ops_per_sec),
        p50_ms: m(|r| r.p50_ms),
        p99_ms: m(|r| r.p99_ms),
    }
}

/// `b - a` when both are known.
fn minus(b: Option<f64>, a: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

impl Row {
    pub fn new(workload: Workload) -> Row {
        Row {
            workload,
            direct: Vec::new(),
            proxy: Vec::new(),
        }
    }

    pub fn runs_mut(&mut self, via: Path) -> &mut Vec<Run> {
        match via {
            Path::Direct => &mut self.direct,
            Path::Proxy => &mut self.proxy,
        }
    }

    pub fn all_ok(&self) -> bool {
        self.direct.iter().chain(&self.proxy).all(Run::is_ok)
    }

    pub fn direct_side(&self) -> Side {
        side(&self.direct)
    }

    pub fn proxy_side(&self) -> Side {
        side(&self.proxy)
    }

    /// Median proxy p50 minus median direct p50, and the same for p99.
    pub fn added_ms(&self) -> (Option<f64>, Option<f64>) {
        let (d, p) = (self.direct_side(), self.proxy_side());
        (minus(p.p50_ms, d.p50_ms), minus(p.p99_ms, d.p99_ms))
    }

    /// Proxy throughput over direct throughput (medians).
    pub fn throughput_ratio(&self) -> Option<f64> {
        ratio(
            self.proxy_side().ops_per_sec,
            self.direct_side().ops_per_sec,
        )
    }

    fn proxy_median(&self, f: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
        median(&self.proxy.iter().filter_map(f).collect::<Vec<_>>())
    }
}

/// One line of progress on stderr.
pub fn progress_line(via: Path, run: &Run) -> String {
    let mut s = match &run.report {
        Some(r) => format!(
            "{:>6}: {:>9.1} ops/s  p50 {:>7.3} ms  p99 {:>8.3} ms  {} errors",
            via.name(),
            r.ops_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.error_count()
        ),
        None => format!(
            "{:>6}: FAILED: {}",
            via.name(),
            run.failure.as_deref().unwrap_or("?")
        ),
    };
    if via == Path::Proxy {
        if let Some(c) = run.proxy_ms_per_1k() {
            let _ = write!(s, "  proxy {c:.1} CPU-ms/1k");
        }
        if let Some(r) = run.proxy_peak_rss_mib {
            let _ = write!(s, "  RSS {r:.0} MiB");
        }
    }
    for n in &run.notes {
        let _ = write!(s, "\n         note: {n}");
    }
    s
}

pub const HEADERS: [&str; 15] = [
    "workload",
    "direct to",
    "proxy to",
    "direct ops/s",
    "proxy ops/s",
    "throughput proxy/direct",
    "direct p50 ms",
    "proxy p50 ms",
    "added p50 ms",
    "direct p99 ms",
    "proxy p99 ms",
    "added p99 ms",
    "proxy CPU-ms / 1k req",
    "proxy peak RSS MiB",
    "errors direct / proxy",
];

/// The main table and its footnotes (errors, failed runs, notes), numbered from 1.
pub fn main_table(rows: &[Row]) -> (String, Vec<String>) {
    let mut footnotes = Vec::new();
    let mut cells = Vec::new();
    for row in rows {
        let mut details = Vec::new();
        for (via, runs) in [(Path::Direct, &row.direct), (Path::Proxy, &row.proxy)] {
            for run in runs {
                let at = format!("{} round {}", via.name(), run.round);
                if let Some(r) = &run.report
                    && !r.errors.is_empty()
                {
                    let codes: Vec<String> =
                        r.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
                    details.push(format!("{at}: {}", codes.join(", ")));
                }
                if let Some(f) = &run.failure {
                    details.push(format!("{at}: no results: {f}"));
                }
                for n in &run.notes {
                    details.push(format!("{at}: {n}"));
                }
            }
        }
        let count = |runs: &[Run]| runs.iter().map(Run::errors).sum::<u64>();
        let mut errors = format!("{} / {}", count(&row.direct), count(&row.proxy));
        if !details.is_empty() {
            footnotes.push(format!("{}: {}", row.workload.name, details.join("; ")));
            let _ = write!(errors, " [{}]", footnotes.len());
        }
        let (d, p) = (row.direct_side(), row.proxy_side());
        let (added50, added99) = row.added_ms();
        cells.push(vec![
            row.workload.name.clone(),
            row.workload.direct.name().to_owned(),
            row.workload.routed_to.to_owned(),
            num(d.ops_per_sec, 0),
            num(p.ops_per_sec, 0),
            num(row.throughput_ratio(), 2),
            num(d.p50_ms, 3),
            num(p.p50_ms, 3),
            signed(added50),
            num(d.p99_ms, 2),
            num(p.p99_ms, 2),
            signed(added99),
            num(row.proxy_median(Run::proxy_ms_per_1k), 1),
            num(row.proxy_median(|r| r.proxy_peak_rss_mib), 1),
            errors,
        ]);
    }
    (render_table(&HEADERS, &cells), footnotes)
}

/// A difference with its sign, three decimals.
fn signed(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x:+.3}"),
        _ => "–".into(),
    }
}

/// Every run, for the appendix.
pub fn runs_table(rows: &[Row]) -> String {
    let mut cells = Vec::new();
    for row in rows {
        for (via, runs) in [(Path::Direct, &row.direct), (Path::Proxy, &row.proxy)] {
            for run in runs {
                let r = run.ok_report();
                cells.push(vec![
                    row.workload.name.clone(),
                    via.name().to_owned(),
                    run.round.to_string(),
                    run.report
                        .as_ref()
                        .map_or("–".into(), |r| r.ops.to_string()),
                    num(r.map(|r| r.seconds), 2),
                    num(r.map(|r| r.ops_per_sec), 0),
                    num(r.map(|r| r.p50_ms), 3),
                    num(r.map(|r| r.p99_ms), 2),
                    num(run.proxy_cpu_s, 2),
                    num(run.learner_cpu_s, 2),
                    num(run.voters_cpu_s, 2),
                    num(run.proxy_peak_rss_mib, 1),
                ]);
            }
        }
    }
    render_table(
        &[
            "workload",
            "path",
            "round",
            "ops",
            "s",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "proxy CPU s",
            "learner CPU s",
            "voters CPU s",
            "proxy peak RSS MiB",
        ],
        &cells,
    )
}

/// Facts for the report's header besides [`Meta`].
#[derive(Debug, Clone)]
pub struct Facts {
    pub meta: Meta,
    pub proxy_version: String,
    /// One line per server log with warnings or errors.
    pub log_notes: Vec<String>,
}

/// The whole markdown file.
pub fn render_markdown(f: &Facts, rows: &[Row]) -> String {
    let m = &f.meta;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# mango-proxy as a sidecar: direct vs through the proxy, {}\n",
        m.date
    );
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
        "- Rounds: {} (median reported), scale {}{}",
        m.rounds,
        m.scale,
        if m.smoke {
            " (smoke: tiny sizes, not a measurement)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "- mango: {}; proxy: {}",
        m.mango_version, f.proxy_version
    );
    let _ = writeln!(
        s,
        "- Per round: a fresh 3-voter mango cluster serving its log stream, 1 learner \
         following a follower's stream, and `mango-proxy --voters <the 3 voters> --learners \
         <the learner>` on loopback, next to the load generator (a sidecar). One key, \
         preloaded through the voters, for the reads. Each workload then runs directly and \
         through the proxy, in alternating order (direct first in odd rounds, proxy first \
         in even ones), on the same deployment."
    );
    let _ = writeln!(
        s,
        "- **The 3 voters, the learner, the proxy and the load generator all share the same \
         {} cores**: the proxy's own CPU comes out of the servers' share, so its throughput \
         cost here is an upper bound of what a sidecar on a separate client machine costs.",
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
    s.push_str(
        "ops/s, p50 and p99: loadgen's (closed loop, successful requests only), medians over \
         the rounds. Added latency: median proxy p50 minus median direct p50 (p99 likewise); \
         throughput proxy/direct: the ratio of the medians. Direct puts go to all 3 voters \
         round-robin, so two in three are forwarded by a follower to the leader; through the \
         proxy every put goes to the leader, which the proxy finds from the voters' Status. \
         Linearizable reads: direct to the 3 voters, through the proxy to the leader only. \
         Stale reads (`mango-consistency: stale`): direct to the learner, through the proxy \
         routed to the learner. Proxy CPU: utime+stime from `/proc/<pid>/stat` (10 ms ticks) \
         over the run, per 1,000 successful requests; peak RSS: VmHWM from \
         `/proc/<pid>/status`, reset (`clear_refs` 5) before each proxied run. Every run \
         uses loadgen's `--conns 3` (3 HTTP/2 connections; direct to the voters, one per \
         voter).\n\n",
    );
    for (i, note) in footnotes.iter().enumerate() {
        let _ = writeln!(s, "{}. [{}] {note}", i + 1, i + 1);
    }
    if !footnotes.is_empty() {
        s.push('\n');
    }
    let _ = writeln!(s, "## Commands\n");
    for row in rows {
        let _ = writeln!(
            s,
            "- {}: `mango-loadgen --endpoints <{} | the proxy> --json {}`",
            row.workload.name,
            row.workload.direct.name(),
            row.workload.args.join(" ")
        );
    }
    let _ = writeln!(
        s,
        "- proxy: `mango-proxy --listen-client-urls http://127.0.0.1:<port> --voters \
         <3 voter client URLs> --learners <learner client URL>` (defaults otherwise); learner: \
         `mango-learner --name l1 --data-dir <dir> --listen-client-urls \
         http://127.0.0.1:<port> --upstream <follower stream>,<other follower stream>`; \
         voters as in the main benchmark plus `--listen-logstream-addr 127.0.0.1:<udp port>`"
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

    fn run(round: u32, ops_per_sec: f64, p50: f64, p99: f64) -> Run {
        Run {
            round,
            report: Some(Report {
                ops: 1000,
                seconds: 1000.0 / ops_per_sec,
                ops_per_sec,
                p50_ms: p50,
                p99_ms: p99,
                errors: BTreeMap::new(),
            }),
            proxy_cpu_s: Some(0.05),
            proxy_peak_rss_mib: Some(20.0),
            ..Default::default()
        }
    }

    fn row() -> Row {
        Row::new(crate::proxy::all(1.0, true).remove(0))
    }

    #[test]
    fn added_latency_and_ratio_come_from_medians() {
        let mut r = row();
        r.direct = vec![run(1, 1000.0, 1.0, 3.0), run(2, 2000.0, 2.0, 5.0)];
        r.proxy = vec![run(1, 900.0, 1.25, 4.0), run(2, 1500.0, 2.25, 6.0)];
        let (a50, a99) = r.added_ms();
        assert!((a50.unwrap() - 0.25).abs() < 1e-9);
        assert!((a99.unwrap() - 1.0).abs() < 1e-9);
        assert!((r.throughput_ratio().unwrap() - 1200.0 / 1500.0).abs() < 1e-9);
        assert_eq!(r.proxy[0].proxy_ms_per_1k(), Some(50.0));
        assert!(r.all_ok());
    }

    #[test]
    fn table_has_differences_and_footnotes() {
        let mut r = row();
        r.direct = vec![run(1, 1000.0, 1.0, 3.0)];
        let mut bad = run(1, 800.0, 1.5, 4.0);
        bad.report
            .as_mut()
            .unwrap()
            .errors
            .insert("Unavailable".into(), 2);
        r.proxy = vec![bad];
        assert!(!r.all_ok());
        let (table, notes) = main_table(&[r]);
        let line = table.lines().nth(2).unwrap();
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cells[1], "put, 1 client");
        assert_eq!(cells[2], "3 voters");
        assert_eq!(cells[3], "leader");
        assert_eq!(cells[6], "0.80");
        assert_eq!(cells[9], "+0.500");
        assert_eq!(cells[12], "+1.000");
        assert_eq!(cells[13], "50.0");
        assert_eq!(cells[15], "0 / 2 [1]");
        assert_eq!(notes, ["put, 1 client: proxy round 1: Unavailable 2"]);
        assert_eq!(signed(Some(-0.1234)), "-0.123");
        assert_eq!(signed(None), "–");
    }
}
