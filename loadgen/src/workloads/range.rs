//! `range`: one Range per request over a fixed key, range or prefix.

use mango_proto::etcdserverpb::RangeRequest;
use mango_proto::etcdserverpb::kv_client::KvClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::kv_client;
use crate::connect::Pool;
use crate::consistency::Consistency;
use crate::keys::prefix_end;
use crate::runner::Worker;

#[derive(Debug)]
pub struct Config {
    request: RangeRequest,
    metadata: Option<AsciiMetadataValue>,
}

impl Config {
    pub fn new(
        key: &str,
        end: Option<&str>,
        prefix: bool,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Self, String> {
        if limit < 0 {
            return Err(format!("--limit must not be negative, got {limit}"));
        }
        let range_end = match (end, prefix) {
            (_, true) => prefix_end(key.as_bytes()),
            (Some(end), false) => end.as_bytes().to_vec(),
            (None, false) => Vec::new(),
        };
        Ok(Config {
            request: RangeRequest {
                key: key.as_bytes().to_vec(),
                range_end,
                limit,
                serializable: consistency.serializable(),
                ..Default::default()
            },
            metadata: consistency.metadata_value(),
        })
    }

    pub fn workers(&self, pool: &Pool, clients: usize) -> Vec<RangeWorker> {
        (0..clients)
            .map(|i| RangeWorker {
                client: kv_client(pool.channel(i)),
                request: self.request.clone(),
                metadata: self.metadata.clone(),
            })
            .collect()
    }
}

pub struct RangeWorker {
    client: KvClient<Channel>,
    request: RangeRequest,
    metadata: Option<AsciiMetadataValue>,
}

impl Worker for RangeWorker {
    async fn call(&mut self, _op: u64) -> Result<(), Status> {
        let mut request = Request::new(self.request.clone());
        Consistency::apply(&self.metadata, request.metadata_mut());
        self.client.range(request).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_single_key_range_and_prefix_requests() {
        let c = Config::new("k", None, false, 0, Consistency::Linearizable).unwrap();
        assert_eq!(c.request.key, b"k");
        assert!(c.request.range_end.is_empty());
        assert!(!c.request.serializable);
        assert!(c.metadata.is_none());

        let c = Config::new("a", Some("b"), false, 5, Consistency::Serializable).unwrap();
        assert_eq!(c.request.range_end, b"b");
        assert_eq!(c.request.limit, 5);
        assert!(c.request.serializable);

        let c = Config::new("foo/", None, true, 0, Consistency::Stale).unwrap();
        assert_eq!(c.request.range_end, b"foo0");
        assert!(
            !c.request.serializable,
            "mango levels travel as metadata only"
        );
        assert_eq!(c.metadata.unwrap().to_str().unwrap(), "stale");

        assert!(Config::new("k", None, false, -1, Consistency::Linearizable).is_err());
    }
}
