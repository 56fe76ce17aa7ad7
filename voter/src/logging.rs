//! raft-rs's slog records bridged into `tracing`.

use slog::{Drain, KV, Level, OwnedKVList, Record, Serializer};

/// A slog drain forwarding records to `tracing`.
struct TracingDrain;

struct Fields(String);

impl Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        self.0.push_str(&format!(" {key}={val}"));
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = Fields(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let msg = record.msg();
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}{}", fields.0),
            Level::Warning => tracing::warn!(target: "raft", "{msg}{}", fields.0),
            Level::Info => tracing::info!(target: "raft", "{msg}{}", fields.0),
            Level::Debug | Level::Trace => tracing::debug!(target: "raft", "{msg}{}", fields.0),
        }
        Ok(())
    }
}

/// The slog logger raft-rs writes through, bridged into `tracing` (which `mango-boot`
/// started).
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}
