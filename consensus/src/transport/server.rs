//! The receiving side: the `mangopb.Peer` gRPC service.

use std::io::Write;
use std::sync::Arc;

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

/// Serves peers' Raft traffic into the local node.
pub struct PeerService<O> {
    handle: RaftHandle<O>,
    sink: Arc<dyn SnapshotSink>,
    /// The node's address book, for `Identify`.
    directory: PeerUrls,
}

impl<O> PeerService<O> {
    /// A service stepping messages into `handle`, staging snapshots through `sink`, and
    /// answering `Identify` from `directory` (the address book the transport sends with).
    pub fn new(handle: RaftHandle<O>, sink: Arc<dyn SnapshotSink>, directory: PeerUrls) -> Self {
        Self {
            handle,
            sink,
            directory,
        }
    }
}

#[tonic::async_trait]
impl<O: Send + 'static> Peer for PeerService<O> {
    async fn stream(
        &self,
        request: Request<Streaming<PeerBatch>>,
    ) -> Result<Response<PeerStreamEnd>, Status> {
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
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
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let message = Message::parse_from_bytes(&first.message)
            .map_err(|e| Status::invalid_argument(format!("raft message: {e}")))?;
        let index = message.get_snapshot().get_metadata().get_index();
        let path = self.sink.staging_path(first.group, index);
        let tmp = path.with_extension("partial");
        let mut file = std::fs::File::create(&tmp)
            .map_err(|e| Status::internal(format!("staging snapshot: {e}")))?;
        let mut write = |data: &[u8]| {
            file.write_all(data)
                .map_err(|e| Status::internal(format!("staging snapshot: {e}")))
        };
        write(&first.data)?;
        while let Some(chunk) = stream.message().await? {
            write(&chunk.data)?;
        }
        file.sync_all()
            .map_err(|e| Status::internal(format!("staging snapshot: {e}")))?;
        drop(file);
        std::fs::rename(&tmp, &path)
            .map_err(|e| Status::internal(format!("staging snapshot: {e}")))?;
        self.handle
            .step(first.group, message)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(SnapshotAck {}))
    }

    async fn identify(
        &self,
        request: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        let wanted = request.into_inner().peer_urls;
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
        }))
    }
}
