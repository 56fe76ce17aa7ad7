//! What the three binaries (`mango-voter`, `mango-learner`, `mango-proxy`) do alike, written
//! once (etcd's `embed` and TiKV's `server/setup.rs` play this part there):
//!
//! - [`config`]: flags over environment (`ETCD_*` for etcd's flags, as etcd reads them,
//!   `MANGO_*` for mango's) over a TOML `--config-file`, for any clap `Parser`; unknown keys
//!   in the file are refused with the key named; `--print-config` prints what was resolved.
//! - [`logging`]: `--log-level`, `--log-format text|json`, colour only on a terminal.
//! - [`listen`]: listen URLs (`http://` and `https://`, host names and IPs) bound to sockets.
//! - [`grpc`]: the tonic server builder with HTTP/2 limits and keep-alives set.
//! - [`http`]: the metrics endpoint (`--listen-metrics-urls`: `/metrics`, `/health`,
//!   `/livez`, `/readyz`, `/version`), [`prom`] its text encoder and histograms,
//!   [`grpc_metrics`] etcd's `grpc_server_*` counters as a layer of every gRPC server.
//! - [`tls`]: etcd's client and peer TLS flags, and the rule that a listener off loopback
//!   authenticates its peers or runs plaintext only behind a flag naming the risk.
//! - [`fatal`]: the fatal-exit path: a component that cannot go on trips it, health turns
//!   NOT_SERVING, the reason is logged and the process exits non-zero within a second.
//! - [`main`]: the entry point every binary's `main` calls: parse, log, start the runtime,
//!   run until a signal or a fatal error, map the outcome to an exit code.
//!
//! Architecture invariant: knows no binary; nothing here names a voter, learner or proxy.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod fatal;
pub mod grpc;
pub mod grpc_metrics;
pub mod http;
pub mod listen;
pub mod logging;
pub mod prom;
mod run;
pub mod tls;

pub use config::{CommonFlags, ConfigError, Layered};
pub use fatal::Fatal;
pub use run::{Boot, main, shutdown_signal};
