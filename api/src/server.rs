//! Assembles the services into one gRPC server: KV, Maintenance, Cluster, Lease and the standard
//! gRPC health service, with etcd's message size limits.

use std::future::Future;
use std::sync::Arc;

use mango_proto::etcdserverpb::auth_server::AuthServer;
use mango_proto::etcdserverpb::cluster_server::ClusterServer;
use mango_proto::etcdserverpb::kv_server::KvServer;
use mango_proto::etcdserverpb::lease_server::LeaseServer;
use mango_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use mango_proto::etcdserverpb::watch_server::WatchServer;
use mango_proto::v3electionpb::election_server::ElectionServer;
use mango_proto::v3lockpb::lock_server::LockServer;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};
use tonic_health::server::HealthReporter;

use crate::auth::AuthService;
use crate::cluster::ClusterService;
use crate::election::ElectionService;
use crate::kv::KvService;
use crate::lease::LeaseService;
use crate::limits::ApiConfig;
use crate::lock::LockService;
use crate::maintenance::MaintenanceService;
use crate::node::EtcdNode;
use crate::watch::WatchService;

/// The etcd services over `node`, plus `grpc.health.v1.Health` (the overall service `""`
/// starts SERVING). The returned reporter changes what the health service answers, e.g. NOT
/// SERVING while the node shuts down. Every service decodes messages of up to
/// [`ApiConfig::max_decoding_message_size`] and encodes any size (a Range answer is bounded by
/// the client's limit, not the server's, as in etcd).
pub fn routes<N: EtcdNode>(node: Arc<N>, config: &ApiConfig) -> (Routes, HealthReporter) {
    let max_decoding = config.max_decoding_message_size();
    let kv = KvServer::new(KvService::new(node.clone(), config.max_request_bytes))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(usize::MAX);
    let maintenance = MaintenanceServer::new(MaintenanceService::new(node.clone()))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(usize::MAX);
    let cluster = ClusterServer::new(ClusterService::new(node.clone()))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(usize::MAX);
    let watch = WatchServer::new(WatchService::new(
        node.clone(),
        config.max_decoding_message_size(),
        config.watch_progress_interval,
    ))
    .max_decoding_message_size(max_decoding)
    .max_encoding_message_size(usize::MAX);
    let lock = LockServer::new(LockService::new(node.clone()))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(usize::MAX);
    let election = ElectionServer::new(ElectionService::new(node.clone()))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(usize::MAX);
    let auth = AuthServer::new(AuthService::new(node.clone()))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(usize::MAX);
    let lease = LeaseServer::new(LeaseService::new(node))
        .max_decoding_message_size(max_decoding)
        .max_encoding_message_size(usize::MAX);
    let (reporter, health) = tonic_health::server::health_reporter();
    let routes = Routes::new(kv)
        .add_service(maintenance)
        .add_service(cluster)
        .add_service(lease)
        .add_service(auth)
        .add_service(watch)
        .add_service(lock)
        .add_service(election)
        .add_service(health);
    (routes, reporter)
}

/// A server [`Router`] with [`routes`] on a default [`Server`] builder; use [`routes`] to add
/// them to a builder of your own (TLS, keepalives, more services).
pub fn router<N: EtcdNode>(node: Arc<N>, config: &ApiConfig) -> (Router, HealthReporter) {
    let (routes, reporter) = routes(node, config);
    (Server::builder().add_routes(routes), reporter)
}

/// Serves the etcd services over `node` on `listener` until `shutdown` completes, then lets
/// calls in flight finish. Bind the listener to port 0 in tests.
pub async fn serve<N: EtcdNode>(
    listener: TcpListener,
    node: Arc<N>,
    config: &ApiConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (router, _reporter) = router(node, config);
    router
        // TCP_NODELAY: `serve_with_incoming_shutdown` ignores the builder's setting, and
        // without it small responses wait for delayed ACKs (~40 ms).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
