//! Raw KV calls over gRPC, with mango's `mango-consistency` metadata (which etcd's clients
//! cannot set).

use std::time::Duration;

use mango_proto::etcdserverpb::kv_client::KvClient;
use mango_proto::etcdserverpb::{PutRequest, RangeRequest, RangeResponse};
use tonic::transport::Channel;

use crate::wait::wait_until_async;

/// A KV client of `endpoint` (`ip:port`), once it accepts connections (within 10 s).
pub async fn kv(endpoint: &str) -> KvClient<Channel> {
    let url = format!("http://{endpoint}");
    wait_until_async(
        Duration::from_secs(10),
        format!("a connection to {endpoint}"),
        || KvClient::connect(url.clone()),
    )
    .await
}

/// A Range of `key` with a consistency level (`linearizable`, `learner-linearizable`,
/// `bounded=<ms>`, `stale`).
pub async fn get(
    client: &mut KvClient<Channel>,
    key: &str,
    consistency: &str,
) -> Result<RangeResponse, tonic::Status> {
    let mut req = tonic::Request::new(RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    });
    req.metadata_mut().insert(
        "mango-consistency",
        consistency.parse().expect("an ASCII consistency level"),
    );
    client.range(req).await.map(|r| r.into_inner())
}

/// Puts `key` = `value`; the revision of the write. Panics if the put fails.
pub async fn put(client: &mut KvClient<Channel>, key: &str, value: &str) -> i64 {
    client
        .put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"))
        .into_inner()
        .header
        .expect("a response header")
        .revision
}

/// Waits until `endpoint` serves `key` = `value` with a stale read.
pub async fn wait_value(endpoint: &str, key: &str, value: &str, timeout: Duration) {
    let c = kv(endpoint).await;
    wait_until_async(
        timeout,
        format!("{endpoint} to serve {key}={value}"),
        || {
            let mut c = c.clone();
            async move {
                get(&mut c, key, "stale")
                    .await
                    .is_ok_and(|r| r.kvs.first().is_some_and(|kv| kv.value == value.as_bytes()))
            }
        },
    )
    .await
}
