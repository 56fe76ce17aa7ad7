//! What the benchmark reads from `/proc` and the file system: a process's CPU time and peak
//! RSS, the machine's CPU model, and the size of a data directory.

use std::io;
use std::path::Path;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`): part of Linux's user ABI
/// and 100 on every architecture we run on, so no `sysconf` (and no unsafe) is needed.
const USER_HZ: f64 = 100.0;

/// `utime + stime` in seconds out of a `/proc/<pid>/stat` line (fields 14 and 15; for a
/// process they cover all its threads). The command name (field 2) is in parentheses and may
/// hold spaces and parentheses, so fields are counted from after the last `)`.
pub fn parse_stat_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); utime is field 14, i.e. index 11 here.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// The value in kB of the `field:` line of a `/proc/<pid>/status` or `/proc/meminfo` text,
/// e.g. `VmHWM:\t  123456 kB`.
pub fn parse_kb_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let mut parts = rest.split_ascii_whitespace();
        let n = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(n),
            Some(_) => None,
        }
    })
}

/// The first `model name` of a `/proc/cpuinfo` text.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// User + system CPU seconds used so far by process `pid`.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu_seconds(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: no utime/stime in {stat:?}"),
        )
    })
}

/// Peak resident set size (`VmHWM`) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_kb_field(&status, "VmHWM").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/status has no VmHWM line"),
        )
    })
}

/// Resets the peak RSS (`VmHWM`) of process `pid` to its current RSS (`echo 5 >
/// /proc/<pid>/clear_refs`, Linux 4.0+), so the next [`peak_rss_kib`] covers only what
/// happened since.
pub fn reset_peak_rss(pid: u32) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// The machine's CPU model, or "unknown CPU".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| parse_cpu_model(&s))
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Total memory in MiB, if `/proc/meminfo` says.
pub fn mem_total_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(parse_kb_field(&text, "MemTotal")? / 1024)
}

/// The 1, 5 and 15-minute load averages, as `/proc/loadavg` writes them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| {
            s.split_ascii_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Sum of the (apparent) sizes of the regular files under `path`, like `du -sb` without
/// following symlinks. A missing path is 0 bytes; a file that vanishes during the walk is
/// skipped (servers delete files while they run).
pub fn dir_size(path: &Path) -> io::Result<u64> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    if meta.is_file() {
        return Ok(meta.len());
    }
    if !meta.is_dir() {
        return Ok(0);
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        total += dir_size(&entry.path())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_counts_fields_after_the_last_parenthesis() {
        let line = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 \
                    3 0 5000 1000000 200 18446744073709551615";
        assert_eq!(parse_stat_cpu_seconds(line), Some(3.25));
        assert_eq!(parse_stat_cpu_seconds("garbage"), None);
        assert_eq!(parse_stat_cpu_seconds("1 (x) S 1 2"), None);
        assert_eq!(
            parse_stat_cpu_seconds("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 1 0"),
            None
        );
    }

    #[test]
    fn status_fields_in_kb() {
        let status = "Name:\tetcd\nVmPeak:\t  900000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n\
                      Threads:\t12\n";
        assert_eq!(parse_kb_field(status, "VmHWM"), Some(51234));
        assert_eq!(parse_kb_field(status, "VmRSS"), Some(40000));
        assert_eq!(parse_kb_field(status, "Threads"), Some(12));
        assert_eq!(
            parse_kb_field(status, "VmHW"),
            None,
            "whole field names only"
        );
        assert_eq!(parse_kb_field(status, "VmSwap"), None);
        assert_eq!(parse_kb_field("VmHWM:\t12 MB\n", "VmHWM"), None);
        let meminfo = "MemTotal:       24684232 kB\nMemFree:        17975588 kB\n";
        assert_eq!(parse_kb_field(meminfo, "MemTotal"), Some(24684232));
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\n\
                    model name\t: AMD EPYC 7B13\nflags\t: fpu\n\nprocessor\t: 1\n\
                    model name\t: other\n";
        assert_eq!(parse_cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_model("processor: 0\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(peak_rss_kib(pid).unwrap() > 0);
    }

    #[test]
    fn peak_rss_can_be_reset() {
        let pid = std::process::id();
        let big = vec![1u8; 64 << 20];
        let peak = peak_rss_kib(pid).unwrap();
        assert!(peak >= 64 << 10, "{peak} KiB");
        drop(big);
        reset_peak_rss(pid).unwrap();
        assert!(peak_rss_kib(pid).unwrap() < peak);
    }

    #[test]
    fn dir_size_sums_files_recursively() {
        let dir = std::env::temp_dir().join(format!("mango-bench-du-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("x"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.join("a/y"), vec![0u8; 24]).unwrap();
        std::fs::write(dir.join("a/b/z"), vec![0u8; 1]).unwrap();
        assert_eq!(dir_size(&dir).unwrap(), 1025);
        assert_eq!(dir_size(&dir.join("missing")).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
