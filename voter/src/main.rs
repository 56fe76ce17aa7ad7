//! `mango-voter`: a Raft voter serving etcd's v3 API. Parsing, logging, signals and exit
//! codes are `mango-boot`'s; this only hands the configuration to [`mango_voter::server::run`].

use std::process::ExitCode;

fn main() -> ExitCode {
    mango_boot::main("mango-voter", mango_voter::server::run)
}
