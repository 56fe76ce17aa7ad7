//! [`ReadIndexClient`]: linearizable read indexes from an upstream, each request on its own
//! stream of one shared connection.

use std::net::SocketAddr;
use std::time::Duration;

use mango_proto::mangologpb as pb;
use pb::frame::Kind;
use tokio::sync::Mutex;

use crate::endpoint::Dialer;
use crate::error::LogStreamError;
use crate::frame::{self, error_from};
use crate::tls::ClientTls;

/// How long one read index may take (the server gives up after 10 s itself).
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(11);

/// A client for read-index requests to the first reachable upstream. It keeps its connection;
/// many concurrent callers share it (each request is its own QUIC stream); batching reads that
/// wait together into one request is the caller's job.
pub struct ReadIndexClient {
    /// The upstreams and TLS settings (the dialer is made on first use, inside the runtime).
    upstreams: Vec<SocketAddr>,
    /// See `upstreams`.
    tls: ClientTls,
    /// The dialer and the connection in use; locked only to connect or swap connections.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Made on first use.
    dialer: Option<Dialer>,
    /// The shared connection, if one is open.
    conn: Option<quinn::Connection>,
}

impl ReadIndexClient {
    /// A client; nothing is connected until the first request.
    pub fn new(upstreams: Vec<SocketAddr>, tls: ClientTls) -> Self {
        ReadIndexClient {
            upstreams,
            tls,
            state: Mutex::new(State::default()),
        }
    }

    /// A linearizable read index of `group` from the upstream. A broken connection is replaced
    /// (trying the next upstream) and the request retried, once per upstream; errors the
    /// upstream answers (`Source`) and timeouts are returned as they are.
    pub async fn read_index(&self, group: u64) -> Result<u64, LogStreamError> {
        let mut last = LogStreamError::Unreachable("no upstream configured".into());
        for _ in 0..self.upstreams.len().max(1) {
            let conn = self.connection().await?;
            match request(&conn, group).await {
                Err(LogStreamError::Connection(e)) => {
                    tracing::debug!(error = %e, "logstream read index: connection lost");
                    self.forget(&conn).await;
                    last = LogStreamError::Connection(e);
                }
                answer => return answer,
            }
        }
        Err(last)
    }

    /// The shared connection, connecting if there is none (or it closed).
    async fn connection(&self) -> Result<quinn::Connection, LogStreamError> {
        let mut state = self.state.lock().await;
        if let Some(conn) = &state.conn {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
            state.conn = None;
            if let Some(dialer) = &mut state.dialer {
                dialer.advance();
            }
        }
        if state.dialer.is_none() {
            state.dialer = Some(Dialer::new(self.upstreams.clone(), &self.tls)?);
        }
        let Some(dialer) = state.dialer.as_mut() else {
            return Err(LogStreamError::Unreachable("no dialer".into()));
        };
        let conn = dialer.connect().await?;
        state.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Drops `conn` if it is still the shared one, and moves on to the next upstream.
    async fn forget(&self, conn: &quinn::Connection) {
        let mut state = self.state.lock().await;
        if state.conn.as_ref().map(quinn::Connection::stable_id) == Some(conn.stable_id()) {
            state.conn = None;
            if let Some(dialer) = &mut state.dialer {
                dialer.advance();
            }
        }
    }
}

/// One request on its own stream.
async fn request(conn: &quinn::Connection, group: u64) -> Result<u64, LogStreamError> {
    let exchange = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| LogStreamError::Connection(e.to_string()))?;
        let request = pb::Request {
            kind: Some(pb::request::Kind::ReadIndex(pb::ReadIndexRequest { group })),
        };
        frame::write(&mut send, &request).await?;
        let _ = send.finish();
        match frame::read::<pb::Frame>(&mut recv, crate::MAX_REQUEST).await? {
            Some(pb::Frame {
                kind: Some(Kind::ReadIndex(answer)),
            }) => Ok(answer.index),
            Some(pb::Frame {
                kind: Some(Kind::Error(e)),
            }) => Err(error_from(e)),
            Some(_) => Err(LogStreamError::Protocol(
                "unexpected answer to a read index".into(),
            )),
            None => Err(LogStreamError::Connection(
                "the upstream ended the stream unanswered".into(),
            )),
        }
    };
    tokio::time::timeout(READ_INDEX_TIMEOUT, exchange)
        .await
        .map_err(|_| LogStreamError::Timeout)?
}
