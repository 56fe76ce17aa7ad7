//! Endpoints and the pool of gRPC channels the clients share round-robin.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// How long to wait for each connection at startup.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Turns `host:port` or `http://host:port` into a URI; TLS is not supported.
pub fn normalize(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim().trim_end_matches('/');
    if e.is_empty() {
        return Err("empty endpoint".into());
    }
    if e.starts_with("https://") {
        return Err(format!("{e}: TLS endpoints are not supported; use http://"));
    }
    let uri = if e.starts_with("http://") {
        e.to_owned()
    } else if e.contains("://") {
        return Err(format!("{e}: only http:// endpoints are supported"));
    } else {
        format!("http://{e}")
    };
    Ok(uri)
}

/// A fixed set of channels; client `i` uses channel `i % len`.
#[derive(Debug, Clone)]
pub struct Pool {
    channels: Vec<Channel>,
}

impl Pool {
    /// Opens `conns` channels eagerly (at least one per endpoint), spread round-robin over
    /// the endpoints. Any failure is reported with the endpoint it concerns.
    pub async fn connect(endpoints: &[String], conns: u32) -> Result<Self, String> {
        let uris = endpoints
            .iter()
            .map(|e| normalize(e))
            .collect::<Result<Vec<_>, _>>()?;
        if uris.is_empty() {
            return Err("no endpoints given".into());
        }
        let count = uris.len().max(conns as usize);
        let mut channels = Vec::with_capacity(count);
        for i in 0..count {
            let uri = &uris[i % uris.len()];
            let endpoint = Endpoint::from_shared(uri.clone())
                .map_err(|e| format!("{uri}: invalid endpoint: {e}"))?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true);
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| format!("cannot connect to {uri}: {}", error_chain(&e)))?;
            channels.push(channel);
        }
        Ok(Pool { channels })
    }

    /// The channel for client number `client`.
    pub fn channel(&self, client: usize) -> Channel {
        self.channels[client % self.channels.len()].clone()
    }
}

/// An error with its causes, e.g. "transport error: Connection refused (os error 111)".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            normalize("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(normalize("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(
            normalize(" localhost:2379 ").unwrap(),
            "http://localhost:2379"
        );
        assert!(normalize("https://h:1").is_err());
        assert!(normalize("unix://sock").is_err());
        assert!(normalize("").is_err());
    }

    #[tokio::test]
    async fn refused_connection_is_a_clear_error() {
        // Bind then drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = Pool::connect(&[format!("127.0.0.1:{port}")], 1)
            .await
            .unwrap_err();
        assert!(err.contains("cannot connect to http://127.0.0.1:"), "{err}");
    }
}
