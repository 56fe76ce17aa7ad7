//! TLS for every mango channel, written once: client gRPC, peer gRPC, the QUIC log stream and
//! the proxy's upstreams.
//!
//! - [`Identity`] and [`Roots`]: PEM certificate chains, keys and trusted CAs from files.
//! - [`DevCa`]: a development certificate authority (rcgen) that issues member certificates
//!   for host names and IPs; `scripts/cluster` and etcd's `--auto-tls` use it.
//! - [`server_config`] / [`client_config`]: rustls configurations (ring only: aws-lc beside
//!   ring makes rustls' default provider panic), with client certificates required and
//!   verified against a CA when asked.
//! - [`common_name`] and [`valid_for_host`]: what a verified certificate says about its
//!   holder (etcd takes the common name as the user; a peer's certificate must name the host
//!   of the member it claims to be).
#![forbid(unsafe_code)]

mod config;
mod der;
mod dev;
mod error;
pub mod grpc;
mod material;

pub use config::{Verify, client_config, provider, server_config};
pub use der::common_name;
pub use dev::{DevCa, self_signed_files};
pub use error::TlsError;
pub use grpc::{ChannelError, GrpcClientTls, Target};
pub use material::{Identity, Roots, url_host, valid_for_host};
