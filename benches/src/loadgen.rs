//! Running `mango-loadgen` and reading its `--json` line.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use mango_testkit::proc::Proc;

/// The fields of loadgen's JSON line the benchmark uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Failed requests by gRPC code name.
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Parses the JSON line of `mango-loadgen --json` (the last non-empty line of `stdout`).
pub fn parse_report(stdout: &str) -> Result<Report, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or("no output")?;
    let v: Value =
        serde_json::from_str(line).map_err(|e| format!("not a JSON line ({e}): {line:?}"))?;
    let num = |field: &str| {
        v.get(field)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("field {field:?} missing or not a number in {line:?}"))
    };
    let ops = v
        .get("ops")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("field \"ops\" missing in {line:?}"))?;
    let mut errors = BTreeMap::new();
    match v.get("errors") {
        Some(Value::Object(map)) => {
            for (code, n) in map {
                let n = n
                    .as_u64()
                    .ok_or_else(|| format!("error count of {code} is not a number: {line:?}"))?;
                if n > 0 {
                    errors.insert(code.clone(), n);
                }
            }
        }
        _ => return Err(format!("field \"errors\" missing in {line:?}")),
    }
    Ok(Report {
        ops,
        seconds: num("seconds")?,
        ops_per_sec: num("ops_per_sec")?,
        p50_ms: num("p50_ms")?,
        p99_ms: num("p99_ms")?,
        errors,
    })
}

/// The load generator binary.
#[derive(Debug, Clone)]
pub struct Loadgen {
    pub bin: PathBuf,
}

impl Loadgen {
    /// Runs loadgen with `args` (global flags and a workload) against `endpoints`; output
    /// goes to `<out_base>.json` and `<out_base>.stderr`. Killed after `timeout`.
    pub fn run(
        &self,
        endpoints: &str,
        args: &[String],
        out_base: &Path,
        timeout: Duration,
    ) -> Result<Report, String> {
        let stdout_path = out_base.with_extension("json");
        let stderr_path = out_base.with_extension("stderr");
        let stdout = File::create(&stdout_path)
            .map_err(|e| format!("creating {}: {e}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path)
            .map_err(|e| format!("creating {}: {e}", stderr_path.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--endpoints", endpoints, "--json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let mut proc = Proc::spawn("mango-loadgen", &mut cmd, stderr_path.clone())?;
        let status = proc.wait_timeout(timeout);
        let err_text = || {
            let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let text = text.trim();
            if text.is_empty() {
                String::new()
            } else {
                format!(": {}", text.lines().last().unwrap_or(text))
            }
        };
        let Some(status) = status else {
            proc.kill();
            return Err(format!(
                "{} did not finish within {} s (killed){}",
                proc.name(),
                timeout.as_secs(),
                err_text()
            ));
        };
        if !status.success() {
            return Err(format!("mango-loadgen {status}{}", err_text()));
        }
        let out = std::fs::read_to_string(&stdout_path)
            .map_err(|e| format!("reading {}: {e}", stdout_path.display()))?;
        parse_report(&out).map_err(|e| format!("mango-loadgen output: {e}"))
    }

    /// One linearizable read at `endpoint` (output in `<out_base>.json`/`.stderr`): Ok when
    /// it succeeded.
    pub fn probe(&self, endpoint: &str, out_base: &Path) -> Result<(), String> {
        let args: Vec<String> = [
            "--total",
            "1",
            "--request-timeout",
            "2",
            "range",
            "mango-bench-health",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let report = self.run(endpoint, &args, out_base, Duration::from_secs(10))?;
        if report.ops == 1 {
            Ok(())
        } else {
            Err(format!("probe read failed: {:?}", report.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loadgen_json() {
        let line = r#"{"workload":"put","ops":1000,"seconds":2.5,"ops_per_sec":400.0,"p50_ms":1.5,"p90_ms":2.0,"p99_ms":3.25,"p999_ms":4.0,"max_ms":5.0,"errors":{"Unavailable":3,"Internal":0},"client_cpu_seconds":1.23}"#;
        let r = parse_report(&format!("\n{line}\n\n")).unwrap();
        assert_eq!(r.ops, 1000);
        assert_eq!(r.ops_per_sec, 400.0);
        assert_eq!(r.p99_ms, 3.25);
        assert_eq!(r.errors.len(), 1, "zero counts are dropped");
        assert_eq!(r.error_count(), 3);
        let ok = r#"{"ops":1,"seconds":0.1,"ops_per_sec":10.0,"p50_ms":1,"p99_ms":1,"errors":{}}"#;
        assert_eq!(parse_report(ok).unwrap().error_count(), 0);
    }

    #[test]
    fn bad_output_is_an_error_not_a_zero() {
        assert!(parse_report("").is_err());
        assert!(parse_report("Workload: put").is_err());
        assert!(parse_report(r#"{"ops":1}"#).is_err());
        assert!(
            parse_report(r#"{"ops":1,"seconds":1,"ops_per_sec":1,"p50_ms":1,"p99_ms":1}"#).is_err()
        );
    }
}
