//! The entry point every binary's `main` calls, so that parsing, logging, the runtime,
//! signals and exit codes are alike in all three.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use crate::config::{self, ConfigError, Layered};
use crate::fatal::Fatal;

/// What a binary's `run` gets besides its configuration.
pub struct Boot {
    /// Resolves when the process is asked to stop (SIGTERM, SIGINT).
    pub shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The fatal-exit switch: trip it when the process cannot go on.
    pub fatal: Fatal,
}

impl std::fmt::Debug for Boot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Boot").finish_non_exhaustive()
    }
}

/// Parses `C` (flags over environment over file), prints it and exits if `--print-config`
/// was given, starts logging and the runtime, and runs `run` until it returns. Exit codes:
/// 0 after a requested stop, 1 when `run` fails, 2 for a bad configuration,
/// [`crate::fatal::FATAL_EXIT_CODE`] when something tripped the fatal switch.
pub fn main<C, F, Fut>(name: &str, run: F) -> ExitCode
where
    C: Layered,
    F: FnOnce(C, Boot) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let loaded = match config::load::<C>() {
        Ok(l) => l,
        Err(ConfigError::Flags(e)) => e.exit(),
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    if loaded.print {
        return match config::to_toml(&loaded.config) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{name}: printing the configuration: {e}");
                ExitCode::FAILURE
            }
        };
    }
    crate::logging::init(&loaded.config.common().log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let boot = Boot {
        shutdown: Box::pin(shutdown_signal()),
        fatal: Fatal::new(),
    };
    match runtime.block_on(run(loaded.config, boot)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{name} failed");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
