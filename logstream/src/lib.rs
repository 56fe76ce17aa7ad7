//! The committed-log stream between voters and learners, over QUIC: both ends.
//!
//! A server ([`serve`]) reads from a [`LogSource`] (a voter: its Raft log up to the commit
//! index and its store; a learner: what it received) and a follower ([`follow`]) applies into
//! a [`LogSink`] (a learner). [`ReadIndexClient`] asks an upstream for linearizable read
//! indexes. The crate knows nothing of Raft or of the store: it moves committed entries,
//! stamps, snapshots and read-index requests.
//!
//! # Protocol
//!
//! - **Transport.** QUIC (quinn) with TLS 1.3 (rustls, ring), ALPN `mango-log/1`. One
//!   connection per follower (per [`follow`] call, per [`ReadIndexClient`]). Idle timeout
//!   [`IDLE_TIMEOUT`] (2.5 s) with keep-alives every [`KEEP_ALIVE`] (0.5 s) on both ends, so a
//!   peer that goes silent is noticed within 3 s; a connection attempt to a silent address
//!   gives up after the idle timeout.
//! - **Frames.** Each message on a stream is a 4-byte big-endian length and a protobuf message
//!   of `mangologpb` (`proto/proto/mango/logstream.proto`): the client's first and only frame
//!   on a stream is a `Request` (at most [`MAX_REQUEST`] bytes), every server frame a `Frame`
//!   (at most [`MAX_FRAME`] bytes). A peer that breaks a limit or the grammar is cut off.
//! - **Subscription** (a bidirectional stream per followed group). Client: `Subscribe{group,
//!   from}` then finishes its side. Server, forever:
//!   - `Entries` — consecutive committed entries, the first exactly `from` (then exactly after
//!     the previous batch or snapshot), about [`BATCH_BYTES`] of data per frame (a single
//!     larger entry makes a larger frame). A `Stamp` follows every `Entries` frame.
//!   - `Stamp{commit, age, sent}` — first, before any entry; also at least every
//!     [`STAMP_INTERVAL`] (100 ms) while there is nothing new (none while the source has none,
//!     e.g. a voter without a leader). The follower hands the sink the age plus the time the
//!     stamp spent on the way: its queueing behind entries (measured from `sent`, the server's
//!     monotonic clock, against the fastest stamp of the connection) plus one RTT, so a stamp
//!     that waited behind a backlog never claims fresher knowledge than there is.
//!   - `SnapshotBegin{index, term}`, `SnapshotChunk`..., `SnapshotEnd{total_bytes, crc32}` —
//!     when the wanted index is compacted at the source; entries then continue from
//!     `index + 1`. The follower checks length and CRC-32 before letting the install finish.
//!   - `Error{code, message}` — the source failed (no such group, unavailable); the server then
//!     finishes the stream and the follower reconnects after a backoff.
//!
//!   The server waits on [`LogSource::commit_updates`] instead of polling the source.
//! - **Read index** (a bidirectional stream per request, so concurrent requests never wait on
//!   each other). Client: `ReadIndex{group}`; server: `ReadIndex{index}` or `Error`, then both
//!   finish.
//! - **Back-pressure.** Neither end reads ahead of what it has processed: the follower reads
//!   the next frame only after the sink took the previous one (snapshot chunks go through a
//!   channel of four), and the server produces the next batch only once the previous one was
//!   written into QUIC's bounded buffers (2 MiB stream / 8 MiB connection flow-control windows,
//!   4 MiB send buffer). A follower far behind is caught up batch by batch with bounded memory
//!   on both ends.
//! - **Resumption.** On any error the follower closes the connection, waits (50 ms doubling to
//!   2 s, reset after a session that received anything), moves to the next upstream, and
//!   subscribes again from [`LogSink::next_index`]: the sink is the only record of progress,
//!   so nothing is skipped or applied twice.
//!
//! # Trust
//!
//! The server presents [`ServerTls`] (PEM files, or a development certificate made on first
//! start by [`ServerTls::dev`]) and, given client CAs ([`ServerTls::require_clients`]),
//! accepts only followers whose certificate chains to them: mutual TLS, so only members of
//! the cluster read the log. The client checks the server against [`ClientTls`] roots and
//! the upstream's IP address (or [`ClientTls::with_server_name`]) and presents its own
//! certificate ([`ClientTls::with_identity`]); [`ClientTls::insecure_dev`] accepts any server
//! (behind a flag that says so).

mod endpoint;
mod error;
mod follow;
mod frame;
mod read_index;
mod server;
mod source;
mod tls;

use std::time::Duration;

pub use endpoint::{IDLE_TIMEOUT, KEEP_ALIVE};
pub use error::{LogStreamError, TlsError};
pub use follow::follow;
pub use frame::MAX_FRAME;
pub use read_index::ReadIndexClient;
pub use server::{serve, subscribers};
pub use source::{LogEntry, LogSink, LogSource, SnapshotSource, SourceError, Stamp};
pub use tls::{ALPN, ClientTls, DEV_CERT_FILE, DEV_KEY_FILE, ServerTls};

/// The data bytes a server asks its source for at once and puts in one `Entries` frame (and
/// the largest snapshot chunk frame).
pub const BATCH_BYTES: usize = 1 << 20;

/// The longest a subscription goes without a stamp while the source has one to give.
pub const STAMP_INTERVAL: Duration = Duration::from_millis(100);

/// The largest request frame a server accepts (and the largest read-index answer).
pub const MAX_REQUEST: usize = 64 << 10;
