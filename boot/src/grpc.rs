//! The tonic server every binary serves gRPC with, its HTTP/2 limits set explicitly: streams
//! per connection (etcd's `--max-concurrent-streams`), how many streams a client may make
//! the server reset for protocol errors before the connection is closed (the HTTP/2
//! "rapid reset" defence), and keep-alive pings (etcd's `--grpc-keepalive-interval` and
//! `--grpc-keepalive-timeout`).

use std::time::Duration;

/// gRPC server flags, etcd's names and defaults.
#[derive(Clone, Debug, clap::Args, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct GrpcFlags {
    /// How often the server pings an idle client connection to check it is alive, in
    /// milliseconds (etcd's `--grpc-keepalive-interval`, 2 h).
    #[arg(long = "grpc-keepalive-interval-ms", default_value_t = 7_200_000)]
    pub grpc_keepalive_interval_ms: u64,
    /// How long to wait for a ping's answer before closing the connection, in milliseconds
    /// (etcd's `--grpc-keepalive-timeout`, 20 s).
    #[arg(long = "grpc-keepalive-timeout-ms", default_value_t = 20_000)]
    pub grpc_keepalive_timeout_ms: u64,
}

/// Streams a client may make the server reset (protocol errors) on one connection before
/// it is closed: h2's own default, set here so it cannot silently change.
pub const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// Streams a client may open and reset before the server accepted them (h2's default).
pub const MAX_PENDING_ACCEPT_RESETS: usize = 20;

/// The server [`server`] builds: tonic's, with etcd's gRPC metrics counted under every
/// service.
pub type GrpcServer = tonic::transport::Server<
    tower::layer::util::Stack<crate::grpc_metrics::GrpcMetricsLayer, tower::layer::util::Identity>,
>;

/// A server builder with the limits set and the gRPC metrics layer on; `max_streams` is the
/// number of concurrent streams per connection.
pub fn server(flags: &GrpcFlags, max_streams: u32) -> GrpcServer {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(Some(max_streams))
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
        .http2_keepalive_interval(Some(Duration::from_millis(
            flags.grpc_keepalive_interval_ms.max(1),
        )))
        .http2_keepalive_timeout(Some(Duration::from_millis(
            flags.grpc_keepalive_timeout_ms.max(1),
        )))
        .layer(crate::grpc_metrics::GrpcMetricsLayer)
}
