//! A fault switch over the store's redb file, for simulated crashes and power losses: the
//! store's counterpart of `mango_consensus::disk`.
//!
//! [`FaultyFile`] is redb's own file backend with a [`StoreFaults`] switch in front:
//! - [`StoreFaults::kill`]: the process is gone. Nothing written afterwards reaches the file
//!   (writes, resizes and syncs fail), so a database dropped after the kill cannot commit on
//!   its way out (redb's close makes a pending non-durable commit durable; a `kill -9`ed
//!   process never gets to). What was written before stays (the page cache survives).
//! - [`StoreFaults::lose_unsynced`]: the machine loses power. Every byte written since the
//!   last sync goes back to what it was then, and the file to its length then (the outcome
//!   where none of the unsynced writes reached the disk).
//! - [`StoreFaults::revive`]: the next process starts.

use std::fmt;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// The switch (see the module docs). Cheap to clone; clones share it. One per database file.
#[derive(Clone, Default)]
pub struct StoreFaults(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// The process was killed: no more writes reach the file.
    dead: bool,
    /// The file's path, once a [`FaultyFile`] opened it.
    path: Option<PathBuf>,
    /// What the unsynced writes overwrote, oldest first: (offset, the bytes there before).
    undo: Vec<(u64, Vec<u8>)>,
    /// The file's length at the last sync (or when it was first opened).
    synced_len: Option<u64>,
}

impl fmt::Debug for StoreFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state();
        f.debug_struct("StoreFaults")
            .field("dead", &s.dead)
            .field("unsynced_writes", &s.undo.len())
            .finish()
    }
}

impl StoreFaults {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process is killed: from now on nothing it writes reaches the file.
    pub fn kill(&self) {
        self.state().dead = true;
    }

    /// The machine loses power: the file goes back to what it held at its last sync. Call
    /// it after [`kill`](Self::kill) and after the database is dropped. Returns how many
    /// unsynced writes were undone.
    pub fn lose_unsynced(&self) -> io::Result<usize> {
        let mut s = self.state();
        let undone = s.undo.len();
        let Some(path) = s.path.clone() else {
            return Ok(0);
        };
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        for (offset, before) in s.undo.drain(..).rev() {
            file.write_all_at(&before, offset)?;
        }
        if let Some(len) = s.synced_len {
            file.set_len(len)?;
        }
        file.sync_all()?;
        Ok(undone)
    }

    /// The file was deleted (a machine wiped): nothing is left to undo.
    pub fn forget(&self) {
        let mut s = self.state();
        s.undo.clear();
        s.synced_len = None;
        s.path = None;
    }

    /// The next process starts: its writes reach the file again.
    pub fn revive(&self) {
        self.state().dead = false;
    }

    /// Writes made since the last sync.
    pub fn unsynced_writes(&self) -> usize {
        self.state().undo.len()
    }

    fn alive(&self) -> io::Result<()> {
        if self.state().dead {
            Err(io::Error::other("the process was killed"))
        } else {
            Ok(())
        }
    }
}

/// redb's file backend behind a [`StoreFaults`] switch.
#[derive(Debug)]
pub struct FaultyFile {
    inner: FileBackend,
    faults: StoreFaults,
}

impl FaultyFile {
    /// Opens (creating if absent) the file at `path` for redb, behind `faults`.
    pub fn open(path: &Path, faults: StoreFaults) -> io::Result<Self> {
        faults.alive()?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        {
            let mut s = faults.state();
            s.path = Some(path.to_path_buf());
            // Unsynced writes of an earlier (killed) process are still undone by a power loss.
            s.synced_len.get_or_insert(len);
        }
        let inner = FileBackend::new(file).map_err(io::Error::other)?;
        Ok(Self { inner, faults })
    }

    /// Remembers what `[offset, offset + len)` holds now, so a power loss can put it back.
    fn save_before(&self, offset: u64, len: u64) -> io::Result<()> {
        let file_len = self.inner.len()?;
        let end = (offset + len).min(file_len);
        if end > offset {
            let mut before = vec![0u8; usize::try_from(end - offset).unwrap_or(usize::MAX)];
            self.inner.read(offset, &mut before)?;
            self.faults.state().undo.push((offset, before));
        }
        Ok(())
    }
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.faults.alive()?;
        let old = self.inner.len()?;
        if len < old {
            self.save_before(len, old - len)?;
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.faults.alive()?;
        self.inner.sync_data()?;
        let len = self.inner.len()?;
        let mut s = self.faults.state();
        s.undo.clear();
        s.synced_len = Some(len);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.faults.alive()?;
        self.save_before(offset, data.len() as u64)?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        // Releases the file's locks, dead or alive.
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_loss_puts_back_what_unsynced_writes_overwrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let faults = StoreFaults::new();
        let file = FaultyFile::open(&path, faults.clone()).expect("open");
        file.set_len(8).expect("grow");
        file.write(0, b"durable!").expect("write");
        file.sync_data().expect("sync");
        file.write(2, b"XY").expect("write");
        file.set_len(12).expect("grow");
        file.write(8, b"tail").expect("write");
        assert_eq!(faults.unsynced_writes(), 2);
        faults.kill();
        assert!(file.write(0, b"z").is_err(), "a dead process wrote");
        assert!(file.sync_data().is_err(), "a dead process synced");
        file.close().expect("close");
        drop(file);
        assert_eq!(std::fs::read(&path).expect("read"), b"duXYble!tail");
        faults.lose_unsynced().expect("lose");
        assert_eq!(std::fs::read(&path).expect("read"), b"durable!");
        faults.revive();
    }
}
