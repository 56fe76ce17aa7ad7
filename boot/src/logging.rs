//! Logging: `tracing` to stderr, as text or JSON lines, colour only when stderr is a
//! terminal. `--log-level` (etcd's flag: debug, info, warn, error; `RUST_LOG` directives
//! refine it) and `--log-format text|json`.

use std::io::IsTerminal as _;

/// The logging flags every binary takes.
#[derive(Clone, Debug, clap::Args, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LogFlags {
    /// Lowest level logged: debug, info, warn or error (`RUST_LOG` directives, when set,
    /// refine it per module).
    #[arg(long, default_value = "info", value_parser = ["trace", "debug", "info", "warn", "error"])]
    pub log_level: String,
    /// `text` (one human-readable line per event) or `json` (one JSON object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Starts the process's `tracing` subscriber. Idempotent: a second call (tests that start
/// several servers in one process) keeps the first.
pub fn init(flags: &LogFlags) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => {
            tracing_subscriber::EnvFilter::new(format!("{},{directives}", flags.log_level))
        }
        _ => tracing_subscriber::EnvFilter::new(&flags.log_level),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if flags.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
