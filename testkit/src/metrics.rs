//! A metrics endpoint (`/metrics` as numbers; `/health` and friends as status and body).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

/// The whole `/metrics` page at `addr` (`ip:port`).
pub fn scrape(addr: &str) -> String {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("metrics at {addr}: {e}"));
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap_or_else(|e| panic!("metrics at {addr}: {e}"));
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("metrics at {addr}: {e}"));
    text
}

/// The value of series `name` (labels included, e.g. `x_total{route="reads"}`) in a page.
pub fn value_in(page: &str, name: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The value of series `name` at `addr`; panics if the page has no such series.
pub fn metric(addr: &str, name: &str) -> u64 {
    let page = scrape(addr);
    value_in(&page, name).unwrap_or_else(|| panic!("no {name} at {addr}:\n{page}"))
}

/// `GET path` at `addr` (`ip:port`): the status code and the body.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The samples of a page: `(name{labels}, value)`, comments skipped; fractions and
/// `+Inf` kept.
pub fn samples(page: &str) -> Vec<(String, f64)> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            Some((series.to_string(), value))
        })
        .collect()
}

/// The value of series `series` (name and labels as written) on `page`, as a float.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    samples(page)
        .into_iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| v)
}

/// The metric families a page declares (its `# TYPE` lines).
pub fn families(page: &str) -> std::collections::BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_series_by_its_whole_name() {
        let page = "HTTP/1.1 200 OK\r\n\r\n# TYPE a counter\na 3\na_total 4\nb{x=\"1\"} 5\n";
        assert_eq!(value_in(page, "a"), Some(3));
        assert_eq!(value_in(page, "a_total"), Some(4));
        assert_eq!(value_in(page, "b{x=\"1\"}"), Some(5));
        assert_eq!(value_in(page, "c"), None);
    }
}
