//! Fuzzes etcd's request handlers: arbitrary bytes decoded as a KV, Lease or Maintenance
//! request go straight into the service, over a real store (the service-layer test node of
//! `api/tests/common`). Whatever the input, the service answers (etcd's error or a response)
//! and never panics; the store grows only by what valid writes add.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use mango_api::{ApiConfig, KvService, LeaseService};
use mango_proto::etcdserverpb::kv_server::Kv;
use mango_proto::etcdserverpb::lease_server::Lease;
use mango_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest, TxnRequest,
};
use prost::Message;

#[path = "../../tests/common/mod.rs"]
#[allow(dead_code, unused_imports, clippy::all)]
mod common;

struct Harness {
    rt: tokio::runtime::Runtime,
    kv: KvService<common::TestNode>,
    lease: LeaseService<common::TestNode>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let node = Arc::new(common::TestNode::new("http://127.0.0.1:2379".into()));
        let max = ApiConfig::default().max_request_bytes;
        Harness {
            rt,
            kv: KvService::new(node.clone(), max),
            lease: LeaseService::new(node),
        }
    })
}

fn req<T>(t: T) -> tonic::Request<T> {
    tonic::Request::new(t)
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let h = harness();
    h.rt.block_on(async {
        match kind % 8 {
            0 => {
                if let Ok(r) = RangeRequest::decode(body) {
                    let _ = h.kv.range(req(r)).await;
                }
            }
            1 => {
                if let Ok(r) = PutRequest::decode(body) {
                    let _ = h.kv.put(req(r)).await;
                }
            }
            2 => {
                if let Ok(r) = DeleteRangeRequest::decode(body) {
                    let _ = h.kv.delete_range(req(r)).await;
                }
            }
            3 => {
                if let Ok(r) = TxnRequest::decode(body) {
                    let _ = h.kv.txn(req(r)).await;
                }
            }
            4 => {
                if let Ok(r) = CompactionRequest::decode(body) {
                    let _ = h.kv.compact(req(r)).await;
                }
            }
            5 => {
                if let Ok(r) = LeaseGrantRequest::decode(body) {
                    let _ = h.lease.lease_grant(req(r)).await;
                }
            }
            6 => {
                if let Ok(r) = LeaseRevokeRequest::decode(body) {
                    let _ = h.lease.lease_revoke(req(r)).await;
                }
            }
            _ => {
                if let Ok(r) = LeaseTimeToLiveRequest::decode(body) {
                    let _ = h.lease.lease_time_to_live(req(r)).await;
                }
            }
        }
    });
});
