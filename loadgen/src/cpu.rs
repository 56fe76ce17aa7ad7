//! This process's CPU time (user + system, all threads), read from `/proc/self/stat`.

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`): part of Linux's user ABI and
/// 100 on every architecture we run on, so no `sysconf` (and no unsafe) is needed.
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds used so far by this process; `None` where `/proc` is missing.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&stat)
}

/// Parses `utime` + `stime` (fields 14 and 15) out of a `/proc/<pid>/stat` line. The command
/// name (field 2) is in parentheses and may hold spaces and parentheses, so fields are counted
/// from after the last `)`.
fn parse_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); utime is field 14, i.e. index 11 here.
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_even_with_odd_command_names() {
        let line = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 \
                    3 0 5000 1000000 200 18446744073709551615";
        assert_eq!(parse_stat(line), Some(3.25));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn reads_this_process() {
        let before = process_cpu_seconds().expect("/proc/self/stat is readable on Linux");
        // Burn a little CPU so the counter can only go up.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = process_cpu_seconds().expect("readable");
        assert!(after >= before && before >= 0.0);
    }
}
