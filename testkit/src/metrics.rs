//! A Prometheus text endpoint (the proxy's `/metrics`) read as numbers.

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
