//! `mango-learner`: the read tier fed by the committed-log stream. Parsing, logging, signals
//! and exit codes are `mango-boot`'s; this only hands the configuration to
//! [`mango_learner::server::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    mango_boot::main("mango-learner", mango_learner::server::run)
}
