//! Startup and shutdown of the proxy: build the routing state, health-check the upstreams in
//! the background, serve etcd's client API until told to stop.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;

use mango_proto::etcdserverpb::auth_server::AuthServer;
use mango_proto::etcdserverpb::cluster_server::ClusterServer;
use mango_proto::etcdserverpb::kv_server::KvServer;
use mango_proto::etcdserverpb::lease_server::LeaseServer;
use mango_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use mango_proto::etcdserverpb::watch_server::WatchServer;
use mango_proto::v3electionpb::election_server::ElectionServer;
use mango_proto::v3lockpb::lock_server::LockServer;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::kv::KvProxy;
use crate::route::Proxy;
use crate::services::Forwarder;
use crate::watch::WatchProxy;
use crate::watch::broadcast::Registry;

/// Bytes of gRPC framing allowed on top of the largest request.
const GRPC_OVERHEAD: usize = 512 * 1024;

/// Runs the proxy on `listener` until `shutdown` resolves, then lets calls in flight finish.
/// Bind the listener to port 0 in tests.
pub async fn serve(
    listener: TcpListener,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    config.validate()?;
    let client_tls = config.client_tls()?;
    let upstream_tls = config.upstream_tls()?;
    let proxy = Proxy::new(
        &config.voter_urls(),
        &config.learner_urls(),
        upstream_tls.as_ref(),
        config.request_timeout(),
        config.max_concurrent_requests,
        config.max_concurrent_streams,
        config.eject_after_failures,
    )?;
    // Health checks and leader lookups, every interval, for as long as the server runs.
    let checker = {
        let proxy = proxy.clone();
        let every = config.health_interval();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                proxy.check_all(every.max(Duration::from_millis(500))).await;
            }
        })
    };

    let watches = Registry::new(proxy.clone());
    let cache = (config.stale_cache_bytes > 0)
        .then(|| std::sync::Arc::new(crate::cache::StaleCache::new(config.stale_cache_bytes)));
    let invalidation = cache
        .clone()
        .map(|c| tokio::spawn(c.run_invalidation(proxy.clone())));
    let sources = crate::metrics::Sources {
        proxy: proxy.clone(),
        watches: watches.clone(),
        cache: cache.clone(),
    };
    let info = mango_boot::http::EndpointInfo::default();
    let metrics_addrs = config
        .common
        .metrics
        .serve(std::sync::Arc::new(sources), info, mango_boot::Fatal::new())
        .await?;
    if !metrics_addrs.is_empty() {
        tracing::info!(addrs = ?metrics_addrs, "serving metrics and health");
    }

    let max_decoding = config.max_request_bytes + GRPC_OVERHEAD;
    let forwarder = Forwarder::new(proxy.clone());
    macro_rules! svc {
        ($server:ident, $inner:expr) => {
            $server::new($inner)
                .max_decoding_message_size(max_decoding)
                .max_encoding_message_size(usize::MAX)
        };
    }
    // The overall service "" answers SERVING while the proxy runs.
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listen = config.listen_url()?;
    let mut server = mango_boot::grpc::server(&config.common.grpc, u32::MAX);
    if listen.tls {
        let tls = client_tls
            .server_config()
            .with_context(|| format!("{}: https:// needs a certificate", listen.url))?;
        server = server
            .tls_config(tls)
            .with_context(|| format!("{}: TLS configuration", listen.url))?;
    }
    tracing::info!(
        addr = %listener.local_addr()?,
        tls = listen.tls,
        client_cert_auth = client_tls.client_cert_auth,
        voters = %config.voters,
        learners = %config.learners,
        "mango-proxy serving"
    );
    let served = server
        .add_service(svc!(KvServer, KvProxy::new(proxy.clone(), cache)))
        .add_service(svc!(WatchServer, WatchProxy::new(watches)))
        .add_service(svc!(LeaseServer, forwarder.clone()))
        .add_service(svc!(ClusterServer, forwarder.clone()))
        .add_service(svc!(MaintenanceServer, forwarder.clone()))
        .add_service(svc!(LockServer, forwarder.clone()))
        .add_service(svc!(ElectionServer, forwarder.clone()))
        .add_service(svc!(AuthServer, forwarder))
        .add_service(health)
        // TCP_NODELAY on accepted connections (mango-boot's `incoming`): without it a
        // response of a few hundred bytes waits for the client's delayed ACK (a flat ~44 ms
        // per read through the proxy, `mango-bench proxy` 2026-11-26).
        .serve_with_incoming_shutdown(mango_boot::listen::incoming(listener), shutdown)
        .await;
    checker.abort();
    if let Some(t) = invalidation {
        t.abort();
    }
    let c = proxy.counters();
    tracing::info!(
        to_leader = c.to_leader.load(std::sync::atomic::Ordering::Relaxed),
        to_reads = c.to_reads.load(std::sync::atomic::Ordering::Relaxed),
        retries = c.retries.load(std::sync::atomic::Ordering::Relaxed),
        shed = c.shed.load(std::sync::atomic::Ordering::Relaxed),
        streams_shed = c.streams_shed.load(std::sync::atomic::Ordering::Relaxed),
        "mango-proxy stopped"
    );
    Ok(served?)
}

/// Runs the proxy configured by `config` until `boot.shutdown` resolves: binds the client
/// URL, serves.
pub async fn run(config: Config, boot: mango_boot::Boot) -> anyhow::Result<()> {
    config.validate()?;
    // The listener rules before binding: an address off loopback is refused by name.
    config.client_tls()?;
    let listener = config.listen_url()?.bind().await?;
    serve(listener, &config, boot.shutdown).await
}
