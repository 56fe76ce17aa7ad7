//! `txn-put`: one Txn per request, made of `--txn-ops` puts on distinct random keys.

use mango_proto::etcdserverpb::kv_client::KvClient;
use mango_proto::etcdserverpb::request_op::Request as Op;
use mango_proto::etcdserverpb::{PutRequest, RequestOp, TxnRequest};
use tonic::Status;
use tonic::transport::Channel;

use super::kv_client;
use crate::cli::KeyArgs;
use crate::connect::Pool;
use crate::keys::{self, KeyGen, Rng};
use crate::runner::Worker;

#[derive(Debug)]
pub struct Config {
    keys: KeyGen,
    val_size: usize,
    txn_ops: u64,
}

impl Config {
    pub fn new(args: &KeyArgs, txn_ops: u64) -> Result<Self, String> {
        let keys = KeyGen::new(args.key_size, args.key_space_size)?;
        if txn_ops > keys.space() {
            return Err(format!(
                "--txn-ops {txn_ops} exceeds --key-space-size {}: a txn may not put the same \
                 key twice",
                keys.space()
            ));
        }
        Ok(Config {
            keys,
            val_size: args.val_size,
            txn_ops,
        })
    }

    pub fn workers(&self, pool: &Pool, clients: usize) -> Vec<TxnPutWorker> {
        let value = keys::value(self.val_size, &mut Rng::seeded_for(u64::MAX));
        (0..clients)
            .map(|i| TxnPutWorker {
                client: kv_client(pool.channel(i)),
                keys: self.keys.clone(),
                txn_ops: self.txn_ops,
                value: value.clone(),
                rng: Rng::seeded_for(i as u64),
            })
            .collect()
    }
}

pub struct TxnPutWorker {
    client: KvClient<Channel>,
    keys: KeyGen,
    txn_ops: u64,
    value: Vec<u8>,
    rng: Rng,
}

/// A txn with no comparisons whose success branch puts `value` under every key.
pub fn txn_of_puts(keys: Vec<Vec<u8>>, value: &[u8]) -> TxnRequest {
    TxnRequest {
        success: keys
            .into_iter()
            .map(|key| RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key,
                    value: value.to_vec(),
                    ..Default::default()
                })),
            })
            .collect(),
        ..Default::default()
    }
}

impl Worker for TxnPutWorker {
    async fn call(&mut self, _op: u64) -> Result<(), Status> {
        let keys = self.keys.distinct(self.txn_ops, &mut self.rng);
        let request = txn_of_puts(keys, &self.value);
        self.client.txn(request).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_ops_must_fit_the_key_space() {
        let args = KeyArgs {
            key_size: 8,
            val_size: 8,
            key_space_size: 3,
        };
        assert!(Config::new(&args, 3).is_ok());
        assert!(Config::new(&args, 4).is_err());
    }

    #[test]
    fn txn_puts_every_key_unconditionally() {
        let t = txn_of_puts(vec![b"a".to_vec(), b"b".to_vec()], b"v");
        assert!(t.compare.is_empty() && t.failure.is_empty());
        assert_eq!(t.success.len(), 2);
        match &t.success[1].request {
            Some(Op::RequestPut(p)) => {
                assert_eq!((&p.key[..], &p.value[..]), (&b"b"[..], &b"v"[..]))
            }
            other => panic!("{other:?}"),
        }
    }
}
