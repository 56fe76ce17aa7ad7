//! The crate's errors: [`TlsError`] for loading or making certificates, [`LogStreamError`] for
//! everything that crosses the network.

use std::net::SocketAddr;

use crate::source::SourceError;

/// Loading, generating or using TLS material failed (mango-tls's error).
pub use mango_tls::TlsError;

/// A stream operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogStreamError {
    /// The server could not bind its UDP socket.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No upstream could be reached (the last cause is given).
    #[error("no upstream reachable: {0}")]
    Unreachable(String),
    /// The connection or stream broke.
    #[error("connection: {0}")]
    Connection(String),
    /// The peer sent something this protocol does not allow.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The upstream's source answered with an error.
    #[error("upstream: {0}")]
    Source(#[from] SourceError),
    /// The sink refused what arrived (`append` or `install` returned an error).
    #[error("sink: {0}")]
    Sink(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
}
