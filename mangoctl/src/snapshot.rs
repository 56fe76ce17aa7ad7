//! `mangoctl snapshot status` and `mangoctl snapshot restore`, with etcdctl's flags and
//! output. Both take etcd 3.4's snapshot file, whether saved from mango or from etcd; the
//! restore itself is `mango_voter::restore` (the voter owns its data folder's layout).

use std::path::Path;

use anyhow::Context as _;
use mango_store::mango_bbolt::etcd::{SnapshotStatus, status};
use mango_store::mango_bbolt::sha::{HashCheck, check_sha256};
use mango_voter::restore::{RestoreOptions, restore};

/// etcdctl's output formats for `snapshot status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `hash, revision, total keys, total size`.
    Simple,
    /// `{"hash":..,"revision":..,"totalKey":..,"totalSize":..}`.
    Json,
    /// A table, as etcdctl draws it.
    Table,
}

/// The status of the snapshot at `path`, checked as etcd checks it (bbolt's consistency
/// check) and, when the file carries one, against its trailing SHA-256.
pub fn file_status(path: &Path) -> anyhow::Result<SnapshotStatus> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if check_sha256(&bytes).1 == HashCheck::Mismatch {
        anyhow::bail!(
            "{}: the trailing sha256 does not match the file (damaged or truncated)",
            path.display()
        );
    }
    let db = mango_store::mango_bbolt::Db::from_bytes(bytes)
        .with_context(|| format!("{}: invalid database", path.display()))?;
    status(&db).with_context(|| format!("{}: invalid database", path.display()))
}

/// `mangoctl snapshot status FILE -w FORMAT`.
pub fn print_status(path: &Path, format: Format) -> anyhow::Result<()> {
    let s = file_status(path)?;
    print!("{}", render_status(&s, format));
    Ok(())
}

/// What etcdctl 3.4 prints for `s`.
pub fn render_status(s: &SnapshotStatus, format: Format) -> String {
    match format {
        Format::Simple => format!(
            "{:x}, {}, {}, {}\n",
            s.hash,
            s.revision,
            s.total_key,
            humanize_bytes(s.total_size)
        ),
        Format::Json => format!(
            "{}\n",
            serde_json::json!({
                "hash": s.hash,
                "revision": s.revision,
                "totalKey": s.total_key,
                "totalSize": s.total_size,
            })
        ),
        Format::Table => table(
            &["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
            &[
                format!("{:x}", s.hash),
                s.revision.to_string(),
                s.total_key.to_string(),
                humanize_bytes(s.total_size),
            ],
        ),
    }
}

/// One row under a header, as etcdctl's tablewriter draws it: headers centred, cells
/// right-aligned, one space of padding.
fn table(headers: &[&str], row: &[String]) -> String {
    let widths: Vec<usize> = headers
        .iter()
        .zip(row)
        .map(|(h, c)| h.len().max(c.len()))
        .collect();
    let line: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = line.clone();
    for (h, w) in headers.iter().zip(&widths) {
        let gap = w - h.len();
        let left = gap / 2;
        out += &format!("| {}{}{} ", " ".repeat(left), h, " ".repeat(gap - left));
    }
    out += "|\n";
    out += &line;
    for (c, w) in row.iter().zip(&widths) {
        out += &format!("| {c:>w$} ");
    }
    out += "|\n";
    out += &line;
    out
}

/// go-humanize's `Bytes`: SI units, one decimal below 10.
fn humanize_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let value = (n as f64 / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    let unit = UNITS.get(e).copied().unwrap_or("EB");
    if value < 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

/// `mangoctl snapshot restore FILE ...`.
pub fn run_restore(opts: &RestoreOptions) -> anyhow::Result<()> {
    let restored = restore(opts)?;
    println!(
        "restored {} into {}: member {:x} of cluster {:x}, revision {}, compacted at {}, \
         {} revisions, {} leases; start it with --initial-cluster-state new",
        opts.snapshot.display(),
        opts.data_dir.display(),
        restored.member_id,
        restored.cluster_id,
        restored.revision,
        restored.compact_revision,
        restored.revisions,
        restored.leases,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_go_humanize() {
        assert_eq!(humanize_bytes(0), "0 B");
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(2_097_152), "2.1 MB");
        assert_eq!(humanize_bytes(999), "999 B");
    }

    #[test]
    fn table_matches_etcdctl() {
        let s = SnapshotStatus {
            hash: 0xce73_23dc,
            revision: 4,
            total_key: 7,
            total_size: 20480,
        };
        let expected = "\
+----------+----------+------------+------------+
|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |
+----------+----------+------------+------------+
| ce7323dc |        4 |          7 |      20 kB |
+----------+----------+------------+------------+
";
        assert_eq!(render_status(&s, Format::Table), expected);
        assert_eq!(render_status(&s, Format::Simple), "ce7323dc, 4, 7, 20 kB\n");
        assert_eq!(
            render_status(&s, Format::Json),
            "{\"hash\":3463652316,\"revision\":4,\"totalKey\":7,\"totalSize\":20480}\n"
        );
    }
}
