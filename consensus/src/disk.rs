//! The file system raft-engine writes the log through: the operating system's, with an
//! optional [`DiskFaults`] switch that a simulation uses to crash the node's disk as a real
//! crash would.
//!
//! Without a switch every call goes straight to raft-engine's own file system. With one:
//! - [`DiskFaults::kill`]: the process is gone. Nothing written afterwards reaches a file
//!   (writes, truncations, renames and deletes fail; syncs do nothing), so an engine dropped
//!   after the kill cannot tidy its files on the way out, as a `kill -9`ed one cannot. What
//!   was written before stays in the files (the page cache survives a process).
//! - [`DiskFaults::lose_unsynced`]: the machine loses power. Every file's bytes written
//!   since its last sync read back as zeros (unwritten preallocated space), which is what
//!   raft-engine finds at a torn tail. File creations, renames and deletions are taken to be
//!   durable at once.
//! - [`DiskFaults::revive`]: the next process starts; the switch applies to it again.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use raft_engine::env::{DefaultFileSystem, FileSystem, Handle, Permission, WriteExt};

type InnerHandle = <DefaultFileSystem as FileSystem>::Handle;
type InnerReader = <DefaultFileSystem as FileSystem>::Reader;
type InnerWriter = <DefaultFileSystem as FileSystem>::Writer;

/// A fault switch over one node's log files (see the module docs). Cheap to clone; clones
/// share the switch.
#[derive(Clone, Default)]
pub struct DiskFaults(Arc<Mutex<FaultState>>);

#[derive(Default)]
struct FaultState {
    /// The process was killed: no more I/O reaches the files.
    dead: bool,
    /// How far each file was written, and how much of that was synced.
    files: BTreeMap<PathBuf, Extent>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Extent {
    /// The end of the furthest write.
    written: usize,
    /// Everything before this is on the disk.
    synced: usize,
}

impl fmt::Debug for DiskFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state();
        f.debug_struct("DiskFaults")
            .field("dead", &s.dead)
            .field("files", &s.files.len())
            .finish()
    }
}

/// Two switches are equal when they are the same switch.
impl PartialEq for DiskFaults {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DiskFaults {}

impl DiskFaults {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, FaultState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process is killed: from now on nothing it writes reaches the files.
    pub fn kill(&self) {
        self.state().dead = true;
    }

    /// Whether [`kill`](Self::kill) was called since the last [`revive`](Self::revive).
    pub fn is_dead(&self) -> bool {
        self.state().dead
    }

    /// The machine loses power: every byte written since its file's last sync is zeroed.
    /// Call it after [`kill`](Self::kill) and after the engine is dropped. Returns the bytes
    /// lost.
    pub fn lose_unsynced(&self) -> io::Result<u64> {
        let mut s = self.state();
        let mut lost = 0u64;
        for (path, extent) in s.files.iter_mut() {
            if extent.written > extent.synced {
                lost += zero_range(path, extent.synced, extent.written)?;
            }
            extent.written = extent.synced;
        }
        Ok(lost)
    }

    /// The files were deleted (a machine wiped): nothing is left to lose.
    pub fn forget(&self) {
        self.state().files.clear();
    }

    /// The next process starts: its I/O reaches the files again.
    pub fn revive(&self) {
        self.state().dead = false;
    }

    /// Bytes written and not yet synced, over every file.
    pub fn unsynced_bytes(&self) -> u64 {
        self.state()
            .files
            .values()
            .map(|e| e.written.saturating_sub(e.synced) as u64)
            .sum()
    }

    fn alive(&self) -> io::Result<()> {
        if self.state().dead {
            Err(io::Error::other("the process was killed"))
        } else {
            Ok(())
        }
    }

    fn opened(&self, path: &Path) {
        self.state().files.entry(path.to_path_buf()).or_default();
    }

    fn wrote(&self, path: &Path, end: usize) {
        let mut s = self.state();
        let e = s.files.entry(path.to_path_buf()).or_default();
        e.written = e.written.max(end);
    }

    fn truncated(&self, path: &Path, len: usize) {
        let mut s = self.state();
        let e = s.files.entry(path.to_path_buf()).or_default();
        e.written = e.written.min(len);
        e.synced = e.synced.min(len);
    }

    fn synced(&self, path: &Path) {
        let mut s = self.state();
        let e = s.files.entry(path.to_path_buf()).or_default();
        e.synced = e.written;
    }

    fn renamed(&self, from: &Path, to: &Path) {
        let mut s = self.state();
        let extent = s.files.remove(from).unwrap_or_default();
        s.files.insert(to.to_path_buf(), extent);
    }

    fn deleted(&self, path: &Path) {
        self.state().files.remove(path);
    }
}

/// Overwrites `[from, to)` of the file at `path` with zeros (as much of it as the file still
/// holds). Returns the bytes zeroed.
fn zero_range(path: &Path, from: usize, to: usize) -> io::Result<u64> {
    let mut file = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    let to = to.min(len);
    if to <= from {
        return Ok(0);
    }
    file.seek(SeekFrom::Start(from as u64))?;
    file.write_all(&vec![0u8; to - from])?;
    file.sync_data()?;
    Ok((to - from) as u64)
}

/// The file system the log store opens raft-engine with.
#[derive(Debug, Default)]
pub struct LogFs {
    /// The fault switch, in simulations; `None` everywhere else.
    faults: Option<DiskFaults>,
}

impl LogFs {
    pub fn new(faults: Option<DiskFaults>) -> Self {
        Self { faults }
    }

    fn alive(&self) -> io::Result<()> {
        self.faults.as_ref().map_or(Ok(()), DiskFaults::alive)
    }

    /// A handle on the file just created or opened at `path`.
    fn handle(&self, inner: InnerHandle, path: &Path) -> LogHandle {
        if let Some(f) = &self.faults {
            f.opened(path);
        }
        LogHandle {
            inner: Arc::new(inner),
            path: path.to_path_buf(),
            faults: self.faults.clone(),
        }
    }
}

/// An open log file.
pub struct LogHandle {
    inner: Arc<InnerHandle>,
    path: PathBuf,
    faults: Option<DiskFaults>,
}

impl Handle for LogHandle {
    fn truncate(&self, offset: usize) -> io::Result<()> {
        if let Some(f) = &self.faults {
            f.alive()?;
        }
        self.inner.truncate(offset)?;
        if let Some(f) = &self.faults {
            f.truncated(&self.path, offset);
        }
        Ok(())
    }

    fn file_size(&self) -> io::Result<usize> {
        self.inner.file_size()
    }

    fn sync(&self) -> io::Result<()> {
        match &self.faults {
            None => self.inner.sync(),
            // A dead process syncs nothing; raft-engine panics on a failed sync, and a
            // killed process has no say in what reaches the disk anyway.
            Some(f) if f.is_dead() => Ok(()),
            Some(f) => {
                self.inner.sync()?;
                f.synced(&self.path);
                Ok(())
            }
        }
    }
}

/// Writes to a log file, telling the fault switch how far it wrote.
pub struct LogWriter {
    inner: InnerWriter,
    handle: Arc<LogHandle>,
    /// Where the next write goes (the inner writer's position).
    offset: usize,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(f) = &self.handle.faults {
            f.alive()?;
        }
        let n = self.inner.write(buf)?;
        self.offset += n;
        if let Some(f) = &self.handle.faults {
            f.wrote(&self.handle.path, self.offset);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Seek for LogWriter {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let at = self.inner.seek(pos)?;
        self.offset = usize::try_from(at).unwrap_or(usize::MAX);
        Ok(at)
    }
}

impl WriteExt for LogWriter {
    fn truncate(&mut self, offset: usize) -> io::Result<()> {
        if let Some(f) = &self.handle.faults {
            f.alive()?;
        }
        self.inner.truncate(offset)?;
        self.offset = offset;
        if let Some(f) = &self.handle.faults {
            f.truncated(&self.handle.path, offset);
        }
        Ok(())
    }

    fn allocate(&mut self, offset: usize, size: usize) -> io::Result<()> {
        if let Some(f) = &self.handle.faults {
            f.alive()?;
        }
        self.inner.allocate(offset, size)
    }
}

/// Reads a log file.
pub struct LogReader(InnerReader);

impl Read for LogReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Seek for LogReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

impl FileSystem for LogFs {
    type Handle = LogHandle;
    type Reader = LogReader;
    type Writer = LogWriter;

    fn create<P: AsRef<Path>>(&self, path: P) -> io::Result<LogHandle> {
        self.alive()?;
        let inner = DefaultFileSystem.create(path.as_ref())?;
        Ok(self.handle(inner, path.as_ref()))
    }

    fn open<P: AsRef<Path>>(&self, path: P, perm: Permission) -> io::Result<LogHandle> {
        let inner = DefaultFileSystem.open(path.as_ref(), perm)?;
        Ok(self.handle(inner, path.as_ref()))
    }

    fn delete<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.alive()?;
        DefaultFileSystem.delete(path.as_ref())?;
        if let Some(f) = &self.faults {
            f.deleted(path.as_ref());
        }
        Ok(())
    }

    fn rename<P: AsRef<Path>>(&self, src_path: P, dst_path: P) -> io::Result<()> {
        self.alive()?;
        DefaultFileSystem.rename(src_path.as_ref(), dst_path.as_ref())?;
        if let Some(f) = &self.faults {
            f.renamed(src_path.as_ref(), dst_path.as_ref());
        }
        Ok(())
    }

    fn new_reader(&self, handle: Arc<LogHandle>) -> io::Result<LogReader> {
        Ok(LogReader(
            DefaultFileSystem.new_reader(handle.inner.clone())?,
        ))
    }

    fn new_writer(&self, handle: Arc<LogHandle>) -> io::Result<LogWriter> {
        let inner = DefaultFileSystem.new_writer(handle.inner.clone())?;
        Ok(LogWriter {
            inner,
            handle,
            offset: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_at(fs: &LogFs, path: &Path, offset: u64, bytes: &[u8]) -> Arc<LogHandle> {
        let handle = Arc::new(fs.create(path).expect("create"));
        let mut w = fs.new_writer(handle.clone()).expect("writer");
        w.seek(SeekFrom::Start(offset)).expect("seek");
        w.write_all(bytes).expect("write");
        handle
    }

    #[test]
    fn power_loss_zeroes_what_was_written_after_the_last_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let faults = DiskFaults::new();
        let fs = LogFs::new(Some(faults.clone()));
        let handle = write_at(&fs, &path, 0, b"synced");
        handle.sync().expect("sync");
        let mut w = fs.new_writer(handle.clone()).expect("writer");
        w.seek(SeekFrom::Start(6)).expect("seek");
        w.write_all(b"-lost").expect("write");
        assert_eq!(faults.unsynced_bytes(), 5);
        faults.kill();
        // A dead process's writes fail and its syncs change nothing.
        assert!(w.write_all(b"x").is_err());
        handle.sync().expect("a dead sync is a no-op");
        drop((w, handle));
        assert_eq!(faults.lose_unsynced().expect("lose"), 5);
        assert_eq!(std::fs::read(&path).expect("read"), b"synced\0\0\0\0\0");
        faults.revive();
        assert_eq!(faults.unsynced_bytes(), 0);
    }

    #[test]
    fn a_kill_alone_keeps_unsynced_bytes_and_blocks_renames() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let faults = DiskFaults::new();
        let fs = LogFs::new(Some(faults.clone()));
        drop(write_at(&fs, &a, 0, b"page cache"));
        faults.kill();
        assert!(fs.rename(&a, &b).is_err());
        assert!(fs.delete(&a).is_err());
        assert!(fs.create(&b).is_err());
        faults.revive();
        assert_eq!(std::fs::read(&a).expect("read"), b"page cache");
        // Renamed files keep their unsynced bytes.
        fs.rename(&a, &b).expect("rename");
        assert_eq!(faults.lose_unsynced().expect("lose"), 10);
        assert_eq!(std::fs::read(&b).expect("read"), vec![0u8; 10]);
    }

    #[test]
    fn without_a_switch_it_is_the_plain_file_system() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let fs = LogFs::new(None);
        let handle = write_at(&fs, &path, 0, b"abc");
        handle.sync().expect("sync");
        handle.truncate(2).expect("truncate");
        assert_eq!(handle.file_size().expect("size"), 2);
        let mut r = fs.new_reader(handle).expect("reader");
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        assert_eq!(out, b"ab");
    }
}
