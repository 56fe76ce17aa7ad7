//! `watch-latency`: `--streams` Watch streams with `--watchers-per-stream` watchers each, all on
//! one key; a putter writes `--put-total` values at `--put-rate`, each carrying its send time.
//! Every event received by every watcher is one op, its latency = receipt - send.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mango_proto::etcdserverpb::watch_client::WatchClient;
use mango_proto::etcdserverpb::watch_request::RequestUnion;
use mango_proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use super::{Run, kv_client};
use crate::connect::Pool;
use crate::progress::Progress;
use crate::schedule::Schedule;
use crate::stats::Stats;

/// The key every watcher watches and the putter writes.
pub const KEY: &[u8] = b"mango-loadgen/watch-latency";
/// Width of the send timestamp at the start of each value: nanoseconds, zero-padded decimal.
const STAMP_LEN: usize = 20;

#[derive(Debug)]
pub struct Config {
    streams: u32,
    watchers_per_stream: u32,
    put_rate: f64,
    put_total: u64,
    val_size: usize,
    /// Per-put timeout, and how long to wait for stragglers after the last put.
    timeout: Duration,
}

impl Config {
    pub fn new(
        streams: u32,
        watchers_per_stream: u32,
        put_rate: f64,
        put_total: u64,
        val_size: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        if !(put_rate.is_finite() && put_rate > 0.0) {
            return Err(format!(
                "--put-rate must be a positive number, got {put_rate}"
            ));
        }
        Ok(Config {
            streams,
            watchers_per_stream,
            put_rate,
            put_total,
            val_size: val_size.max(STAMP_LEN),
            timeout,
        })
    }

    pub fn describe(&self, conns: u32) -> String {
        format!(
            "streams {}, watchers/stream {}, conns {conns}, {} puts at {}/s",
            self.streams, self.watchers_per_stream, self.put_total, self.put_rate
        )
    }
}

/// A value of `size` bytes (>= 20) starting with `since_base` as zero-padded nanoseconds.
pub fn stamp(since_base: Duration, size: usize) -> Vec<u8> {
    let mut v = format!("{:0w$}", since_base.as_nanos(), w = STAMP_LEN).into_bytes();
    v.resize(size.max(STAMP_LEN), b'.');
    v
}

/// The send time carried by a value made by [`stamp`].
pub fn parse_stamp(value: &[u8]) -> Option<Duration> {
    let digits = std::str::from_utf8(value.get(..STAMP_LEN)?).ok()?;
    Some(Duration::from_nanos(digits.parse().ok()?))
}

/// What the putter tells the streams once it is done.
#[derive(Debug, Clone, Copy)]
struct PutsDone {
    /// Puts that succeeded: the events each watcher should see.
    ok: u64,
    /// Stop waiting for missing events at this time.
    give_up: Instant,
}

/// One stream's result.
struct StreamResult {
    stats: Stats,
    /// Events seen by each watcher that was created.
    per_watcher: Vec<u64>,
    last_event: Option<Instant>,
}

pub async fn run(cfg: &Config, pool: &Pool, progress: Arc<Progress>) -> Run {
    let base = Instant::now();
    let mut stats = Stats::new();
    // Open every stream and wait until all its watchers exist before the first put.
    let mut opened = Vec::new();
    for s in 0..cfg.streams as usize {
        let client = WatchClient::new(pool.channel(s));
        let open = open_stream(client, cfg.watchers_per_stream);
        match tokio::time::timeout(cfg.timeout, open).await {
            Ok(Ok(stream)) => opened.push(stream),
            Ok(Err(status)) => stats.error(status.code()),
            Err(_) => stats.error(Code::DeadlineExceeded),
        }
    }
    let watchers_missing = u64::from(cfg.streams * cfg.watchers_per_stream)
        - opened.iter().map(|s| s.2.len() as u64).sum::<u64>();

    let (done_tx, done_rx) = watch::channel(None::<PutsDone>);
    let receivers: Vec<_> = opened
        .into_iter()
        .map(|(tx, rx, ids)| {
            let task = receive(rx, ids, base, done_rx.clone(), Arc::clone(&progress));
            tokio::spawn(async move {
                let result = task.await;
                drop(tx); // keep the request side open until the stream is done
                result
            })
        })
        .collect();

    // The putter: open loop at --put-rate, one put at a time.
    let start = Instant::now();
    let schedule = Schedule::new(cfg.put_rate);
    let mut kv = kv_client(pool.channel(0));
    let mut puts_ok = 0;
    for k in 0..cfg.put_total {
        tokio::time::sleep_until((start + schedule.offset(k)).into()).await;
        let request = PutRequest {
            key: KEY.to_vec(),
            value: stamp(base.elapsed(), cfg.val_size),
            ..Default::default()
        };
        match tokio::time::timeout(cfg.timeout, kv.put(request)).await {
            Ok(Ok(_)) => puts_ok += 1,
            Ok(Err(status)) => stats.error(status.code()),
            Err(_) => stats.error(Code::DeadlineExceeded),
        }
    }
    let _ = done_tx.send(Some(PutsDone {
        ok: puts_ok,
        give_up: Instant::now() + cfg.timeout,
    }));

    let mut last = None;
    for task in receivers {
        match task.await {
            Ok(r) => {
                stats.merge(&r.stats);
                let missing: u64 = r
                    .per_watcher
                    .iter()
                    .map(|&seen| puts_ok.saturating_sub(seen))
                    .sum();
                stats.error_named("DeadlineExceeded", missing);
                last = last.max(r.last_event);
            }
            Err(e) => panic!("a watch stream task failed: {e}"),
        }
    }
    // Watchers never created miss every event.
    stats.error_named("DeadlineExceeded", watchers_missing * puts_ok);
    Run {
        stats,
        elapsed: last.unwrap_or_else(Instant::now).duration_since(start),
    }
}

type Opened = (
    mpsc::Sender<WatchRequest>,
    Streaming<WatchResponse>,
    Vec<i64>,
);

/// Opens one Watch stream with `watchers` watchers on [`KEY`] and waits for their creation.
async fn open_stream(
    mut client: WatchClient<tonic::transport::Channel>,
    watchers: u32,
) -> Result<Opened, Status> {
    let (tx, rx) = mpsc::channel(watchers as usize + 1);
    // Queue the creates before the call: etcd sends response headers only with the first
    // answer.
    for _ in 0..watchers {
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: KEY.to_vec(),
                ..Default::default()
            })),
        };
        tx.try_send(create)
            .map_err(|_| Status::internal("watch request queue full"))?;
    }
    let mut stream = client.watch(ReceiverStream::new(rx)).await?.into_inner();
    let mut ids = Vec::with_capacity(watchers as usize);
    while ids.len() < watchers as usize {
        let Some(response) = stream.message().await? else {
            return Err(Status::unavailable("watch stream ended during creation"));
        };
        if response.canceled {
            return Err(Status::failed_precondition(format!(
                "watch refused: {}",
                response.cancel_reason
            )));
        }
        if response.created {
            ids.push(response.watch_id);
        }
    }
    Ok((tx, stream, ids))
}

/// Receives events on one stream until every watcher has seen every successful put, or the
/// putter's grace period is over.
async fn receive(
    mut stream: Streaming<WatchResponse>,
    ids: Vec<i64>,
    base: Instant,
    mut done: watch::Receiver<Option<PutsDone>>,
    progress: Arc<Progress>,
) -> StreamResult {
    let mut stats = Stats::new();
    let mut seen: HashMap<i64, u64> = ids.iter().map(|&id| (id, 0)).collect();
    let mut last_event = None;
    loop {
        let finished = *done.borrow();
        if let Some(f) = finished
            && seen.values().all(|&n| n >= f.ok)
        {
            break;
        }
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(response)) => {
                    let received = base.elapsed();
                    if response.canceled {
                        stats.error(Code::Cancelled);
                        seen.remove(&response.watch_id);
                    }
                    for event in &response.events {
                        let Some(sent) = event.kv.as_ref().and_then(|kv| parse_stamp(&kv.value))
                        else {
                            continue;
                        };
                        stats.ok(received.saturating_sub(sent));
                        progress.ok();
                        *seen.entry(response.watch_id).or_default() += 1;
                        last_event = Some(Instant::now());
                    }
                }
                Ok(None) => {
                    stats.error(Code::Unavailable);
                    break;
                }
                Err(status) => {
                    stats.error(status.code());
                    break;
                }
            },
            wake = give_up(&mut done, finished) => match wake {
                Wake::Recheck => continue,
                Wake::GiveUp => break,
            },
        }
    }
    StreamResult {
        stats,
        per_watcher: ids
            .iter()
            .map(|id| seen.get(id).copied().unwrap_or(0))
            .collect(),
        last_event,
    }
}

/// Why [`give_up`] returned.
enum Wake {
    /// The putter just reported its total: check whether every watcher has it all.
    Recheck,
    /// The grace period after the last put is over.
    GiveUp,
}

/// Waits for the putter's report, then for the end of its grace period.
async fn give_up(done: &mut watch::Receiver<Option<PutsDone>>, known: Option<PutsDone>) -> Wake {
    match known {
        Some(f) => {
            tokio::time::sleep_until(f.give_up.into()).await;
            Wake::GiveUp
        }
        None => match done.changed().await {
            Ok(()) => Wake::Recheck,
            Err(_) => Wake::GiveUp,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_pad_to_size() {
        let d = Duration::from_nanos(123_456_789_012);
        let v = stamp(d, 64);
        assert_eq!(v.len(), 64);
        assert_eq!(parse_stamp(&v), Some(d));
        assert_eq!(stamp(d, 4).len(), STAMP_LEN, "never shorter than the stamp");
        assert_eq!(parse_stamp(b"short"), None);
        assert_eq!(parse_stamp(b"xxxxxxxxxxxxxxxxxxxxxxxx"), None);
    }
}
