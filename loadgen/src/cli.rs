//! Command line: global flags and one subcommand per workload, mirroring etcd's `benchmark`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::consistency::Consistency;

/// etcd v3 load generator: drives etcd and mango alike over the etcd v3 gRPC API.
#[derive(Debug, Parser)]
#[command(name = "mango-loadgen", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub workload: Workload,
}

/// Flags shared by every workload; they may stand before or after the subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Comma-separated endpoints: host:port or http://host:port.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Number of gRPC channels (HTTP/2 connections), at least one per endpoint, spread
    /// round-robin over the endpoints and shared round-robin by the clients.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub conns: u32,
    /// Number of concurrent clients (workers).
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub clients: u32,
    /// Total number of requests [default: 10000 unless --duration is given].
    #[arg(long, global = true, conflicts_with = "duration")]
    pub total: Option<u64>,
    /// Run for this many seconds instead of a fixed total.
    #[arg(long, global = true)]
    pub duration: Option<f64>,
    /// Open loop: issue requests at this aggregate rate (requests/s) on a fixed schedule;
    /// latency is measured from each request's intended start (coordinated omission).
    #[arg(long, global = true)]
    pub rate: Option<f64>,
    /// Per-request timeout in seconds; a request that takes longer counts as DeadlineExceeded.
    #[arg(long, global = true, default_value_t = 10.0)]
    pub request_timeout: f64,
    /// Print exactly one JSON line with the results on stdout (and no progress line).
    #[arg(long, global = true)]
    pub json: bool,
}

/// How much work a run does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// A fixed number of requests across all clients.
    Total(u64),
    /// Issue requests until this much time has passed.
    Duration(Duration),
}

impl Global {
    /// The run's size: `--total`, `--duration` or the default of 10000 requests.
    pub fn stop(&self) -> Result<Stop, String> {
        match (self.total, self.duration) {
            (Some(_), Some(_)) => Err("give --total or --duration, not both".into()),
            (Some(n), None) => Ok(Stop::Total(n)),
            (None, Some(s)) if s.is_finite() && s > 0.0 => {
                Ok(Stop::Duration(Duration::from_secs_f64(s)))
            }
            (None, Some(s)) => Err(format!("--duration must be a positive number, got {s}")),
            (None, None) => Ok(Stop::Total(10_000)),
        }
    }

    /// The open-loop rate, if any, checked to be positive and finite.
    pub fn rate(&self) -> Result<Option<f64>, String> {
        match self.rate {
            Some(r) if !(r.is_finite() && r > 0.0) => {
                Err(format!("--rate must be a positive number, got {r}"))
            }
            r => Ok(r),
        }
    }

    /// The per-request timeout.
    pub fn request_timeout(&self) -> Result<Duration, String> {
        let t = self.request_timeout;
        if t.is_finite() && t > 0.0 {
            Ok(Duration::from_secs_f64(t))
        } else {
            Err(format!(
                "--request-timeout must be a positive number, got {t}"
            ))
        }
    }
}

/// Key and value shape shared by the writing workloads.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Key size in bytes (keys are zero-padded decimal indexes into the key space).
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_space_size: u64,
}

#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Put keys (etcd benchmark `put`).
    Put {
        #[command(flatten)]
        keys: KeyArgs,
        /// Use keys 0, 1, 2, ... (modulo the key space) instead of random keys.
        #[arg(long)]
        sequential_keys: bool,
    },
    /// Range reads (etcd benchmark `range`).
    Range {
        /// The key to read (with --prefix: the prefix).
        key: String,
        /// Optional end of the range (exclusive).
        end: Option<String>,
        /// Read every key with the given prefix.
        #[arg(long, conflicts_with = "end")]
        prefix: bool,
        /// Maximum number of keys returned (0: no limit).
        #[arg(long, default_value_t = 0)]
        limit: i64,
        /// l (linearizable), s (serializable), or one of mango's levels sent as gRPC metadata
        /// `mango-consistency`: learner-linearizable, stale, bounded=<ms>.
        #[arg(long, default_value = "l")]
        consistency: Consistency,
    },
    /// Transactions made of puts (etcd benchmark `txn-put`).
    TxnPut {
        #[command(flatten)]
        keys: KeyArgs,
        /// Puts per transaction (distinct keys).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        txn_ops: u64,
    },
    /// Single-op transactions, each a read or a write (etcd benchmark `txn-mixed`).
    TxnMixed {
        #[command(flatten)]
        keys: KeyArgs,
        /// Reads per write.
        #[arg(long, default_value_t = 1.0)]
        rw_ratio: f64,
        /// Consistency of the reads (as for `range`).
        #[arg(long, default_value = "l")]
        consistency: Consistency,
    },
    /// Watch event latency: watchers on one key, a putter writes timestamped values.
    ///
    /// Each event seen by each watcher is one op, its latency = receipt - send. Sized by
    /// --put-total and paced by --put-rate (--total, --duration, --rate and --clients do not
    /// apply).
    WatchLatency {
        /// Number of watch streams (gRPC Watch calls).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        streams: u32,
        /// Watchers per stream, all on the same key.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        watchers_per_stream: u32,
        /// Puts per second.
        #[arg(long, default_value_t = 100.0)]
        put_rate: f64,
        /// Number of puts; each watcher should see every one of them.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        put_total: u64,
        /// Value size in bytes (at least the 20-byte timestamp).
        #[arg(long, default_value_t = 32)]
        val_size: usize,
    },
    /// Lease keep-alive throughput over LeaseKeepAlive streams.
    ///
    /// Each client grants a lease, then renews it over its own stream, one request in flight
    /// at a time; one op is one keep-alive round trip. The leases are revoked at the end.
    LeaseKeepalive {
        /// TTL of the granted leases, in seconds.
        #[arg(long, default_value_t = 60)]
        ttl: i64,
    },
}

impl Workload {
    /// The name reported in the results (the subcommand's name).
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Put { .. } => "put",
            Workload::Range { .. } => "range",
            Workload::TxnPut { .. } => "txn-put",
            Workload::TxnMixed { .. } => "txn-mixed",
            Workload::WatchLatency { .. } => "watch-latency",
            Workload::LeaseKeepalive { .. } => "lease-keepalive",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mango-loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() -> Result<(), clap::Error> {
        let a = parse(&["--clients", "4", "put", "--total", "5", "--json"])?;
        assert_eq!(a.global.clients, 4);
        assert_eq!(a.global.stop(), Ok(Stop::Total(5)));
        assert!(a.global.json);
        let b = parse(&["--endpoints", "a:1,http://b:2", "range", "foo", "--prefix"])?;
        assert_eq!(b.global.endpoints, vec!["a:1", "http://b:2"]);
        assert_eq!(b.global.stop(), Ok(Stop::Total(10_000)));
        Ok(())
    }

    #[test]
    fn total_and_duration_conflict() {
        assert!(parse(&["put", "--total", "5", "--duration", "1"]).is_err());
    }

    #[test]
    fn duration_and_rate_are_checked() -> Result<(), clap::Error> {
        let a = parse(&["put", "--duration", "1.5", "--rate", "100"])?;
        assert_eq!(
            a.global.stop(),
            Ok(Stop::Duration(Duration::from_millis(1500)))
        );
        assert_eq!(a.global.rate(), Ok(Some(100.0)));
        let b = parse(&["put", "--duration", "0", "--rate=-1"])?;
        assert!(b.global.stop().is_err());
        assert!(b.global.rate().is_err());
        Ok(())
    }

    #[test]
    fn range_takes_a_consistency_level() -> Result<(), clap::Error> {
        let a = parse(&["range", "k", "--consistency", "bounded=250"])?;
        match a.workload {
            Workload::Range { consistency, .. } => {
                assert_eq!(consistency, Consistency::Bounded(250))
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(parse(&["range", "k", "--consistency", "x"]).is_err());
        Ok(())
    }
}
