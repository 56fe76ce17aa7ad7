//! `mango-bench`: side-by-side benchmarks against etcd. Not built yet (see the loadgen issue);
//! the store's micro-benchmarks live in `store/benches/`.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "mango-bench: not implemented yet: the side-by-side runs need mango-voter and \
         mango-loadgen; store micro-benchmarks: cargo bench -p mango-store"
    );
    ExitCode::from(2)
}
