//! QUIC transport settings shared by both ends, and the client's [`Dialer`]: connect to the
//! first reachable upstream, moving on to the next after an error.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::error::LogStreamError;
use crate::tls::ClientTls;

/// A connection with no packet from the peer for this long is dead (on both ends). Keep-alives
/// every [`KEEP_ALIVE`] keep a healthy idle connection open. QUIC restarts the idle timer when
/// it sends its first ack-eliciting packet after a receipt, so a peer that goes silent is
/// noticed within this plus one keep-alive interval: 3 s. Also bounds a connection attempt to
/// an address where nobody answers.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(2500);

/// How often each end sends a QUIC PING on an otherwise quiet connection.
pub const KEEP_ALIVE: Duration = Duration::from_millis(500);

/// Flow-control credit of one stream: the most a sender has in flight on one subscription
/// beyond what the receiver has read.
const STREAM_WINDOW: u32 = 2 << 20;

/// Flow-control credit of one connection (all its streams).
const CONNECTION_WINDOW: u32 = 8 << 20;

/// The most unacknowledged data a sender buffers on one connection.
const SEND_WINDOW: u64 = 4 << 20;

/// Streams a client may open at once on one connection (subscriptions plus read indexes).
const MAX_STREAMS: u32 = 256;

/// The transport settings of both ends.
pub(crate) fn transport() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    // IDLE_TIMEOUT is a few seconds, far below QUIC's 2^62 ms limit.
    t.max_idle_timeout(IdleTimeout::try_from(IDLE_TIMEOUT).ok())
        .keep_alive_interval(Some(KEEP_ALIVE))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(SEND_WINDOW)
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    Arc::new(t)
}

/// Connects to upstreams in order: the current one first, then the others.
pub(crate) struct Dialer {
    /// Where to connect, tried in this order (round robin from `next`).
    upstreams: Vec<SocketAddr>,
    /// The upstream to try first.
    next: usize,
    /// TLS and transport settings of every connection.
    config: quinn::ClientConfig,
    /// Names to check against the servers' certificates.
    tls: ClientTls,
    /// The local UDP endpoints, one per address family, made on first use.
    v4: Option<quinn::Endpoint>,
    /// See `v4`.
    v6: Option<quinn::Endpoint>,
}

impl Dialer {
    /// A dialer; no socket is opened until [`Dialer::connect`].
    pub(crate) fn new(upstreams: Vec<SocketAddr>, tls: &ClientTls) -> Result<Self, LogStreamError> {
        let mut config = tls.quic_config()?;
        config.transport_config(transport());
        Ok(Dialer {
            upstreams,
            next: 0,
            config,
            tls: tls.clone(),
            v4: None,
            v6: None,
        })
    }

    /// Try another upstream first next time (after an error with the current one).
    pub(crate) fn advance(&mut self) {
        if !self.upstreams.is_empty() {
            self.next = (self.next + 1) % self.upstreams.len();
        }
    }

    /// A connection to the first upstream that answers, starting with the current one; that
    /// one becomes current.
    pub(crate) async fn connect(&mut self) -> Result<quinn::Connection, LogStreamError> {
        let mut last = String::from("no upstream configured");
        for i in 0..self.upstreams.len() {
            let at = (self.next + i) % self.upstreams.len();
            let addr = self.upstreams[at];
            match self.connect_to(addr).await {
                Ok(conn) => {
                    self.next = at;
                    tracing::debug!(upstream = %addr, "logstream connected");
                    return Ok(conn);
                }
                Err(e) => {
                    tracing::debug!(upstream = %addr, error = %e, "logstream connect failed");
                    last = format!("{addr}: {e}");
                }
            }
        }
        Err(LogStreamError::Unreachable(last))
    }

    async fn connect_to(&mut self, addr: SocketAddr) -> Result<quinn::Connection, LogStreamError> {
        let endpoint = self.endpoint(addr)?;
        let name = self.tls.server_name(addr.ip());
        let connecting = endpoint
            .connect_with(self.config.clone(), addr, &name)
            .map_err(|e| LogStreamError::Connection(e.to_string()))?;
        match tokio::time::timeout(IDLE_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(LogStreamError::Connection(e.to_string())),
            Err(_) => Err(LogStreamError::Timeout),
        }
    }

    /// The local endpoint for `addr`'s address family.
    fn endpoint(&mut self, addr: SocketAddr) -> Result<quinn::Endpoint, LogStreamError> {
        let (slot, local) = if addr.is_ipv4() {
            (&mut self.v4, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        } else {
            (&mut self.v6, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
        };
        if let Some(endpoint) = slot {
            return Ok(endpoint.clone());
        }
        let endpoint = quinn::Endpoint::client(local).map_err(|source| LogStreamError::Bind {
            addr: local,
            source,
        })?;
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// Closes every connection (telling the peers) and waits briefly for that to be sent.
    pub(crate) async fn close(&mut self) {
        for endpoint in [self.v4.take(), self.v6.take()].into_iter().flatten() {
            endpoint.close(VarInt::from_u32(0), b"shutdown");
            let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
        }
    }
}
