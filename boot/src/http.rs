//! The HTTP endpoint every binary serves on `--listen-metrics-urls` (etcd's flag): `/metrics`
//! (Prometheus text: the binary's own metrics, then the gRPC server's), `/health` (etcd's
//! JSON, 503 when unhealthy), `/livez`, `/readyz` and `/version` (etcd's JSON).
//!
//! A deliberately tiny HTTP/1.1 responder: one `GET` per connection, the request head
//! bounded to 16 KiB, the whole exchange to 5 s, connections to 64 at once; bodies are
//! never read. Plaintext only: off loopback it runs only behind a flag naming the risk.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::listen::{ListenError, ListenUrl};
use crate::prom::Text;

/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;
/// Longest a connection may take, request and answer.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 64;

/// The metrics endpoint's flags.
#[derive(Clone, Debug, Default, clap::Args, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MetricsFlags {
    /// URLs to serve `/metrics`, `/health`, `/livez`, `/readyz` and `/version` on
    /// (comma-separated `http://host:port`; etcd's flag). Empty: not served.
    #[arg(
        long = "listen-metrics-urls",
        alias = "listen-metrics-addr",
        default_value = ""
    )]
    pub listen_metrics_urls: String,
    /// Serve the metrics URLs off loopback in plaintext: anyone who reaches them can read
    /// the metrics (key counts, sizes, peers' addresses) and nothing authenticates them.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub insecure_plaintext_metrics: bool,
}

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// A URL is not a listen URL, or binding failed.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// `https://` asked for: not served yet.
    #[error(
        "--listen-metrics-urls {0}: https:// is not supported for the metrics endpoint; \
         use http:// on loopback"
    )]
    Https(String),
    /// Off loopback without the flag.
    #[error(
        "--listen-metrics-urls {0} is not on loopback and is plaintext; pass \
         --insecure-plaintext-metrics to accept that anyone who reaches it can read it"
    )]
    Plaintext(String),
}

/// What a binary reports on its endpoint.
pub trait Observed: Send + Sync + 'static {
    /// Writes the binary's metrics.
    fn metrics(&self, out: &mut Text);
    /// `None` when healthy; else why not (etcd's `/health`: no leader, an alarm).
    fn unhealthy(&self) -> Option<String>;
    /// `None` when ready to serve requests (`/readyz`); by default, when healthy.
    fn not_ready(&self) -> Option<String> {
        self.unhealthy()
    }
}

/// The etcd release mango speaks, for binaries that hold no copy of the API's own constant.
pub const ETCD_SERVER_VERSION: &str = "3.4.23";
/// etcd 3.4's cluster version.
pub const ETCD_CLUSTER_VERSION: &str = "3.4.0";

/// Static facts the endpoint answers with.
#[derive(Clone, Debug)]
pub struct EndpointInfo {
    /// etcd's server version mango speaks (`/version`'s `etcdserver`).
    pub server_version: &'static str,
    /// The cluster version (`etcdcluster`).
    pub cluster_version: &'static str,
}

impl Default for EndpointInfo {
    fn default() -> Self {
        Self {
            server_version: ETCD_SERVER_VERSION,
            cluster_version: ETCD_CLUSTER_VERSION,
        }
    }
}

impl MetricsFlags {
    /// The URLs, checked: `http://` only, off loopback only with the flag.
    pub fn urls(&self) -> Result<Vec<ListenUrl>, EndpointError> {
        let urls = ListenUrl::parse_list(&self.listen_metrics_urls)?;
        for url in &urls {
            if url.tls {
                return Err(EndpointError::Https(url.url.clone()));
            }
            if !url.is_loopback() {
                if !self.insecure_plaintext_metrics {
                    return Err(EndpointError::Plaintext(url.url.clone()));
                }
                tracing::warn!(
                    url = %url.url,
                    "--insecure-plaintext-metrics: the metrics endpoint is plaintext off loopback"
                );
            }
        }
        Ok(urls)
    }

    /// Binds every URL and serves each until the process ends. Returns the bound addresses.
    pub async fn serve(
        &self,
        observed: Arc<dyn Observed>,
        info: EndpointInfo,
        fatal: crate::Fatal,
    ) -> Result<Vec<std::net::SocketAddr>, EndpointError> {
        let mut bound = Vec::new();
        let mut listeners = Vec::new();
        for url in self.urls()? {
            let listener = url.bind().await?;
            if let Ok(addr) = listener.local_addr() {
                bound.push(addr);
            }
            listeners.push(listener);
        }
        let state = Arc::new(State {
            observed,
            info,
            fatal,
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        });
        for listener in listeners {
            tokio::spawn(serve(listener, state.clone()));
        }
        Ok(bound)
    }
}

struct State {
    observed: Arc<dyn Observed>,
    info: EndpointInfo,
    fatal: crate::Fatal,
    permits: Arc<Semaphore>,
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok(permit) = state.permits.clone().acquire_owned().await else {
            return;
        };
        let Ok((conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, answer(conn, state)).await;
            drop(permit);
        });
    }
}

/// An answer: status line, content type, body.
struct Reply {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn json(ok: bool, body: String) -> Self {
        Self {
            status: if ok {
                "200 OK"
            } else {
                "503 Service Unavailable"
            },
            content_type: "application/json",
            body,
        }
    }

    fn text(ok: bool, body: String) -> Self {
        Self {
            content_type: "text/plain; charset=utf-8",
            ..Self::json(ok, body)
        }
    }
}

fn route(method: &str, path: &str, state: &State) -> Reply {
    let path = path.split('?').next().unwrap_or(path);
    if method != "GET" && method != "HEAD" {
        return Reply {
            status: "405 Method Not Allowed",
            content_type: "text/plain; charset=utf-8",
            body: "method not allowed\n".into(),
        };
    }
    let tripped = state.fatal.is_tripped().then(|| "fatal error".to_string());
    match path {
        "/metrics" => {
            let mut text = Text::new();
            state.observed.metrics(&mut text);
            crate::grpc_metrics::render(&mut text);
            Reply {
                status: "200 OK",
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: text.finish(),
            }
        }
        "/health" => match tripped.or_else(|| state.observed.unhealthy()) {
            None => Reply::json(true, r#"{"health":"true"}"#.into()),
            Some(reason) => Reply::json(
                false,
                format!(
                    r#"{{"health":"false","reason":"{}"}}"#,
                    json_escape(&reason)
                ),
            ),
        },
        "/livez" => match tripped {
            None => Reply::text(true, "ok\n".into()),
            Some(reason) => Reply::text(false, format!("not live: {reason}\n")),
        },
        "/readyz" => match tripped.or_else(|| state.observed.not_ready()) {
            None => Reply::text(true, "ok\n".into()),
            Some(reason) => Reply::text(false, format!("not ready: {reason}\n")),
        },
        "/version" => Reply::json(
            true,
            format!(
                r#"{{"etcdserver":"{}","etcdcluster":"{}"}}"#,
                state.info.server_version, state.info.cluster_version
            ),
        ),
        _ => Reply {
            status: "404 Not Found",
            content_type: "text/plain; charset=utf-8",
            body: "404 page not found\n".into(),
        },
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

async fn answer(mut conn: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_HEAD {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let first = buf
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let line = String::from_utf8_lossy(first);
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    // Rendering may wait on storage (a store's size needs its writer's lock): off the
    // runtime's threads.
    let head_only = method == "HEAD";
    let reply = tokio::task::spawn_blocking(move || route(&method, &path, &state))
        .await
        .map_err(std::io::Error::other)?;
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    if !head_only {
        conn.write_all(reply.body.as_bytes()).await?;
    }
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Option<String>);
    impl Observed for Fixed {
        fn metrics(&self, out: &mut Text) {
            out.gauge("x", "X.", 1.0);
        }
        fn unhealthy(&self) -> Option<String> {
            self.0.clone()
        }
    }

    async fn get(addr: std::net::SocketAddr, raw: &[u8]) -> std::io::Result<String> {
        let mut c = TcpStream::connect(addr).await?;
        c.write_all(raw).await?;
        c.shutdown().await?;
        let mut out = String::new();
        c.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn endpoints_answer_like_etcd() -> Result<(), Box<dyn std::error::Error>> {
        let info = EndpointInfo {
            server_version: "3.4.23",
            cluster_version: "3.4.0",
        };
        let flags = MetricsFlags {
            listen_metrics_urls: "http://127.0.0.1:0".into(),
            ..Default::default()
        };
        let fatal = crate::Fatal::with_exit(|_| {});
        let ok = flags.serve(Arc::new(Fixed(None)), info.clone(), fatal.clone());
        let addr = ok.await?[0];
        let sick = flags.serve(Arc::new(Fixed(Some("no \"leader\"".into()))), info, fatal);
        let sick = sick.await?[0];
        let r = get(addr, b"GET /health HTTP/1.1\r\n\r\n").await?;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with(r#"{"health":"true"}"#),
            "{r}"
        );
        let r = get(sick, b"GET /health HTTP/1.1\r\n\r\n").await?;
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(
            r.ends_with(r#"{"health":"false","reason":"no \"leader\""}"#),
            "{r}"
        );
        let r = get(sick, b"GET /readyz HTTP/1.1\r\n\r\n").await?;
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        let r = get(sick, b"GET /livez HTTP/1.1\r\n\r\n").await?;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        let r = get(addr, b"GET /version HTTP/1.1\r\n\r\n").await?;
        assert!(
            r.ends_with(r#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#),
            "{r}"
        );
        let r = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await?;
        assert!(
            r.contains("\r\n\r\n# HELP x X.\n# TYPE x gauge\nx 1\n"),
            "{r}"
        );
        let r = get(addr, b"GET /nope HTTP/1.1\r\n\r\n").await?;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        // Garbage and an oversized head are answered, not fatal.
        let r = get(addr, &[0xff; MAX_HEAD]).await?;
        assert!(r.starts_with("HTTP/1.1 405"), "{r}");
        Ok(())
    }

    #[test]
    fn off_loopback_plaintext_needs_the_flag() {
        let mut flags = MetricsFlags {
            listen_metrics_urls: "http://10.0.0.1:1".into(),
            ..Default::default()
        };
        assert!(matches!(flags.urls(), Err(EndpointError::Plaintext(_))));
        flags.insecure_plaintext_metrics = true;
        assert!(flags.urls().is_ok());
        flags.listen_metrics_urls = "https://127.0.0.1:1".into();
        assert!(matches!(flags.urls(), Err(EndpointError::Https(_))));
        flags.listen_metrics_urls = "127.0.0.1:9".into();
        assert!(flags.urls().is_ok(), "the proxy's old ip:port form");
    }
}
