//! Startup and shutdown of a learner: open the store, follow the upstream's log stream, serve
//! etcd's client API (and, if asked, the log stream onward).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mango_api::ApiConfig;
use mango_boot::Boot;
use mango_boot::listen::{ListenUrl, incoming};
use mango_logstream::{ClientTls, LogSource, ReadIndexClient, ServerTls};
use mango_store::{Store, StoreOptions};

use crate::config::Config;
use crate::forward::Voters;
use crate::log::{GROUP, LearnerLog};
use crate::node::LearnerNode;

fn client_tls(config: &Config) -> anyhow::Result<ClientTls> {
    Ok(match &config.upstream_ca {
        Some(ca) => ClientTls::trust_pem_file(ca)
            .with_context(|| format!("reading --upstream-ca {}", ca.display()))?,
        None => ClientTls::insecure_dev(),
    })
}

/// Runs a learner until `boot.shutdown` resolves. A storage failure while applying trips
/// `boot.fatal`.
pub async fn run(config: Config, boot: Boot) -> anyhow::Result<()> {
    config.validate()?;
    let Boot { shutdown, fatal } = boot;
    let client_urls = ListenUrl::parse_list(&config.listen_client_urls)?;
    if let Some(u) = client_urls.iter().find(|u| u.tls) {
        anyhow::bail!(
            "--listen-client-urls {}: https:// needs TLS flags (not configured)",
            u.url
        );
    }

    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let store = Arc::new(
        Store::open_path(
            data_dir.join("db"),
            // Not synced per batch: after a crash the learner resumes from what is durable and
            // fetches the rest again from upstream.
            StoreOptions {
                durable_apply: false,
            },
        )
        .context("opening the store")?,
    );
    let upstreams = config.upstreams()?;
    let reads = Arc::new(ReadIndexClient::new(
        upstreams.clone(),
        client_tls(&config)?,
    ));
    let log = Arc::new(LearnerLog::new(store.clone(), reads, fatal.clone())?);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(mango_logstream::follow(
        upstreams,
        client_tls(&config)?,
        GROUP,
        log.clone(),
        stopped(stop_rx.clone()),
    ));

    let node = Arc::new(LearnerNode::new(
        log.clone(),
        Voters::new(store.clone(), Duration::from_secs(7)),
        config.member_id(),
    ));
    {
        let node = node.clone();
        tokio::spawn(async move {
            while !node.fetch_cluster_id().await {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
    {
        // Bound what a crash makes the learner fetch again.
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || store.sync(GROUP)).await;
            }
        });
    }

    let mut servers = Vec::new();
    if let Some(addr) = config.listen_logstream_addr {
        let tls = match (&config.logstream_cert, &config.logstream_key) {
            (Some(cert), Some(key)) => ServerTls::from_pem_files(cert, key)?,
            _ => ServerTls::dev(&data_dir, &[addr.ip().to_string()])?,
        };
        let source: Arc<dyn LogSource> = log.clone();
        let (bound, task) =
            mango_logstream::serve(addr, tls, source, stopped(stop_rx.clone())).await?;
        tracing::info!(%bound, "serving the log stream onward");
        servers.push(task);
    }
    let api = ApiConfig {
        max_request_bytes: config.max_request_bytes,
        watch_progress_interval: Duration::from_millis(config.watch_progress_notify_interval_ms),
    };
    let (routes, health) = mango_api::routes(node.clone(), &api);
    fatal.not_serving_on_trip(health);
    for url in &client_urls {
        let listener = url.bind().await?;
        let server = mango_boot::grpc::server(&config.common.grpc, config.max_concurrent_streams)
            .add_routes(routes.clone());
        let stop = stopped(stop_rx.clone());
        servers.push(tokio::spawn(async move {
            if let Err(e) = server
                .serve_with_incoming_shutdown(incoming(listener), stop)
                .await
            {
                tracing::error!(error = %e, "client server failed");
            }
        }));
    }
    tracing::info!(
        name = %config.name,
        member_id = %format!("{:x}", config.member_id()),
        clients = ?config.client_advertise(),
        upstream = %config.upstream,
        "mango-learner serving"
    );

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for s in servers {
        let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
    }
    store.sync(GROUP).context("syncing the store")?;
    Ok(())
}
