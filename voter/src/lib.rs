//! `mango-voter` as a library: config, the state machine over the store, the etcd node handle
//! and the server wiring. The binary only parses flags and calls [`server::run`].

pub mod config;
pub mod identity;
pub mod leases;
pub mod lessor;
mod logging;
pub mod logsource;
pub mod machine;
pub mod metrics;
pub mod node;
mod reconfig;
pub mod restore;
pub mod security;
pub mod server;
