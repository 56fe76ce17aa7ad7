//! `put`: one Put per request.

use mango_proto::etcdserverpb::PutRequest;
use mango_proto::etcdserverpb::kv_client::KvClient;
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
    sequential: bool,
}

impl Config {
    pub fn new(args: &KeyArgs, sequential: bool) -> Result<Self, String> {
        Ok(Config {
            keys: KeyGen::new(args.key_size, args.key_space_size)?,
            val_size: args.val_size,
            sequential,
        })
    }

    pub fn workers(&self, pool: &Pool, clients: usize) -> Vec<PutWorker> {
        let value = keys::value(self.val_size, &mut Rng::seeded_for(u64::MAX));
        (0..clients)
            .map(|i| PutWorker {
                client: kv_client(pool.channel(i)),
                keys: self.keys.clone(),
                sequential: self.sequential,
                value: value.clone(),
                rng: Rng::seeded_for(i as u64),
            })
            .collect()
    }
}

pub struct PutWorker {
    client: KvClient<Channel>,
    keys: KeyGen,
    sequential: bool,
    value: Vec<u8>,
    rng: Rng,
}

impl Worker for PutWorker {
    async fn call(&mut self, op: u64) -> Result<(), Status> {
        let request = PutRequest {
            key: self.keys.pick(op, self.sequential, &mut self.rng),
            value: self.value.clone(),
            ..Default::default()
        };
        self.client.put(request).await.map(drop)
    }
}
