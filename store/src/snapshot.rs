//! Whole-state snapshots of one group: streamed out in bounded chunks from a read view, and
//! installed from any reader in one transaction, so a half-received snapshot changes nothing.
//!
//! Format: the magic `MANGOSN1`, then records `tag u8 | key_len u32 | key | value_len u32 |
//! value` (big-endian lengths; the tag names the table), then the end record: tag 0, the
//! record count (u64) and the CRC-32 of every byte before the end record (u32). Up to 511 zero
//! bytes may follow (the padding of etcd's snapshot file layout).

use std::io::Read;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::backend::{Backend, BackendError, GroupId, ReadTables, Table};
use crate::error::StoreError;
use crate::mvcc::GroupState;
use crate::store::{ReadView, Store};

const MAGIC: &[u8; 8] = b"MANGOSN1";
const END_TAG: u8 = 0;
/// Largest key or value a snapshot record may carry; larger means a corrupt stream.
const MAX_FIELD: u32 = 64 << 20;

/// Why a snapshot could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The stream is not a well-formed snapshot.
    #[error("malformed snapshot: {0}")]
    Malformed(String),
    /// Reading the stream failed.
    #[error("reading snapshot: {0}")]
    Io(#[from] std::io::Error),
    /// Storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl From<StoreError> for SnapshotError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Backend(b) => SnapshotError::Backend(b),
            other => SnapshotError::Malformed(other.to_string()),
        }
    }
}

/// Produces a group's snapshot as a sequence of chunks, reading a fixed view: memory is one
/// chunk, whatever the size of the state.
pub struct SnapshotReader<S> {
    /// The view being streamed; holding it pins that revision in the backend.
    view: Arc<ReadView<S>>,
    /// Index into [`Table::ALL`] of the table being streamed.
    table: usize,
    /// The last key emitted from that table.
    last_key: Option<Vec<u8>>,
    /// Whether the magic went out.
    started: bool,
    /// Whether the end record went out.
    done: bool,
    /// CRC of everything emitted so far.
    crc: crc32fast::Hasher,
    /// Records emitted so far.
    records: u64,
}

impl<S: ReadTables> SnapshotReader<S> {
    /// The group state the snapshot carries (its applied index is the snapshot's index).
    pub fn state(&self) -> GroupState {
        self.view.state()
    }

    /// The next chunk of about `max_bytes` (at least one record), or `None` at the end.
    pub fn next_chunk(&mut self, max_bytes: usize) -> Result<Option<Vec<u8>>, BackendError> {
        if self.done {
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(max_bytes.min(4 << 20));
        if !self.started {
            buf.extend_from_slice(MAGIC);
            self.started = true;
        }
        while self.table < Table::ALL.len() && buf.len() < max_bytes {
            let table = Table::ALL[self.table];
            let start = match &self.last_key {
                // The smallest key after the last one emitted.
                Some(k) => {
                    let mut s = k.clone();
                    s.push(0);
                    s
                }
                None => Vec::new(),
            };
            let mut last = None;
            let mut records = 0;
            self.view
                .snapshot()
                .scan(table, &start, None, false, &mut |k, v| {
                    buf.push(table.tag());
                    buf.extend_from_slice(&(k.len() as u32).to_be_bytes());
                    buf.extend_from_slice(k);
                    buf.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    buf.extend_from_slice(v);
                    records += 1;
                    if buf.len() >= max_bytes {
                        last = Some(k.to_vec());
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                })?;
            self.records += records;
            match last {
                Some(k) => self.last_key = Some(k),
                None => {
                    self.table += 1;
                    self.last_key = None;
                }
            }
        }
        if self.table >= Table::ALL.len() {
            self.crc.update(&buf);
            let crc = self.crc.clone().finalize();
            buf.push(END_TAG);
            buf.extend_from_slice(&self.records.to_be_bytes());
            buf.extend_from_slice(&crc.to_be_bytes());
            self.done = true;
        } else {
            self.crc.update(&buf);
        }
        Ok(Some(buf))
    }
}

/// Reads exactly `n` bytes, feeding them to the CRC.
fn read_exact(
    r: &mut dyn Read,
    crc: &mut crc32fast::Hasher,
    n: usize,
) -> Result<Vec<u8>, SnapshotError> {
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)?;
    crc.update(&buf);
    Ok(buf)
}

fn read_u32(r: &mut dyn Read, crc: &mut crc32fast::Hasher) -> Result<u32, SnapshotError> {
    let b = read_exact(r, crc, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl<B: Backend> Store<B> {
    /// A snapshot of `group` as of its latest committed view.
    pub fn snapshot_reader(
        &self,
        group: GroupId,
    ) -> Result<SnapshotReader<B::Snapshot>, BackendError> {
        Ok(SnapshotReader {
            view: self.read(group)?,
            table: 0,
            last_key: None,
            started: false,
            done: false,
            crc: crc32fast::Hasher::new(),
            records: 0,
        })
    }

    /// Replaces all of `group`'s state with the snapshot read from `input`, in one durable
    /// transaction: on any error nothing changes. Returns the installed state.
    pub fn install_snapshot(
        &self,
        group: GroupId,
        input: &mut dyn Read,
    ) -> Result<GroupState, SnapshotError> {
        let mut crc = crc32fast::Hasher::new();
        let magic = read_exact(input, &mut crc, MAGIC.len())?;
        if magic != MAGIC {
            return Err(SnapshotError::Malformed("bad magic".into()));
        }
        let result = self.with_writer(group, || {
            self.backend().write(group, true, |tables| {
                for table in Table::ALL {
                    tables.clear(table)?;
                }
                read_records(input, &mut crc, &mut |table, key, value| {
                    Ok(tables.put(table, key, value)?)
                })?;
                Ok(GroupState::load(&*tables)?)
            })
        });
        let state = result.map_err(SnapshotError::from)?;
        self.republish(group)?;
        Ok(state)
    }
}

/// Reads a whole snapshot from `input` and checks it (magic, record framing and sizes, record
/// count, checksum, nothing but padding after the end) without installing anything: what a
/// receiver does before Raft may see the snapshot, so damaged bytes are refused at the door
/// instead of failing the install. Returns the number of records.
pub fn verify_snapshot(input: &mut dyn Read) -> Result<u64, SnapshotError> {
    let mut crc = crc32fast::Hasher::new();
    let magic = read_exact(input, &mut crc, MAGIC.len())?;
    if magic != MAGIC {
        return Err(SnapshotError::Malformed("bad magic".into()));
    }
    let mut records = 0u64;
    read_records(input, &mut crc, &mut |_, _, _| {
        records += 1;
        Ok(())
    })
    .map_err(SnapshotError::from)?;
    Ok(records)
}

/// What receives each record of a snapshot read.
type PutRecord<'a> = &'a mut dyn FnMut(Table, &[u8], &[u8]) -> Result<(), StoreError>;

/// The records after the magic, each handed to `put`, then the trailer and padding checked.
fn read_records(
    input: &mut dyn Read,
    crc: &mut crc32fast::Hasher,
    put: PutRecord<'_>,
) -> Result<(), StoreError> {
    let mut records = 0u64;
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag).map_err(io_err)?;
        if tag[0] == END_TAG {
            break;
        }
        crc.update(&tag);
        let table = Table::from_tag(tag[0])
            .ok_or_else(|| malformed(format!("unknown table tag {}", tag[0])))?;
        let klen = read_u32(input, crc).map_err(snap_err)?;
        if klen > MAX_FIELD {
            return Err(malformed(format!("key of {klen} bytes")));
        }
        let key = read_exact(input, crc, klen as usize).map_err(snap_err)?;
        let vlen = read_u32(input, crc).map_err(snap_err)?;
        if vlen > MAX_FIELD {
            return Err(malformed(format!("value of {vlen} bytes")));
        }
        let value = read_exact(input, crc, vlen as usize).map_err(snap_err)?;
        put(table, &key, &value)?;
        records += 1;
    }
    let mut trailer = [0u8; 12];
    input.read_exact(&mut trailer).map_err(io_err)?;
    let (count, sum) = trailer.split_at(8);
    let count = u64::from_be_bytes(count.try_into().map_err(|_| malformed("trailer".into()))?);
    let sum = u32::from_be_bytes(sum.try_into().map_err(|_| malformed("trailer".into()))?);
    if count != records {
        return Err(malformed(format!(
            "{records} records, trailer says {count}"
        )));
    }
    if sum != crc.clone().finalize() {
        return Err(malformed("checksum mismatch".into()));
    }
    // Zero padding may follow (etcd's snapshot files pad to 512 bytes); anything else means
    // the stream is not what was written.
    let mut rest = [0u8; 512];
    let mut padding = 0usize;
    loop {
        let n = input.read(&mut rest).map_err(io_err)?;
        if n == 0 {
            break;
        }
        padding += n;
        if padding >= 512 || rest[..n].iter().any(|&b| b != 0) {
            return Err(malformed("bytes after the end record".into()));
        }
    }
    Ok(())
}

fn malformed(what: String) -> StoreError {
    StoreError::Malformed(format!("snapshot: {what}"))
}

fn io_err(e: std::io::Error) -> StoreError {
    malformed(e.to_string())
}

fn snap_err(e: SnapshotError) -> StoreError {
    match e {
        SnapshotError::Backend(b) => StoreError::Backend(b),
        other => malformed(other.to_string()),
    }
}
