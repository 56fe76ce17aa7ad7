//! `mango-voter`: a Raft voter serving etcd's v3 API. Not built yet (see the voter issue).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "mango-voter: not implemented yet: the Raft voter and the etcd v3 services are built \
         by the voter issue; this binary cannot serve clients"
    );
    ExitCode::from(2)
}
