//! `mango-voter`: a Raft voter serving etcd's v3 API.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match mango_voter::config::Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mango-voter: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mango-voter: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mango_voter::server::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mango-voter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
