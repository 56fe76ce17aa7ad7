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

/// How this learner checks its upstreams and proves itself to them.
fn client_tls(config: &Config) -> anyhow::Result<ClientTls> {
    let tls = match &config.upstream_ca {
        Some(ca) => ClientTls::trust_pem_file(ca)
            .with_context(|| format!("reading --upstream-ca {}", ca.display()))?,
        // validate() refused this without the flag.
        None => ClientTls::insecure_dev(),
    };
    Ok(match (&config.upstream_cert, &config.upstream_key) {
        (Some(cert), Some(key)) => {
            tls.with_identity(mango_tls::Identity::from_pem_files(cert, key)?)
        }
        _ => tls,
    })
}

/// This learner's own log stream: its certificate (or a development one), and followers
/// required to present one chaining to `--logstream-trusted-ca-file` (else `--upstream-ca`);
/// without a CA only on loopback, or behind `--insecure-unauthenticated-learners`.
fn onward_tls(
    config: &Config,
    data_dir: &std::path::Path,
    addr: std::net::SocketAddr,
) -> anyhow::Result<ServerTls> {
    let tls = match (&config.logstream_cert, &config.logstream_key) {
        (Some(cert), Some(key)) => ServerTls::from_pem_files(cert, key)?,
        _ => ServerTls::dev(data_dir, &[addr.ip().to_string()])?,
    };
    let ca = config
        .logstream_trusted_ca_file
        .as_ref()
        .or(config.upstream_ca.as_ref());
    match ca {
        Some(path) => Ok(tls.require_clients(mango_tls::Roots::from_pem_file(path)?)),
        None if addr.ip().is_loopback() || config.insecure_unauthenticated_learners => {
            tracing::warn!(%addr, "the onward log stream authenticates no follower");
            Ok(tls)
        }
        None => anyhow::bail!(
            "--listen-logstream-addr {addr} is not on loopback and no CA authenticates \
             followers: give --logstream-trusted-ca-file (or --upstream-ca), or pass \
             --insecure-unauthenticated-learners"
        ),
    }
}

/// Runs a learner until `boot.shutdown` resolves. A storage failure while applying trips
/// `boot.fatal`.
pub async fn run(config: Config, boot: Boot) -> anyhow::Result<()> {
    config.validate()?;
    let Boot { shutdown, fatal } = boot;
    let client_urls = ListenUrl::parse_list(&config.listen_client_urls)?;
    let data_dir = config.data_dir();
    let client_hosts: Vec<String> = [config.client_listen(), config.client_advertise()]
        .concat()
        .iter()
        .filter_map(|u| mango_tls::url_host(u))
        .collect();
    let client_security = config.client_tls.material(&data_dir, &client_hosts)?;
    mango_boot::tls::check_listeners(
        "--listen-client-urls",
        &client_urls,
        &client_security,
        false,
        config.insecure_plaintext_clients,
        "insecure-plaintext-clients",
    )?;
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

    let auth = mango_api::AuthConfig::from_flags(
        &config.auth.auth_token,
        Duration::from_secs(config.auth.auth_token_ttl),
        config.auth.bcrypt_cost,
        config.client_tls.client_cert_auth,
    )
    .context("--auth-token")?;
    mango_api::auth::spawn_token_sweep(Arc::downgrade(&store), &auth);
    let node = Arc::new(LearnerNode::new(
        log.clone(),
        Voters::new(
            store.clone(),
            Duration::from_secs(7),
            client_security.tonic_client_config(),
        ),
        config.member_id(),
        auth,
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

    let metrics_addrs = config
        .common
        .metrics
        .serve(
            Arc::new(crate::metrics::LearnerObserved(log.clone())),
            mango_boot::http::EndpointInfo {
                server_version: mango_api::ETCD_VERSION,
                ..Default::default()
            },
            fatal.clone(),
        )
        .await?;
    if !metrics_addrs.is_empty() {
        tracing::info!(addrs = ?metrics_addrs, "serving metrics and health");
    }
    let mut servers = Vec::new();
    if let Some(addr) = config.listen_logstream_addr {
        let tls = onward_tls(&config, &data_dir, addr)?;
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
        let server = mango_boot::grpc::server(&config.common.grpc, config.max_concurrent_streams);
        let server = if url.tls {
            let tls = client_security
                .server_config()
                .with_context(|| format!("{}: https:// needs a certificate", url.url))?;
            server.tls_config(tls)?
        } else {
            server
        }
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
