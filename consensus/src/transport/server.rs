//! The receiving side: the `mangopb.Peer` gRPC service, and the admission rules every message
//! passes before Raft sees it. A message reaches Raft only when it comes from this cluster
//! (the batch's cluster id), is addressed to this node, comes from a current member of its
//! group (a node that knows no configuration yet, a joiner, accepts its first leader), and,
//! when the connection is mutual TLS, from a certificate valid for the host of the member it
//! claims to be. A snapshot is staged only from the group's current leader, and reaches Raft
//! only after its bytes check out whole. Everything else is dropped and counted.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mango_proto::mangopb::peer_server::Peer;
use mango_proto::mangopb::{
    IdentifyRequest, IdentifyResponse, PeerAddress, PeerBatch, PeerStreamEnd, SnapshotAck,
    SnapshotChunk,
};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tonic::{Request, Response, Status, Streaming};

use super::{PeerUrls, SnapshotSink, unframe};
use crate::node::RaftHandle;

/// The largest snapshot a peer may stage, by default (bytes).
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 16 << 30;

/// Messages and snapshots refused at the door, by reason (for metrics and tests).
#[derive(Debug, Default)]
pub struct Dropped {
    /// From another cluster.
    pub other_cluster: AtomicU64,
    /// Addressed to another node.
    pub wrong_recipient: AtomicU64,
    /// From a node that is not a current member of the group.
    pub not_a_member: AtomicU64,
    /// From a certificate that does not name the claimed member's host.
    pub wrong_certificate: AtomicU64,
    /// Snapshots from anyone but the current leader, too large, or that do not check out.
    pub bad_snapshot: AtomicU64,
}

impl Dropped {
    /// All refusals.
    pub fn total(&self) -> u64 {
        [
            &self.other_cluster,
            &self.wrong_recipient,
            &self.not_a_member,
            &self.wrong_certificate,
            &self.bad_snapshot,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// Serves peers' Raft traffic into the local node.
pub struct PeerService<O> {
    handle: RaftHandle<O>,
    sink: Arc<dyn SnapshotSink>,
    /// The node's address book, for `Identify` and certificate checks.
    directory: PeerUrls,
    /// This node's cluster id.
    cluster_id: u64,
    /// What was refused.
    dropped: Arc<Dropped>,
    /// The largest snapshot staged.
    max_snapshot_bytes: u64,
}

impl<O: Send + 'static> PeerService<O> {
    /// A service stepping messages into `handle`, staging snapshots through `sink`, answering
    /// `Identify` from `directory` (the address book the transport sends with), admitting
    /// only traffic of `cluster_id`.
    pub fn new(
        handle: RaftHandle<O>,
        sink: Arc<dyn SnapshotSink>,
        directory: PeerUrls,
        cluster_id: u64,
    ) -> Self {
        Self {
            handle,
            sink,
            directory,
            cluster_id,
            dropped: Arc::default(),
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
        }
    }

    /// Caps the size of a staged snapshot.
    pub fn with_max_snapshot_bytes(mut self, max: u64) -> Self {
        self.max_snapshot_bytes = max.max(1);
        self
    }

    /// The refusal counters.
    pub fn dropped(&self) -> Arc<Dropped> {
        self.dropped.clone()
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn check_cluster(&self, cluster_id: u64) -> Result<(), Status> {
        if cluster_id == self.cluster_id {
            return Ok(());
        }
        self.count(&self.dropped.other_cluster);
        Err(Status::permission_denied(format!(
            "mango: peer of cluster {cluster_id:x}, this member is of cluster {:x}",
            self.cluster_id
        )))
    }

    /// Whether `message` of `group` may reach Raft (see the module doc).
    fn admit(&self, group: u64, message: &Message, certificate: Option<&[u8]>) -> bool {
        let Ok(status) = self.handle.status(group) else {
            self.count(&self.dropped.wrong_recipient);
            return false;
        };
        if message.get_to() != self.handle.id() {
            self.count(&self.dropped.wrong_recipient);
            return false;
        }
        let from = message.get_from();
        let knows_members = !status.voters.is_empty() || !status.learners.is_empty();
        if knows_members && !status.voters.contains(&from) && !status.learners.contains(&from) {
            self.count(&self.dropped.not_a_member);
            return false;
        }
        if let Some(cert) = certificate {
            let host = self
                .directory
                .get(from)
                .and_then(|url| mango_tls::url_host(&url));
            let valid = host.is_some_and(|h| mango_tls::valid_for_host(cert, &h));
            if !valid {
                self.count(&self.dropped.wrong_certificate);
                return false;
            }
        }
        true
    }
}

/// The verified client certificate of a mutual-TLS connection (its leaf), if there is one.
fn peer_certificate<T>(request: &Request<T>) -> Option<Vec<u8>> {
    request
        .peer_certs()
        .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()))
}

#[tonic::async_trait]
impl<O: Send + 'static> Peer for PeerService<O> {
    async fn stream(
        &self,
        request: Request<Streaming<PeerBatch>>,
    ) -> Result<Response<PeerStreamEnd>, Status> {
        let certificate = peer_certificate(&request);
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            self.check_cluster(batch.cluster_id)?;
            for framed in batch.messages {
                let Some((group, bytes)) = unframe(&framed) else {
                    return Err(Status::invalid_argument("peer message without a group"));
                };
                let message = Message::parse_from_bytes(bytes)
                    .map_err(|e| Status::invalid_argument(format!("raft message: {e}")))?;
                if message.get_msg_type() == MessageType::MsgSnapshot {
                    // Snapshots come by the Snapshot call, with their data.
                    continue;
                }
                if !self.admit(group, &message, certificate.as_deref()) {
                    continue;
                }
                self.handle
                    .step(group, message)
                    .map_err(|e| Status::unavailable(e.to_string()))?;
            }
        }
        Ok(Response::new(PeerStreamEnd {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotAck>, Status> {
        let certificate = peer_certificate(&request);
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        self.check_cluster(first.cluster_id)?;
        let message = Message::parse_from_bytes(&first.message)
            .map_err(|e| Status::invalid_argument(format!("raft message: {e}")))?;
        let group = first.group;
        let refuse = |why: &str| {
            self.count(&self.dropped.bad_snapshot);
            Status::failed_precondition(format!("mango: snapshot refused: {why}"))
        };
        if message.get_msg_type() != MessageType::MsgSnapshot {
            return Err(refuse("not a snapshot message"));
        }
        if !self.admit(group, &message, certificate.as_deref()) {
            return Err(refuse("not from a member of this group"));
        }
        let status = self
            .handle
            .status(group)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        if status.leader != message.get_from() || message.get_term() < status.term {
            return Err(refuse("only the current leader sends snapshots"));
        }
        let index = message.get_snapshot().get_metadata().get_index();
        let path = self.sink.staging_path(group, index);
        let tmp = path.with_extension("partial");
        let staged = self.stage(&tmp, &first.data, &mut stream).await;
        if let Err(e) = staged {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(e) = self.sink.verify(group, &tmp) {
            let _ = std::fs::remove_file(&tmp);
            return Err(refuse(&format!("its bytes do not check out: {e}")));
        }
        std::fs::rename(&tmp, &path)
            .map_err(|e| Status::internal(format!("staging snapshot: {e}")))?;
        self.handle
            .step(group, message)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(SnapshotAck {}))
    }

    async fn identify(
        &self,
        request: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        let certificate = peer_certificate(&request);
        let wanted = request.into_inner().peer_urls;
        // With peer certificates, the asker must be the machine it asks about: its
        // certificate must name the host of one of the peer URLs it asks for.
        if let Some(cert) = certificate {
            let named = wanted
                .iter()
                .filter_map(|url| mango_tls::url_host(url))
                .any(|host| mango_tls::valid_for_host(&cert, &host));
            if !named {
                self.count(&self.dropped.wrong_certificate);
                return Err(Status::permission_denied(
                    "mango: the peer certificate names none of the asked peer URLs' hosts",
                ));
            }
        }
        let peers = self.directory.entries();
        let mut ids: Vec<u64> = peers
            .iter()
            .filter(|(_, url)| wanted.contains(url))
            .map(|(id, _)| *id)
            .collect();
        ids.dedup();
        Ok(Response::new(IdentifyResponse {
            // Two ids for one URL: not a question this voter can answer.
            id: if ids.len() == 1 { ids[0] } else { 0 },
            peers: peers
                .into_iter()
                .map(|(id, url)| PeerAddress { id, url })
                .collect(),
            cluster_id: self.cluster_id,
        }))
    }
}

impl<O: Send + 'static> PeerService<O> {
    /// Writes the snapshot's bytes to `tmp`, up to the size cap, and syncs it.
    async fn stage(
        &self,
        tmp: &std::path::Path,
        first: &[u8],
        stream: &mut Streaming<SnapshotChunk>,
    ) -> Result<(), Status> {
        let io = |e: std::io::Error| Status::internal(format!("staging snapshot: {e}"));
        let mut file = std::fs::File::create(tmp).map_err(io)?;
        let mut size = 0u64;
        let mut write = |data: &[u8]| -> Result<(), Status> {
            size += data.len() as u64;
            if size > self.max_snapshot_bytes {
                self.count(&self.dropped.bad_snapshot);
                return Err(Status::resource_exhausted(format!(
                    "mango: snapshot larger than {} bytes",
                    self.max_snapshot_bytes
                )));
            }
            file.write_all(data).map_err(io)
        };
        write(first)?;
        while let Some(chunk) = stream.message().await? {
            write(&chunk.data)?;
        }
        file.sync_all().map_err(io)
    }
}
