//! Startup and shutdown of a voter: open the log and the store, start Raft, the peer service
//! and the client services; on shutdown hand leadership away first.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mango_api::ApiConfig;
use mango_boot::Boot;
use mango_boot::listen::{ListenUrl, incoming};
use mango_consensus::node::{self, GroupBootstrap, NodeConfig};
use mango_consensus::transport::{GrpcTransport, PeerService, PeerUrls};
use mango_consensus::{LogStore, LogStoreConfig};
use mango_proto::mangopb::MemberInfo;
use mango_proto::mangopb::peer_server::PeerServer;
use mango_store::{Store, StoreOptions};

use crate::config::{Config, cluster_id, member_id};
use crate::machine::{Staging, StoreMachine, StoreSnapshots};
use crate::node::VoterNode;
use crate::security::Security;

/// Physical compaction in small steps whenever a Compaction was applied.
fn spawn_compactor(store: Arc<Store>) -> std::sync::mpsc::SyncSender<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("compactor".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                loop {
                    match store.compact_step(0, 1000) {
                        Ok(step) if step.more => std::thread::sleep(Duration::from_millis(1)),
                        Ok(_) => break,
                        Err(e) => {
                            tracing::error!(error = %e, "physical compaction failed");
                            break;
                        }
                    }
                }
            }
        })
        .ok();
    tx
}

/// How many files of the Raft log may stand before compacted ones are removed.
const PURGE_FILES: u64 = 4;

/// How often log files whose entries are all compacted are removed.
const PURGE_EVERY: Duration = Duration::from_secs(5);

/// Removes the Raft log's files once every entry in them is compacted (the voter compacts
/// the log every `--snapshot-count` entries; without this the files stayed for ever). A
/// purge that fails is a failing disk: the member stops.
fn spawn_log_purger(log: LogStore, fatal: mango_boot::Fatal) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PURGE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let log = log.clone();
            match tokio::task::spawn_blocking(move || log.purge_expired_files()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    fatal.trip(format!("purging the raft log failed: {e}"));
                    return;
                }
                Err(_) => return,
            }
        }
    });
}

/// Snapshots staged by an earlier run were never installed (Raft forgot the message with
/// the process) and partial ones are debris: the staging folder starts empty.
fn clear_staging(staging: &std::path::Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(staging).with_context(|| format!("{}", staging.display()))? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
            tracing::info!(path = %path.display(), "removed a stale staged snapshot");
        }
    }
    Ok(())
}

/// Runs a voter until `boot.shutdown` resolves. A fatal error of the Raft loop trips
/// `boot.fatal`: health turns NOT_SERVING and the process exits non-zero.
pub async fn run(config: Config, boot: Boot) -> anyhow::Result<()> {
    config.validate()?;
    let Boot { shutdown, fatal } = boot;
    let logger = crate::logging::raft_logger();
    let client_urls = ListenUrl::parse_list(&config.listen_client_urls)?;
    let peer_urls = ListenUrl::parse_list(&config.listen_peer_urls)?;
    let data_dir = config.data_dir();
    let security = Security::new(&config, &client_urls, &peer_urls, &data_dir)?;
    let member_dir = data_dir.join("member");
    let staging = member_dir.join("snap");

    let initial = config.initial_members()?;
    let token = config.initial_cluster_token.clone();
    let ids: Vec<u64> = initial
        .iter()
        .map(|m| member_id(&m.peer_urls, &token))
        .collect();
    let me = initial
        .iter()
        .position(|m| m.name == config.name)
        .context("this member is not in --initial-cluster")?;
    let cluster = cluster_id(&ids, &token);
    let joining = config.joining()?;
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    clear_staging(&staging)?;

    let mut log_config = LogStoreConfig::new(member_dir.join("raft"));
    log_config.target_file_size = config.debug_raft_log_file_bytes.max(4096);
    // raft-engine removes nothing until the live files pass this size: keep it at a few
    // files, so compacted files go soon after each log compaction (2 GiB before).
    log_config.purge_threshold = PURGE_FILES * log_config.target_file_size;
    let log = LogStore::open(log_config).context("opening the raft log")?;
    spawn_log_purger(log.clone(), fatal.clone());
    let store = Arc::new(
        Store::open_path(
            member_dir.join("db"),
            StoreOptions {
                durable_apply: false,
            },
        )
        .context("opening the store")?,
    );
    let others: Vec<String> = initial
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .filter_map(|(_, m)| m.peer_urls.first().cloned())
        .collect();
    let local_ip = match config.peer_advertise().first() {
        Some(u) => ListenUrl::parse(u)?.resolve().await.ok().map(|a| a.ip()),
        None => None,
    };
    let founding_link = security.peer_link(local_ip, cluster)?;
    let crate::identity::Identity {
        id: my_id,
        cluster_id: cluster,
        peers: learned_peers,
    } = crate::identity::resolve(crate::identity::Start {
        member_dir: &member_dir,
        joining,
        founding_id: ids[me],
        my_peer_urls: &config.peer_advertise(),
        others: &others,
        knows_members: !store.read(0)?.members()?.is_empty(),
        patience: crate::identity::IDENTIFY_FOR,
        founding_cluster_id: cluster,
        link: &founding_link,
    })
    .await?;
    let link = security.peer_link(local_ip, cluster)?;
    let probe_link = link.clone();
    let infos: Vec<MemberInfo> = initial
        .iter()
        .zip(&ids)
        .map(|(m, &id)| MemberInfo {
            id,
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: if id == my_id {
                config.client_advertise()
            } else {
                vec![]
            },
            is_learner: false,
        })
        .collect();
    if !joining {
        // A joining member gets the registry with the snapshot the leader sends it.
        store
            .bootstrap_members(0, &infos)
            .context("recording the initial members")?;
    }

    let peers = PeerUrls::default();
    for m in store.read(0)?.members()? {
        if let Some(url) = m.peer_urls.first() {
            peers.set(m.id, url.clone());
        }
    }
    if joining {
        // The founders' hashed ids name members that may have been replaced since; the
        // member that told this one its id told it where everyone is.
        for (id, url) in learned_peers {
            if peers.get(id).is_none() {
                peers.set(id, url);
            }
        }
    } else {
        for m in &infos {
            if peers.get(m.id).is_none()
                && let Some(url) = m.peer_urls.first()
            {
                peers.set(m.id, url.clone());
            }
        }
    }

    let snapshots = Arc::new(StoreSnapshots {
        store: store.clone(),
        log: log.clone(),
    });
    let lessor = Arc::new(crate::lessor::Lessor::default());
    let metrics = Arc::new(crate::metrics::VoterMetrics::default());
    let (revisions, revisions_rx) = tokio::sync::watch::channel(store.read(0)?.revision());
    let machine = StoreMachine {
        store: store.clone(),
        log: log.clone(),
        snapshot_count: config.snapshot_count.max(1),
        catch_up_entries: config.snapshot_catchup_entries,
        staging: Staging(staging.clone()),
        compactor: spawn_compactor(store.clone()),
        revisions,
        peers: peers.clone(),
        lessor: lessor.clone(),
        apply_delay: Duration::from_millis(config.debug_apply_delay_ms),
        commit_durations: Some(metrics.backend_commit.clone()),
    };
    let node_config = NodeConfig {
        id: my_id,
        tick: config.tick(),
        election_ticks: config.election_ticks(),
        wait_for_persist: config.debug_wait_for_log_writes,
        persist_hook: config
            .debug_fail_log_writes_while
            .clone()
            .map(failing_log_writes),
        observer: Some(mango_consensus::node::Observer(metrics.clone())),
        ..Default::default()
    };
    let boot = GroupBootstrap {
        group: 0,
        initial_voters: if joining { vec![] } else { ids.clone() },
    };
    let runtime = tokio::runtime::Handle::current();
    let transport_peers = peers.clone();
    let source = snapshots.clone();
    let log_for_stream = log.clone();
    let (raft, raft_thread) = node::start(
        node_config,
        log,
        vec![boot],
        machine,
        move |handle| GrpcTransport::new(transport_peers, link, runtime, handle, source),
        Some(snapshots),
        logger,
    )
    .map_err(|e| anyhow::anyhow!("starting raft: {e}"))?;
    let raft_watch = fatal.watch_thread("the raft loop", raft_thread);

    let auth = mango_api::AuthConfig::from_flags(
        &config.auth.auth_token,
        Duration::from_secs(config.auth.auth_token_ttl),
        config.auth.bcrypt_cost,
        config.client_tls.client_cert_auth,
    )
    .context("--auth-token")?;
    mango_api::auth::spawn_token_sweep(Arc::downgrade(&store), &auth);
    let voter = Arc::new(VoterNode {
        raft: raft.clone(),
        store: store.clone(),
        member_id: my_id,
        cluster_id: cluster,
        token,
        peers,
        request_timeout: Duration::from_secs(7)
            .max(Duration::from_millis(config.election_timeout * 3)),
        quota_bytes: config.quota_backend_bytes,
        revisions: revisions_rx,
        lessor,
        lease_ids: crate::leases::LeaseIds::new(my_id),
        min_lease_ttl: crate::leases::min_lease_ttl(Duration::from_millis(config.election_timeout)),
        leader_client: crate::leases::LeaderClient::new(security.client.tonic_client_config()),
        max_apply_gap: config.max_apply_gap,
        strict_reconfig: config.strict_reconfig_check,
        tick: config.tick(),
        reads: {
            let raft = raft.clone();
            mango_api::ReadIndexBatcher::new(std::sync::Arc::new(move || {
                let raft = raft.clone();
                Box::pin(async move { raft.read_index(0).await })
            }))
        },
        auth,
        metrics: metrics.clone(),
    });
    let probe_metrics = metrics.clone();
    let prober = tokio::spawn(mango_consensus::transport::probe_peers(
        voter.peers.clone(),
        probe_link,
        my_id,
        PEER_PROBE_INTERVAL,
        move |peer, rtt| probe_metrics.peer_round_trip(peer, rtt),
    ));
    let metrics_urls = config
        .common
        .metrics
        .serve(
            Arc::new(crate::metrics::VoterObserved(voter.clone())),
            endpoint_info(),
            fatal.clone(),
        )
        .await?;
    if !metrics_urls.is_empty() {
        tracing::info!(addrs = ?metrics_urls, "serving metrics and health");
    }
    tokio::spawn(crate::leases::run(
        voter.clone(),
        Duration::from_millis(config.election_timeout),
        Duration::from_millis(config.lease_checkpoint_interval_ms.max(1)),
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for url in &peer_urls {
        let listener = url.bind().await?;
        let service = PeerServer::new(
            PeerService::new(
                raft.clone(),
                Arc::new(Staging(staging.clone())),
                voter.peers.clone(),
                cluster,
            )
            .with_max_snapshot_bytes(config.max_snapshot_bytes),
        )
        .max_decoding_message_size(64 << 20);
        let mut stop = stop_rx.clone();
        let server = mango_boot::grpc::server(&config.common.grpc, u32::MAX);
        servers.push(tokio::spawn(
            Security::server_for(url, &security.peer, server)?
                .add_service(service)
                .serve_with_incoming_shutdown(incoming(listener), async move {
                    let _ = stop.wait_for(|s| *s).await;
                }),
        ));
    }
    let api = ApiConfig {
        max_request_bytes: config.max_request_bytes,
        watch_progress_interval: Duration::from_millis(
            config.watch_progress_notify_interval_ms.max(1),
        ),
    };
    let (routes, health) = mango_api::routes(voter.clone(), &api);
    fatal.not_serving_on_trip(health);
    for url in &client_urls {
        let listener = url.bind().await?;
        let mut stop = stop_rx.clone();
        let server = mango_boot::grpc::server(&config.common.grpc, config.max_concurrent_streams);
        servers.push(tokio::spawn(
            Security::server_for(url, &security.client, server)?
                .add_routes(routes.clone())
                .serve_with_incoming_shutdown(incoming(listener), async move {
                    let _ = stop.wait_for(|s| *s).await;
                }),
        ));
    }
    if let Some(addr) = config.listen_logstream_addr {
        let tls = security.logstream(&config, &member_dir, addr)?;
        let source: Arc<dyn mango_logstream::LogSource> =
            Arc::new(crate::logsource::VoterLogSource {
                log: log_for_stream.clone(),
                raft: raft.clone(),
                store: store.clone(),
                tick: config.tick(),
            });
        let mut stop = stop_rx.clone();
        let (bound, task) = mango_logstream::serve(addr, tls, source, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await?;
        tracing::info!(%bound, "serving the committed log to learners");
        servers.push(tokio::spawn(async move {
            let _ = task.await;
            Ok::<(), tonic::transport::Error>(())
        }));
    }
    tokio::spawn(publish_attributes(
        voter.clone(),
        config.name.clone(),
        config.client_advertise(),
    ));
    tracing::info!(
        name = %config.name,
        member_id = %format!("{my_id:x}"),
        cluster_id = %format!("{cluster:x}"),
        clients = ?config.client_advertise(),
        peers = ?config.peer_advertise(),
        "mango-voter serving"
    );

    shutdown.await;
    tracing::info!("shutting down");
    hand_off_leadership(&voter).await;
    let _ = stop_tx.send(true);
    for s in servers {
        let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
    }
    prober.abort();
    raft.stop();
    let _ = tokio::task::spawn_blocking(move || raft_watch.join()).await;
    store.sync(0).context("syncing the store")?;
    Ok(())
}

/// How often each peer's round trip is measured (etcd's prober: every few seconds).
const PEER_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// What `/version` answers.
fn endpoint_info() -> mango_boot::http::EndpointInfo {
    mango_boot::http::EndpointInfo {
        server_version: mango_api::ETCD_VERSION,
        ..Default::default()
    }
}

/// Records this member's name and client URLs in the replicated member registry (as etcd's
/// `publish`), retrying until a leader accepts it.
async fn publish_attributes(voter: Arc<VoterNode>, name: String, client_urls: Vec<String>) {
    use mango_api::EtcdNode as _;
    use mango_proto::mangopb::member_change::Kind;
    use mango_proto::mangopb::raft_request::Request;
    let member = MemberInfo {
        id: voter.member_id,
        name,
        client_urls,
        ..Default::default()
    };
    let change = mango_proto::mangopb::MemberChange {
        kind: Kind::Update as i32,
        member: Some(member),
    };
    for _ in 0..600 {
        match voter
            .propose(
                Request::MemberChange(change.clone()),
                &mango_api::Caller::MEMBER,
            )
            .await
        {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "publishing member attributes, will retry"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!("could not publish this member's client URLs");
}

/// If this voter leads, asks the most caught-up other voter to take over and waits briefly.
async fn hand_off_leadership(voter: &VoterNode) {
    let Ok(status) = voter.raft.status(0) else {
        return;
    };
    if status.leader != voter.member_id {
        return;
    }
    let Some(&target) = status.voters.iter().find(|&&v| v != voter.member_id) else {
        return;
    };
    if voter.raft.transfer_leader(0, target).is_err() {
        return;
    }
    for _ in 0..100 {
        if voter
            .raft
            .status(0)
            .map(|s| s.leader != voter.member_id && s.leader != 0)
            .unwrap_or(true)
        {
            tracing::info!(to = %format!("{target:x}"), "handed leadership over");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The persist hook of `--debug-fail-log-writes-while`: every log write fails while `path`
/// exists.
fn failing_log_writes(path: std::path::PathBuf) -> mango_consensus::node::PersistHook {
    mango_consensus::node::PersistHook(Arc::new(move || {
        if path.exists() {
            Err(format!("injected failure ({} exists)", path.display()))
        } else {
            Ok(())
        }
    }))
}
