//! `mango-proxy`: routes etcd v3 requests by consistency level. Not built yet.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "mango-proxy: not implemented yet: the proxy is built by the proxy issue; this binary \
         cannot route requests"
    );
    ExitCode::from(2)
}
