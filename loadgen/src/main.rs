//! `mango-loadgen`: etcd v3 load generator. Not built yet (see the loadgen issue).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("mango-loadgen: not implemented yet: built by the loadgen issue");
    ExitCode::from(2)
}
