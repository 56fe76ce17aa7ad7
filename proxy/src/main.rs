//! `mango-proxy`: routes etcd v3 requests by consistency level to the leader or the learners.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match mango_proxy::config::Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mango-proxy: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mango-proxy: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    match runtime.block_on(mango_proxy::server::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mango-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}
