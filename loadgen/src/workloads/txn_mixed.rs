//! `txn-mixed`: one single-op Txn per request, a read with probability r/(r+1) for
//! `--rw-ratio r`, else a write, each on a random key.

use mango_proto::etcdserverpb::kv_client::KvClient;
use mango_proto::etcdserverpb::request_op::Request as Op;
use mango_proto::etcdserverpb::{PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::kv_client;
use crate::cli::KeyArgs;
use crate::connect::Pool;
use crate::consistency::Consistency;
use crate::keys::{self, KeyGen, Rng};
use crate::runner::Worker;

#[derive(Debug)]
pub struct Config {
    keys: KeyGen,
    val_size: usize,
    read_fraction: f64,
    consistency: Consistency,
}

impl Config {
    pub fn new(args: &KeyArgs, rw_ratio: f64, consistency: Consistency) -> Result<Self, String> {
        if !(rw_ratio.is_finite() && rw_ratio >= 0.0) {
            return Err(format!("--rw-ratio must be a number >= 0, got {rw_ratio}"));
        }
        Ok(Config {
            keys: KeyGen::new(args.key_size, args.key_space_size)?,
            val_size: args.val_size,
            read_fraction: read_fraction(rw_ratio),
            consistency,
        })
    }

    pub fn workers(&self, pool: &Pool, clients: usize) -> Vec<TxnMixedWorker> {
        let value = keys::value(self.val_size, &mut Rng::seeded_for(u64::MAX));
        (0..clients)
            .map(|i| TxnMixedWorker {
                client: kv_client(pool.channel(i)),
                keys: self.keys.clone(),
                value: value.clone(),
                read_fraction: self.read_fraction,
                serializable: self.consistency.serializable(),
                metadata: self.consistency.metadata_value(),
                rng: Rng::seeded_for(i as u64),
            })
            .collect()
    }
}

/// The share of reads for `r` reads per write.
pub fn read_fraction(rw_ratio: f64) -> f64 {
    rw_ratio / (rw_ratio + 1.0)
}

pub struct TxnMixedWorker {
    client: KvClient<Channel>,
    keys: KeyGen,
    value: Vec<u8>,
    read_fraction: f64,
    serializable: bool,
    metadata: Option<AsciiMetadataValue>,
    rng: Rng,
}

impl Worker for TxnMixedWorker {
    async fn call(&mut self, op: u64) -> Result<(), Status> {
        let key = self.keys.pick(op, false, &mut self.rng);
        let read = self.rng.unit() < self.read_fraction;
        let op = if read {
            Op::RequestRange(RangeRequest {
                key,
                serializable: self.serializable,
                ..Default::default()
            })
        } else {
            Op::RequestPut(PutRequest {
                key,
                value: self.value.clone(),
                ..Default::default()
            })
        };
        let mut request = Request::new(TxnRequest {
            success: vec![RequestOp { request: Some(op) }],
            ..Default::default()
        });
        if read {
            Consistency::apply(&self.metadata, request.metadata_mut());
        }
        self.client.txn(request).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_fraction_follows_the_ratio() {
        assert_eq!(read_fraction(1.0), 0.5);
        assert_eq!(read_fraction(0.0), 0.0);
        assert_eq!(read_fraction(3.0), 0.75);
        let args = KeyArgs {
            key_size: 8,
            val_size: 8,
            key_space_size: 10,
        };
        assert!(Config::new(&args, -1.0, Consistency::Linearizable).is_err());
        assert!(Config::new(&args, f64::NAN, Consistency::Linearizable).is_err());
    }
}
