//! Bounds on what a client may send: the size of a replicated request (etcd's
//! `--max-request-bytes`) and the gRPC message size derived from it.

use mango_proto::mangopb::raft_request::Request;
use tonic::Status;

use crate::error::request_too_large;

/// etcd's interval of watch progress notifications: 10 minutes.
pub const DEFAULT_WATCH_PROGRESS_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(600);

/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// What etcd lets a gRPC message carry beyond `max_request_bytes` (its `grpcOverheadBytes`).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The largest encoding of `RaftRequest.id` (field key and a 10-byte varint), which the node
/// adds to the request it proposes; counted so that the limit holds for the whole entry.
const MAX_ID_FIELD_BYTES: usize = 1 + 10;

/// Configuration of the etcd services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// The largest replicated request accepted, in bytes (etcd's `--max-request-bytes`). A
    /// Put, DeleteRange, writing Txn or Compaction whose `mangopb.RaftRequest` would be larger
    /// is refused with "etcdserver: request is too large".
    pub max_request_bytes: usize,
    /// How often a watcher that asked for progress notifications and saw no event gets an
    /// empty response with the current revision (etcd's 10 minutes).
    pub watch_progress_interval: std::time::Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            watch_progress_interval: DEFAULT_WATCH_PROGRESS_INTERVAL,
        }
    }
}

impl ApiConfig {
    /// The largest gRPC message the server decodes: `max_request_bytes` plus etcd's overhead
    /// allowance, so that a request a little over the limit gets etcd's own error rather than
    /// a transport one.
    pub fn max_decoding_message_size(&self) -> usize {
        self.max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES)
    }
}

/// The size of the `mangopb.RaftRequest` that would carry `request`, counting the largest id.
pub fn raft_request_len(request: &Request) -> usize {
    request.encoded_len() + MAX_ID_FIELD_BYTES
}

/// Refuses `request` if its replicated form exceeds `max_request_bytes` (etcd checks the
/// encoded Raft request the same way before proposing it).
pub fn check_request_size(request: &Request, max_request_bytes: usize) -> Result<(), Status> {
    if raft_request_len(request) > max_request_bytes {
        return Err(request_too_large());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mango_proto::etcdserverpb::PutRequest;
    use mango_proto::mangopb::RaftRequest;
    use prost::Message;
    use tonic::Code;

    use super::*;

    fn put(value_len: usize) -> Request {
        Request::Put(PutRequest {
            key: b"k".to_vec(),
            value: vec![7; value_len],
            ..Default::default()
        })
    }

    #[test]
    fn size_counts_the_whole_raft_request_with_the_largest_id() {
        for len in [0, 1, 127, 128, 100_000] {
            let request = put(len);
            let encoded = RaftRequest {
                id: u64::MAX,
                auth: None,
                request: Some(request.clone()),
            }
            .encoded_len();
            assert_eq!(raft_request_len(&request), encoded, "value of {len} bytes");
        }
    }

    #[test]
    fn requests_up_to_the_limit_pass_and_larger_ones_are_refused() {
        let request = put(1000);
        let len = raft_request_len(&request);
        assert!(check_request_size(&request, len).is_ok());
        assert!(check_request_size(&request, len + 1).is_ok());
        let err = check_request_size(&request, len - 1).expect_err("one byte over the limit");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(err.message(), "etcdserver: request is too large");
    }

    #[test]
    fn default_limits_are_etcds() {
        let config = ApiConfig::default();
        assert_eq!(config.max_request_bytes, 1_572_864);
        assert_eq!(config.max_decoding_message_size(), 1_572_864 + 524_288);
        let just_over = put(DEFAULT_MAX_REQUEST_BYTES);
        assert!(check_request_size(&just_over, config.max_request_bytes).is_err());
        let under = put(DEFAULT_MAX_REQUEST_BYTES - 64);
        assert!(check_request_size(&under, config.max_request_bytes).is_ok());
    }
}
