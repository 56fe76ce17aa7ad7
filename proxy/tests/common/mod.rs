//! The shared real-process harness (`mango-testkit`), under the name the tests use, and the
//! proxy's metrics endpoint read as numbers.
#![allow(unused_imports, dead_code)]

pub use mango_testkit::*;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

/// The value of metric `name` on the proxy's metrics endpoint at `port`.
pub fn metric_value(port: u16, name: &str) -> u64 {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits (up to `timeout`) until metric `name` is at least `want`.
pub async fn wait_metric_at_least(port: u16, name: &str, want: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while metric_value(port, name) < want {
        assert!(
            Instant::now() < deadline,
            "{name} = {}, want at least {want}",
            metric_value(port, name)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `signal` (`STOP`, `CONT`) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// The log-stream addresses of the voters, for learners to follow.
pub fn voter_stream_addrs(d: &Deployment) -> String {
    d.voters
        .iter()
        .map(|v| v.stream_addr())
        .collect::<Vec<_>>()
        .join(",")
}
