//! The workloads: each turns its command-line arguments into a checked configuration, then
//! runs against a pool of channels.

pub mod lease_keepalive;
pub mod put;
pub mod range;
pub mod txn_mixed;
pub mod txn_put;
pub mod watch_latency;

use std::sync::Arc;
use std::time::Duration;

use mango_proto::etcdserverpb::kv_client::KvClient;
use tonic::transport::Channel;

use crate::cli::{Cli, Global, Stop, Workload};
use crate::connect::Pool;
use crate::progress::Progress;
use crate::runner::{self, Plan, Worker};
use crate::stats::Stats;

/// Largest response a client accepts (etcd's own client allows up to 2 GiB; ranges over big
/// prefixes need more than tonic's 4 MiB default).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A KV client on `channel` that accepts large responses.
pub fn kv_client(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

/// What a workload measured.
#[derive(Debug)]
pub struct Run {
    pub stats: Stats,
    pub elapsed: Duration,
}

enum Kind {
    Put(put::Config),
    Range(range::Config),
    TxnPut(txn_put::Config),
    TxnMixed(txn_mixed::Config),
    WatchLatency(watch_latency::Config),
    LeaseKeepalive(lease_keepalive::Config),
}

/// A checked workload, ready to run once connected.
pub struct Job {
    pub name: &'static str,
    clients: usize,
    plan: Plan,
    kind: Kind,
}

impl Job {
    /// Checks the arguments; an error here is a usage error.
    pub fn from_cli(cli: &Cli) -> Result<Job, String> {
        let g = &cli.global;
        let plan = Plan {
            stop: g.stop()?,
            rate: g.rate()?,
            timeout: g.request_timeout()?,
        };
        let kind = match &cli.workload {
            Workload::Put {
                keys,
                sequential_keys,
            } => Kind::Put(put::Config::new(keys, *sequential_keys)?),
            Workload::Range {
                key,
                end,
                prefix,
                limit,
                consistency,
            } => Kind::Range(range::Config::new(
                key,
                end.as_deref(),
                *prefix,
                *limit,
                *consistency,
            )?),
            Workload::TxnPut { keys, txn_ops } => {
                Kind::TxnPut(txn_put::Config::new(keys, *txn_ops)?)
            }
            Workload::TxnMixed {
                keys,
                rw_ratio,
                consistency,
            } => Kind::TxnMixed(txn_mixed::Config::new(keys, *rw_ratio, *consistency)?),
            Workload::WatchLatency {
                streams,
                watchers_per_stream,
                put_rate,
                put_total,
                val_size,
            } => {
                if g.total.is_some() || g.duration.is_some() || g.rate.is_some() {
                    return Err(
                        "watch-latency is sized by --put-total and paced by --put-rate; \
                                --total, --duration and --rate do not apply"
                            .into(),
                    );
                }
                Kind::WatchLatency(watch_latency::Config::new(
                    *streams,
                    *watchers_per_stream,
                    *put_rate,
                    *put_total,
                    *val_size,
                    plan.timeout,
                )?)
            }
            Workload::LeaseKeepalive { ttl } => {
                Kind::LeaseKeepalive(lease_keepalive::Config::new(*ttl)?)
            }
        };
        Ok(Job {
            name: cli.workload.name(),
            clients: g.clients as usize,
            plan,
            kind,
        })
    }

    /// One line on how the run was set up, for the readable summary.
    pub fn describe(&self, g: &Global) -> String {
        let size = match self.plan.stop {
            Stop::Total(n) => format!("total {n}"),
            Stop::Duration(d) => format!("duration {:.1}s", d.as_secs_f64()),
        };
        let pacing = match self.plan.rate {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop".to_owned(),
        };
        match &self.kind {
            Kind::WatchLatency(w) => w.describe(g.conns),
            _ => format!("clients {}, conns {}, {size}, {pacing}", g.clients, g.conns),
        }
    }

    /// Runs the workload to completion. Request failures are counted, never returned.
    pub async fn run(self, pool: &Pool, progress: Arc<Progress>) -> Run {
        let (clients, plan) = (self.clients, self.plan);
        match self.kind {
            Kind::Put(c) => drive(plan, c.workers(pool, clients), progress).await,
            Kind::Range(c) => drive(plan, c.workers(pool, clients), progress).await,
            Kind::TxnPut(c) => drive(plan, c.workers(pool, clients), progress).await,
            Kind::TxnMixed(c) => drive(plan, c.workers(pool, clients), progress).await,
            Kind::WatchLatency(c) => watch_latency::run(&c, pool, progress).await,
            Kind::LeaseKeepalive(c) => c.run(pool, clients, plan, progress).await,
        }
    }
}

/// Runs request/response workers and keeps only the measurements.
async fn drive<W: Worker>(plan: Plan, workers: Vec<W>, progress: Arc<Progress>) -> Run {
    let out = runner::run(plan, workers, progress).await;
    Run {
        stats: out.stats,
        elapsed: out.elapsed,
    }
}
