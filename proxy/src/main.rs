//! `mango-proxy`: routes etcd v3 requests by consistency level to the leader or the learners.
//! Parsing, logging, signals and exit codes are `mango-boot`'s; this only hands the
//! configuration to [`mango_proxy::server::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    mango_boot::main("mango-proxy", mango_proxy::server::run)
}
