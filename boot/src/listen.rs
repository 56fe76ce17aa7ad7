//! Listen URLs (etcd's `--listen-client-urls` and friends): `http://host:port` and
//! `https://host:port`, with IP addresses or host names, bound to sockets.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

/// One URL to listen on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenUrl {
    /// The URL as given.
    pub url: String,
    /// Serve TLS on it (`https://`).
    pub tls: bool,
    /// The host part (an IP address or a name).
    pub host: String,
    /// The port.
    pub port: u16,
}

/// Why a URL cannot be listened on.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Not `http://host:port` or `https://host:port`.
    #[error("cannot listen on {0:?}: expected http://host:port or https://host:port")]
    BadUrl(String),
    /// The host name did not resolve.
    #[error("cannot listen on {url:?}: resolving {host:?}: {message}")]
    Resolve {
        /// The URL.
        url: String,
        /// Its host.
        host: String,
        /// Why.
        message: String,
    },
    /// Binding failed.
    #[error("cannot listen on {url:?} ({addr}): {source}")]
    Bind {
        /// The URL.
        url: String,
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl ListenUrl {
    /// Parses one URL. A bare `host:port` is taken as `http://host:port`.
    pub fn parse(url: &str) -> Result<Self, ListenError> {
        let bad = || ListenError::BadUrl(url.to_string());
        let trimmed = url.trim();
        let (tls, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = trimmed.strip_prefix("http://") {
            (false, rest)
        } else if trimmed.contains("://") {
            return Err(bad());
        } else {
            (false, trimmed)
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, port) = v6.split_once("]:").ok_or_else(bad)?;
            (host, port)
        } else {
            authority.rsplit_once(':').ok_or_else(bad)?
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = port.parse::<u16>().map_err(|_| bad())?;
        Ok(Self {
            url: trimmed.to_string(),
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// Parses a comma-separated list (empty items skipped).
    pub fn parse_list(urls: &str) -> Result<Vec<Self>, ListenError> {
        urls.split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(Self::parse)
            .collect()
    }

    /// The socket address: the IP as given, or the first address the name resolves to.
    pub async fn resolve(&self) -> Result<SocketAddr, ListenError> {
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let resolve_err = |message: String| ListenError::Resolve {
            url: self.url.clone(),
            host: self.host.clone(),
            message,
        };
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| resolve_err(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_err("no address".into()))
    }

    /// Whether the host is a loopback address (`localhost` counts).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Resolves and binds.
    pub async fn bind(&self) -> Result<TcpListener, ListenError> {
        let addr = self.resolve().await?;
        TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind {
                url: self.url.clone(),
                addr,
                source,
            })
    }
}

/// Accepted connections with TCP_NODELAY and TCP keep-alive set. `serve_with_incoming`
/// ignores the server builder's `tcp_nodelay`, and without it small responses wait for
/// delayed ACKs (a flat ~40 ms per read under load).
pub fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(30)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_ips_names_and_schemes() -> Result<(), ListenError> {
        let u = ListenUrl::parse("https://node-1.example:2379")?;
        assert!(u.tls && u.host == "node-1.example" && u.port == 2379);
        let u = ListenUrl::parse("http://[::1]:2380/")?;
        assert!(!u.tls && u.host == "::1" && u.port == 2380 && u.is_loopback());
        let u = ListenUrl::parse("127.0.0.1:1")?;
        assert!(!u.tls && u.is_loopback());
        assert!(!ListenUrl::parse("http://10.0.0.1:1")?.is_loopback());
        for bad in [
            "unix:///x",
            "http://:1",
            "http://host",
            "http://h:99999",
            "ftp://h:1",
        ] {
            assert!(ListenUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ListenUrl::parse_list(" http://a:1, ,https://b:2")?.len(), 2);
        Ok(())
    }

    #[tokio::test]
    async fn names_resolve_and_bind() -> Result<(), Box<dyn std::error::Error>> {
        let l = ListenUrl::parse("http://localhost:0")?.bind().await?;
        assert!(l.local_addr()?.ip().is_loopback());
        Ok(())
    }
}
