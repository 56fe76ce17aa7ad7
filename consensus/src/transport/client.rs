//! The sending side: a queue and a task per peer, so the Raft thread never waits on a peer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mango_proto::mangopb::peer_client::PeerClient;
use mango_proto::mangopb::{PeerBatch, SnapshotChunk};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{SnapshotSource, frame};
use crate::node::{GroupId, RaftHandle, Transport};

/// Messages queued per peer before new ones are dropped (Raft resends what it must).
const QUEUE: usize = 8192;
/// Messages per batch on the wire.
const BATCH: usize = 512;

/// Peer id -> URL of its peer endpoint; shared so membership changes reach the transport.
#[derive(Clone, Default)]
pub struct PeerUrls(Arc<RwLock<HashMap<u64, String>>>);

impl PeerUrls {
    /// Sets (or replaces) a peer's URL.
    pub fn set(&self, id: u64, url: String) {
        if let Ok(mut m) = self.0.write() {
            m.insert(id, url);
        }
    }

    /// Forgets a peer.
    pub fn remove(&self, id: u64) {
        if let Ok(mut m) = self.0.write() {
            m.remove(&id);
        }
    }

    /// A peer's URL.
    pub fn get(&self, id: u64) -> Option<String> {
        self.0.read().ok()?.get(&id).cloned()
    }

    /// Every (id, URL) known, by id.
    pub fn entries(&self) -> Vec<(u64, String)> {
        let mut all: Vec<(u64, String)> = self
            .0
            .read()
            .map(|m| m.iter().map(|(id, url)| (*id, url.clone())).collect())
            .unwrap_or_default();
        all.sort_unstable();
        all
    }
}

/// How this node reaches its peers: from which address, with which TLS, as which cluster.
/// Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct PeerLink {
    /// The address outgoing peer connections come from (this node's advertised peer IP), so
    /// peers and firewalls see traffic from where the node says it is.
    pub local_ip: Option<IpAddr>,
    /// TLS for `https://` peer URLs: the cluster CA to check peers against and this member's
    /// peer certificate to present.
    pub tls: Option<mango_tls::GrpcClientTls>,
    /// This node's cluster id, carried in every batch and snapshot.
    pub cluster_id: u64,
}

/// Asks the voter at `url` which member id it knows by `peer_urls` (0: none), its cluster id,
/// and every peer URL it knows (see `mangopb.Peer/Identify`).
pub async fn identify(
    url: &str,
    peer_urls: &[String],
    link: &PeerLink,
) -> Result<(u64, u64, Vec<(u64, String)>), String> {
    let mut client = PeerClient::new(connect(url, link).await?);
    let answer = client
        .identify(mango_proto::mangopb::IdentifyRequest {
            peer_urls: peer_urls.to_vec(),
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok((
        answer.id,
        answer.cluster_id,
        answer.peers.into_iter().map(|p| (p.id, p.url)).collect(),
    ))
}

/// [`Transport`] over the `mangopb.Peer` gRPC service.
pub struct GrpcTransport<O> {
    urls: PeerUrls,
    /// How peers are reached.
    link: PeerLink,
    queues: HashMap<u64, mpsc::Sender<Vec<u8>>>,
    runtime: tokio::runtime::Handle,
    handle: RaftHandle<O>,
    snapshots: Arc<dyn SnapshotSource>,
}

impl<O: Send + 'static> GrpcTransport<O> {
    /// A transport spawning its tasks on `runtime`, reporting unreachable peers to `handle`.
    pub fn new(
        urls: PeerUrls,
        link: PeerLink,
        runtime: tokio::runtime::Handle,
        handle: RaftHandle<O>,
        snapshots: Arc<dyn SnapshotSource>,
    ) -> Self {
        Self {
            urls,
            link,
            queues: HashMap::new(),
            runtime,
            handle,
            snapshots,
        }
    }

    fn queue(&mut self, to: u64) -> Option<&mpsc::Sender<Vec<u8>>> {
        if !self.queues.contains_key(&to) || self.queues.get(&to).is_some_and(|q| q.is_closed()) {
            let url = self.urls.get(to)?;
            let (tx, rx) = mpsc::channel(QUEUE);
            self.runtime.spawn(peer_stream(
                to,
                url,
                self.link.clone(),
                rx,
                self.urls.clone(),
            ));
            self.queues.insert(to, tx);
        }
        self.queues.get(&to)
    }

    fn send_snapshot(&mut self, group: GroupId, msg: Message) {
        let to = msg.get_to();
        let (Some(url), Ok(chunks)) = (
            self.urls.get(to),
            self.snapshots.chunks(group, msg.get_snapshot()),
        ) else {
            self.handle.report_snapshot(group, to, false);
            return;
        };
        let handle = self.handle.clone();
        let link = self.link.clone();
        self.runtime.spawn(async move {
            let ok = match send_snapshot(url, &link, group, msg, chunks).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(peer = to, group, error = %e, "sending a snapshot failed");
                    false
                }
            };
            handle.report_snapshot(group, to, ok);
        });
    }
}

impl<O: Send + 'static> Transport for GrpcTransport<O> {
    fn send(&mut self, group: GroupId, msgs: Vec<Message>) {
        for msg in msgs {
            let to = msg.get_to();
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                self.send_snapshot(group, msg);
                continue;
            }
            let Ok(bytes) = msg.write_to_bytes() else {
                continue;
            };
            let delivered = match self.queue(to) {
                Some(q) => q.try_send(frame(group, &bytes)).is_ok(),
                None => false,
            };
            if !delivered {
                self.handle.report_unreachable(group, to);
            }
        }
    }
}

pub(crate) async fn connect(url: &str, link: &PeerLink) -> Result<Channel, String> {
    mango_tls::Target::new(url, link.tls.as_ref(), link.local_ip)
        .map_err(|e| e.to_string())?
        .map_endpoint(|e| e.connect_timeout(Duration::from_secs(1)))
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// Keeps one client stream open to a peer and feeds it batches from the queue, reconnecting
/// with backoff; while disconnected, queued messages are dropped.
async fn peer_stream(
    to: u64,
    mut url: String,
    link: PeerLink,
    mut rx: mpsc::Receiver<Vec<u8>>,
    urls: PeerUrls,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let channel = match connect(&url, &link).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer = to, %url, error = %e, "peer unreachable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                // Drop what queued meanwhile: Raft will resend.
                while rx.try_recv().is_ok() {}
                if rx.is_closed() {
                    return;
                }
                if let Some(u) = urls.get(to) {
                    url = u;
                }
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let (tx, batches) = mpsc::channel::<PeerBatch>(4);
        let mut client = PeerClient::new(channel);
        let call = tokio::spawn(async move { client.stream(ReceiverStream::new(batches)).await });
        loop {
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut messages = vec![first];
            while messages.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => messages.push(m),
                    Err(_) => break,
                }
            }
            let batch = PeerBatch {
                messages,
                cluster_id: link.cluster_id,
            };
            if tx.send(batch).await.is_err() {
                break;
            }
        }
        if let Ok(Err(e)) = call.await {
            tracing::debug!(peer = to, error = %e, "peer stream ended");
        }
    }
}

async fn send_snapshot(
    url: String,
    link: &PeerLink,
    group: GroupId,
    msg: Message,
    chunks: super::SnapshotChunks,
) -> Result<(), String> {
    let message = msg.write_to_bytes().map_err(|e| e.to_string())?;
    let mut client =
        PeerClient::new(connect(&url, link).await?).max_encoding_message_size(usize::MAX);
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(2);
    let cluster_id = link.cluster_id;
    let producer = tokio::task::spawn_blocking(move || {
        let first = SnapshotChunk {
            group,
            message,
            data: Vec::new(),
            cluster_id,
        };
        if tx.blocking_send(first).is_err() {
            return Err("receiver went away".to_string());
        }
        for chunk in chunks {
            let data = chunk?;
            if tx
                .blocking_send(SnapshotChunk {
                    group,
                    message: Vec::new(),
                    data,
                    cluster_id: 0,
                })
                .is_err()
            {
                return Err("receiver went away".to_string());
            }
        }
        Ok(())
    });
    let sent = client
        .snapshot(ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string());
    producer.await.map_err(|e| e.to_string())??;
    sent.map(|_| ())
}
