//! How the log store opens raft-engine.

use std::path::PathBuf;

use raft_engine::ReadableSize;

use crate::disk::DiskFaults;
use crate::error::LogStoreError;

/// Settings of a [`LogStore`](crate::LogStore). Build with
/// [`LogStoreConfig::new`] and override fields as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStoreConfig {
    /// Directory of the log files; created if missing. One engine (one
    /// directory) per node, shared by all its groups; raft-engine locks it.
    pub dir: PathBuf,
    /// Size at which raft-engine starts a new log file. Files are the unit of
    /// purging, so smaller files free space sooner at the cost of more files.
    pub target_file_size: u64,
    /// Once the live log files exceed this many bytes,
    /// [`LogStore::purge_expired_files`](crate::LogStore::purge_expired_files)
    /// rewrites or asks to compact the groups holding the oldest files. Must be
    /// at least `target_file_size`.
    pub purge_threshold: u64,
    /// Write batches larger than this are LZ4-compressed; 0 disables compression.
    pub batch_compression_threshold: u64,
    /// Threads used to scan the log files when opening.
    pub recovery_threads: usize,
    /// A fault switch over the log's files, for simulated crashes and power losses
    /// ([`DiskFaults`]); `None` outside simulations.
    pub disk_faults: Option<DiskFaults>,
}

impl LogStoreConfig {
    /// Defaults for a node's log store in `dir`: 64 MiB files, purge above
    /// 2 GiB, compress batches above 8 KiB, 2 recovery threads.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            target_file_size: 64 << 20,
            purge_threshold: 2 << 30,
            batch_compression_threshold: 8 << 10,
            recovery_threads: 2,
            disk_faults: None,
        }
    }

    /// The raft-engine configuration for these settings.
    pub(crate) fn engine_config(&self) -> Result<raft_engine::Config, LogStoreError> {
        let dir = self
            .dir
            .to_str()
            .ok_or_else(|| LogStoreError::NonUtf8Path(self.dir.clone()))?;
        Ok(raft_engine::Config {
            dir: dir.to_owned(),
            target_file_size: ReadableSize(self.target_file_size),
            purge_threshold: ReadableSize(self.purge_threshold),
            batch_compression_threshold: ReadableSize(self.batch_compression_threshold),
            recovery_threads: self.recovery_threads,
            ..Default::default()
        })
    }
}
