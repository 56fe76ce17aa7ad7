//! Frames on a QUIC stream: a 4-byte big-endian length, then one prost message
//! (`mangologpb.Request` from the client, `mangologpb.Frame` from the server).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use mango_proto::mangologpb as pb;
use prost::Message;

use crate::error::LogStreamError;
use crate::source::{LogEntry, SourceError, Stamp};

/// The largest frame either end accepts (and so the most one stream's reader allocates).
/// Entry batches aim at [`crate::BATCH_BYTES`]; only a single larger entry makes a bigger frame.
pub const MAX_FRAME: usize = 32 << 20;

/// Encodes `msg` with its length prefix.
pub(crate) fn encode(msg: &impl Message) -> Result<Bytes, LogStreamError> {
    let len = msg.encoded_len();
    if len > MAX_FRAME {
        return Err(LogStreamError::Protocol(format!(
            "frame of {len} bytes exceeds the maximum of {MAX_FRAME}"
        )));
    }
    let mut buf = BytesMut::with_capacity(4 + len);
    // `len` <= MAX_FRAME fits in u32.
    buf.put_u32(len as u32);
    msg.encode(&mut buf)
        .map_err(|e| LogStreamError::Protocol(e.to_string()))?;
    Ok(buf.freeze())
}

/// Writes one frame.
pub(crate) async fn write(
    send: &mut quinn::SendStream,
    msg: &impl Message,
) -> Result<(), LogStreamError> {
    let bytes = encode(msg)?;
    send.write_chunk(bytes)
        .await
        .map_err(|e| LogStreamError::Connection(e.to_string()))
}

/// Reads one frame of at most `max` bytes; `Ok(None)` when the peer finished the stream
/// cleanly before a new frame.
pub(crate) async fn read<M: Message + Default>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<M>, LogStreamError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(LogStreamError::Connection(e.to_string())),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(LogStreamError::Protocol(format!(
            "frame of {len} bytes exceeds the maximum of {max}"
        )));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf)
        .await
        .map_err(|e| LogStreamError::Connection(e.to_string()))?;
    M::decode(Bytes::from(buf))
        .map(Some)
        .map_err(|e| LogStreamError::Protocol(e.to_string()))
}

/// A server frame of one kind.
pub(crate) fn frame(kind: pb::frame::Kind) -> pb::Frame {
    pb::Frame { kind: Some(kind) }
}

/// An `Entries` frame.
pub(crate) fn entries_frame(entries: &[LogEntry]) -> pb::Frame {
    frame(pb::frame::Kind::Entries(pb::Entries {
        entries: entries
            .iter()
            .map(|e| pb::LogEntry {
                index: e.index,
                term: e.term,
                data: e.data.clone(),
            })
            .collect(),
    }))
}

/// A `Stamp` frame, sent now.
pub(crate) fn stamp_frame(stamp: Stamp) -> pb::Frame {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let sent = EPOCH.get_or_init(Instant::now).elapsed();
    frame(pb::frame::Kind::Stamp(pb::Stamp {
        commit: stamp.commit,
        age_micros: micros(stamp.age),
        sent_micros: micros(sent),
    }))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Turns the stamps of one connection into what the sink gets: the sender's age plus the time
/// the stamp spent on the way.
///
/// A stamp written behind megabytes of entries waits in QUIC's buffers until the follower has
/// read them; its age as the sender wrote it would then claim fresher knowledge than there is
/// (unsafe for bounded-staleness reads). The clocks of the two hosts cannot be compared, but
/// their difference `arrival - sent` can: over one connection it is smallest for a stamp that
/// did not queue (the first stamp of a subscription goes out before any entry, and idle stamps
/// go out on an empty stream), so each stamp's excess over that minimum is its queueing delay.
/// One RTT more covers the transit of the fastest stamp itself. Rate differences between the
/// two monotonic clocks (ppm) only make ages larger when the server's clock is the slower.
pub(crate) struct Transit {
    /// The follower's clock origin.
    epoch: Instant,
    /// The smallest `arrival - sent` seen on this connection, in microseconds.
    base: Option<i128>,
}

impl Transit {
    pub(crate) fn new() -> Self {
        Transit {
            epoch: Instant::now(),
            base: None,
        }
    }

    /// The stamp of `pb`, which arrived at `now` over a connection with round-trip time `rtt`.
    pub(crate) fn arrived(&mut self, pb: &pb::Stamp, now: Instant, rtt: Duration) -> Stamp {
        let arrival =
            i128::try_from(now.duration_since(self.epoch).as_micros()).unwrap_or(i128::MAX);
        let offset = arrival - i128::from(pb.sent_micros);
        let base = self.base.map_or(offset, |b| b.min(offset));
        self.base = Some(base);
        let queued = u64::try_from(offset - base).unwrap_or(u64::MAX);
        Stamp {
            commit: pb.commit,
            age: Duration::from_micros(pb.age_micros)
                .saturating_add(Duration::from_micros(queued))
                .saturating_add(rtt),
        }
    }
}

/// An `Error` frame for a source error.
pub(crate) fn error_frame(err: &SourceError) -> pb::Frame {
    use pb::error::Code;
    let (code, first_index) = match err {
        SourceError::Compacted { first_index } => (Code::Compacted, *first_index),
        SourceError::Unavailable(_) => (Code::Unavailable, 0),
        SourceError::NotFound => (Code::NotFound, 0),
    };
    frame(pb::frame::Kind::Error(pb::Error {
        code: code as i32,
        message: err.to_string(),
        first_index,
    }))
}

/// An `Error` frame for a malformed request.
pub(crate) fn invalid_frame(message: impl Into<String>) -> pb::Frame {
    frame(pb::frame::Kind::Error(pb::Error {
        code: pb::error::Code::Invalid as i32,
        message: message.into(),
        first_index: 0,
    }))
}

/// The error an `Error` frame reports.
pub(crate) fn error_from(pb: pb::Error) -> LogStreamError {
    use pb::error::Code;
    match Code::try_from(pb.code) {
        Ok(Code::NotFound) => LogStreamError::Source(SourceError::NotFound),
        Ok(Code::Compacted) => LogStreamError::Source(SourceError::Compacted {
            first_index: pb.first_index,
        }),
        Ok(Code::Unavailable) => LogStreamError::Source(SourceError::Unavailable(pb.message)),
        Ok(Code::Invalid) | Err(_) => LogStreamError::Protocol(pb.message),
    }
}

/// The entries of an `Entries` frame.
pub(crate) fn entries_from(pb: pb::Entries) -> Vec<LogEntry> {
    pb.entries
        .into_iter()
        .map(|e| LogEntry {
            index: e.index,
            term: e.term,
            data: e.data,
        })
        .collect()
}
