//! etcd's Maintenance service: status, alarms, defragmentation, hashes, snapshots and leader
//! transfer.

use std::sync::Arc;

use mango_proto::etcdserverpb::alarm_request::AlarmAction;
use mango_proto::etcdserverpb::maintenance_server::Maintenance;
use mango_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, ResponseHeader, SnapshotRequest, SnapshotResponse,
    StatusRequest, StatusResponse,
};
use mango_store::backend::redb::RedbSnapshot;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::auth::{authorize, authorize_admin, authorize_admin_raw};
use crate::error::{node_status, store_status};
use crate::node::EtcdNode;

use mango_rpctypes::{LAG_ENTRIES_HEADER as LAG_ENTRIES, LAG_MS_HEADER as LAG_MS};

/// The version Status reports. mango speaks etcd's 3.4 API (what Debian's etcdctl 3.4.23
/// uses), and clients parse this string to pick features, so it names that etcd release.
pub const ETCD_VERSION: &str = "3.4.23";

/// Bytes of snapshot per streamed message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Snapshot messages queued ahead of the client (each about [`SNAPSHOT_CHUNK_BYTES`]).
const SNAPSHOT_CHANNEL: usize = 2;

/// Snapshot streams a node serves at once; beyond them a request gets etcd's "too many
/// requests" at once (before, each waiting or unread stream held a blocking thread, and a
/// few hundred starved every other `spawn_blocking` of the process).
pub const MAX_SNAPSHOT_STREAMS: usize = 4;

/// How long a snapshot stream may wait for its client to read before it is closed.
const SNAPSHOT_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// The Maintenance service over a node.
pub struct MaintenanceService<N> {
    /// The node whose status, state and alarms are served.
    node: Arc<N>,
    /// One snapshot file built at a time (each is held whole in memory while it streams).
    builds: Arc<tokio::sync::Semaphore>,
    /// Slots of [`MAX_SNAPSHOT_STREAMS`].
    streams: Arc<tokio::sync::Semaphore>,
}

impl<N: EtcdNode> MaintenanceService<N> {
    /// A Maintenance service over `node`.
    pub fn new(node: Arc<N>) -> Self {
        Self {
            node,
            builds: Arc::new(tokio::sync::Semaphore::new(1)),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_SNAPSHOT_STREAMS)),
        }
    }

    /// A header at the node's latest applied revision, as etcd's maintenance answers carry.
    fn header(&self) -> Result<ResponseHeader, Status> {
        let view = self.node.read_view().map_err(node_status)?;
        Ok(self.node.header(view.revision()))
    }
}

/// The alarms of `alarms` that a GET for `alarm` lists (etcd: `NONE` lists all).
fn alarms_of_type(alarms: Vec<AlarmMember>, alarm: i32) -> Vec<AlarmMember> {
    if alarm == AlarmType::None as i32 {
        return alarms;
    }
    alarms.into_iter().filter(|a| a.alarm == alarm).collect()
}

/// Builds the etcd 3.4 snapshot file of `view` (bbolt, with etcd's trailing SHA-256); runs
/// on a blocking thread.
fn build_etcd_snapshot(view: Arc<mango_store::ReadView<RedbSnapshot>>) -> Result<Vec<u8>, Status> {
    let snapshot = view.to_etcd().map_err(|e| store_status(e.into()))?;
    drop(view);
    snapshot
        .to_bytes(true)
        .map_err(|e| Status::internal(format!("snapshot: {e}")))
}

/// Streams one snapshot: waits for the build permit (one file built at a time), builds the
/// file on a blocking thread, then sends it from this task in chunks of
/// [`SNAPSHOT_CHUNK_BYTES`]: a client that does not read parks no thread, and one that
/// stops reading for [`SNAPSHOT_STALL`] loses its stream (and its slot). `remaining_bytes`
/// is exact (the file is built before the first message); the last message has 0.
async fn stream_etcd_snapshot(
    view: Arc<mango_store::ReadView<RedbSnapshot>>,
    header: ResponseHeader,
    tx: mpsc::Sender<Result<SnapshotResponse, Status>>,
    builds: Arc<tokio::sync::Semaphore>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let Ok(build) = builds.acquire_owned().await else {
        return;
    };
    let built = tokio::task::spawn_blocking(move || {
        let _build = build;
        build_etcd_snapshot(view)
    })
    .await;
    let bytes = match built {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(status)) => {
            let _ = tx.send_timeout(Err(status), SNAPSHOT_STALL).await;
            return;
        }
        Err(_) => return,
    };
    let total = bytes.len();
    let mut sent = 0usize;
    for chunk in bytes.chunks(SNAPSHOT_CHUNK_BYTES) {
        sent += chunk.len();
        let message = SnapshotResponse {
            header: Some(header),
            remaining_bytes: (total - sent) as u64,
            blob: chunk.to_vec(),
        };
        // The client went away, or stopped reading: stop.
        if let Err(e) = tx.send_timeout(Ok(message), SNAPSHOT_STALL).await {
            if matches!(e, mpsc::error::SendTimeoutError::Timeout(_)) {
                tracing::warn!(sent, total, "snapshot stream stalled; closed");
            }
            return;
        }
    }
}

#[tonic::async_trait]
impl<N: EtcdNode> Maintenance for MaintenanceService<N> {
    /// GET lists the alarms (of one type, or all for `NONE`). ACTIVATE raises the alarm
    /// through Raft and answers with it (a NOSPACE alarm then refuses puts, writing txns and
    /// lease grants on every member; CORRUPT refuses every write); DEACTIVATE disarms it and
    /// answers with it if it was raised. As etcd 3.4: ACTIVATE of `NONE` records a `NONE`
    /// alarm (listed, blocking nothing), an unknown action gets an empty answer.
    async fn alarm(
        &self,
        request: tonic::Request<AlarmRequest>,
    ) -> Result<tonic::Response<AlarmResponse>, Status> {
        // Listing alarms is anyone's; changing them is root's (mango's rule: etcd 3.4 lets any
        // user disarm).
        let caller = if request.get_ref().action == AlarmAction::Get as i32 {
            authorize(&*self.node, &request).await?
        } else {
            authorize_admin(&*self.node, &request).await?
        };
        let req = request.into_inner();
        let alarms = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => alarms_of_type(self.node.alarms(), req.alarm),
            Ok(AlarmAction::Activate) => {
                let raised = AlarmMember {
                    member_id: req.member_id,
                    alarm: req.alarm,
                };
                self.node
                    .change_alarm(req, &caller)
                    .await
                    .map_err(node_status)?;
                vec![raised]
            }
            Ok(AlarmAction::Deactivate) => {
                let target = AlarmMember {
                    member_id: req.member_id,
                    alarm: req.alarm,
                };
                let was_active = self.node.alarms().contains(&target);
                self.node
                    .change_alarm(req, &caller)
                    .await
                    .map_err(node_status)?;
                if was_active { vec![target] } else { Vec::new() }
            }
            Err(_) => Vec::new(),
        };
        Ok(tonic::Response::new(AlarmResponse {
            header: Some(self.header()?),
            alarms,
        }))
    }

    async fn status(
        &self,
        _request: tonic::Request<StatusRequest>,
    ) -> Result<tonic::Response<StatusResponse>, Status> {
        let status = self.node.status();
        let lag = status.lag;
        let lag_entries = status.raft_index.saturating_sub(status.raft_applied_index);
        let mut response = tonic::Response::new(StatusResponse {
            header: Some(self.header()?),
            version: ETCD_VERSION.to_string(),
            db_size: status.db_size,
            leader: status.leader,
            raft_index: status.raft_index,
            raft_term: status.raft_term,
            raft_applied_index: status.raft_applied_index,
            errors: status.errors,
            db_size_in_use: status.db_size_in_use,
            is_learner: status.is_learner,
        });
        if self.node.read_view().is_ok_and(|v| v.auth().enabled()) {
            response.metadata_mut().insert(
                mango_rpctypes::AUTH_ENABLED_HEADER,
                tonic::metadata::MetadataValue::from_static("true"),
            );
        }
        if let Some(lag) = lag {
            let md = response.metadata_mut();
            md.insert(
                LAG_MS,
                lag.as_millis()
                    .to_string()
                    .parse()
                    .map_err(|_| Status::internal("lag"))?,
            );
            md.insert(
                LAG_ENTRIES,
                lag_entries
                    .to_string()
                    .parse()
                    .map_err(|_| Status::internal("lag"))?,
            );
        }
        Ok(response)
    }

    async fn defragment(
        &self,
        request: tonic::Request<DefragmentRequest>,
    ) -> Result<tonic::Response<DefragmentResponse>, Status> {
        authorize_admin_raw(&*self.node, &request).await?;
        self.node.defragment().await.map_err(node_status)?;
        Ok(tonic::Response::new(DefragmentResponse {
            header: Some(self.header()?),
        }))
    }

    /// etcd hashes its whole backend file here; mango answers the HashKV hash at the current
    /// revision, which is equally comparable across members and independent of file layout.
    async fn hash(
        &self,
        request: tonic::Request<HashRequest>,
    ) -> Result<tonic::Response<HashResponse>, Status> {
        authorize_admin_raw(&*self.node, &request).await?;
        let view = self.node.read_view().map_err(node_status)?;
        let hash = view.hash_kv(0).map_err(store_status)?;
        Ok(tonic::Response::new(HashResponse {
            header: Some(self.node.header(view.revision())),
            hash: hash.hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: tonic::Request<HashKvRequest>,
    ) -> Result<tonic::Response<HashKvResponse>, Status> {
        authorize_admin_raw(&*self.node, &request).await?;
        let req = request.into_inner();
        let view = self.node.read_view().map_err(node_status)?;
        let hash = view.hash_kv(req.revision).map_err(store_status)?;
        Ok(tonic::Response::new(HashKvResponse {
            header: Some(self.node.header(view.revision())),
            hash: hash.hash,
            compact_revision: hash.compact_revision,
            hash_revision: hash.hash_revision,
        }))
    }

    type SnapshotStream = ReceiverStream<Result<SnapshotResponse, Status>>;

    /// Streams the node's latest applied state as etcd 3.4's snapshot file (see
    /// `mango_store`'s `etcd_file`): a bbolt database with the `key`, `lease`, `meta`, `auth`
    /// and `members` buckets, followed by its SHA-256, which is what `etcdctl snapshot save`
    /// checks and `etcdctl snapshot status`/`restore` read.
    ///
    /// Memory: mango-bbolt's writer lays a file out whole, so the file is built in memory
    /// (about the size of the data) before it streams; one file is built at a time. At most
    /// [`MAX_SNAPSHOT_STREAMS`] streams at once (beyond: "etcdserver: too many requests"),
    /// none holding a thread while its client does not read, each closed after
    /// [`SNAPSHOT_STALL`] without reading.
    async fn snapshot(
        &self,
        request: tonic::Request<SnapshotRequest>,
    ) -> Result<tonic::Response<Self::SnapshotStream>, Status> {
        authorize_admin_raw(&*self.node, &request).await?;
        let slot = self
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| mango_rpctypes::TOO_MANY_REQUESTS.status())?;
        let view = self.node.read_view().map_err(node_status)?;
        let header = self.node.header(view.revision());
        let (tx, rx) = mpsc::channel(SNAPSHOT_CHANNEL);
        tokio::spawn(stream_etcd_snapshot(
            view,
            header,
            tx,
            self.builds.clone(),
            slot,
        ));
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }

    async fn move_leader(
        &self,
        request: tonic::Request<MoveLeaderRequest>,
    ) -> Result<tonic::Response<MoveLeaderResponse>, Status> {
        // Root only (mango's rule: etcd 3.4 checks nothing here).
        authorize_admin(&*self.node, &request).await?;
        let req = request.into_inner();
        self.node
            .move_leader(req.target_id)
            .await
            .map_err(node_status)?;
        Ok(tonic::Response::new(MoveLeaderResponse {
            header: Some(self.header()?),
        }))
    }

    /// Downgrades arrived in etcd 3.5; mango speaks the 3.4 API, where the method is unknown.
    async fn downgrade(
        &self,
        _request: tonic::Request<DowngradeRequest>,
    ) -> Result<tonic::Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented(
            "unknown method Downgrade for service etcdserverpb.Maintenance",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(member_id: u64, alarm: AlarmType) -> AlarmMember {
        AlarmMember {
            member_id,
            alarm: alarm as i32,
        }
    }

    #[test]
    fn get_lists_alarms_of_one_type_or_all() {
        let all = vec![alarm(1, AlarmType::Nospace), alarm(2, AlarmType::Corrupt)];
        assert_eq!(alarms_of_type(all.clone(), AlarmType::None as i32), all);
        assert_eq!(
            alarms_of_type(all.clone(), AlarmType::Corrupt as i32),
            vec![alarm(2, AlarmType::Corrupt)]
        );
    }
}
