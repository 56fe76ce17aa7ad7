//! `mango-learner`: the read tier fed by the committed-log stream. Not built yet.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "mango-learner: not implemented yet: the learner tier is built by the learner issue; \
         this binary cannot serve clients"
    );
    ExitCode::from(2)
}
