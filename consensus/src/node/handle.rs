//! [`RaftHandle`]: the async face of the node's Raft loop. Cheap to clone.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use arc_swap::ArcSwap;
use raft::eraftpb::{ConfChangeV2, Message};
use tokio::sync::{oneshot, watch};

use super::{GroupId, RaftError};

/// What a group looks like from outside the loop, refreshed after every Ready pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupStatus {
    /// The leader this node believes in (0: none).
    pub leader: u64,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Voters in the current configuration.
    pub voters: Vec<u64>,
    /// Raft learners in the current configuration.
    pub learners: Vec<u64>,
    /// How long ago this node last heard from the leader (zero on the leader, whose
    /// leadership check_quorum confirms every election timeout; unknown leader: the time
    /// since the last election began).
    pub leader_contact_age: std::time::Duration,
    /// On the leader, what it knows of every other member (empty elsewhere).
    pub progress: Vec<PeerProgress>,
}

/// The leader's view of one member's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerProgress {
    /// The member.
    pub id: u64,
    /// The highest index known to be in its log.
    pub matched: u64,
    /// Whether it answered within the last election timeout (raft-rs's check-quorum view).
    pub recent_active: bool,
}

/// A command for the Raft loop.
pub(crate) enum Command<O> {
    Propose {
        group: GroupId,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<O, RaftError>>,
    },
    ConfChange {
        group: GroupId,
        change: ConfChangeV2,
        reply: oneshot::Sender<Result<O, RaftError>>,
    },
    ReadIndex {
        group: GroupId,
        reply: oneshot::Sender<Result<u64, RaftError>>,
    },
    Step {
        group: GroupId,
        message: Box<Message>,
    },
    TransferLeader {
        group: GroupId,
        to: u64,
    },
    Unreachable {
        group: GroupId,
        to: u64,
    },
    SnapshotDone {
        group: GroupId,
        to: u64,
        ok: bool,
    },
    /// The apply thread applied `group` up to `index`.
    Applied {
        group: GroupId,
        index: u64,
    },
    /// The persist thread wrote the changes of these Readies `(group, ready number)`.
    Persisted {
        readies: Vec<(GroupId, u64)>,
    },
    /// The apply or persist thread failed: the node must stop.
    Fatal(String),
    Stop,
}

/// Per-group state shared with handles.
pub(crate) struct SharedGroup {
    pub status: ArcSwap<GroupStatus>,
    pub applied: watch::Sender<u64>,
}

/// The handle's view of the node.
pub(crate) struct Shared {
    pub id: u64,
    pub groups: HashMap<GroupId, SharedGroup>,
}

/// The async handle to a running node.
pub struct RaftHandle<O> {
    pub(crate) tx: Sender<Command<O>>,
    pub(crate) shared: Arc<Shared>,
}

impl<O> Clone for RaftHandle<O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<O: Send + 'static> RaftHandle<O> {
    fn send(&self, cmd: Command<O>) -> Result<(), RaftError> {
        self.tx.send(cmd).map_err(|_| RaftError::Stopped)
    }

    fn group(&self, group: GroupId) -> Result<&SharedGroup, RaftError> {
        self.shared
            .groups
            .get(&group)
            .ok_or(RaftError::UnknownGroup(group))
    }

    /// This node's Raft id.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Proposes `data` to `group` and waits until it is applied here; returns what the state
    /// machine answered for it. A proposal lost to a leader change never answers: callers
    /// bound the wait with a timeout.
    pub async fn propose(&self, group: GroupId, data: Vec<u8>) -> Result<O, RaftError> {
        self.group(group)?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::Propose { group, data, reply })?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// Proposes a configuration change and waits until it is applied here.
    pub async fn conf_change(&self, group: GroupId, change: ConfChangeV2) -> Result<O, RaftError> {
        self.group(group)?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::ConfChange {
            group,
            change,
            reply,
        })?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// The commit index as of now, confirmed by a quorum (ReadIndex). Requests waiting at the
    /// same time share one quorum round.
    pub async fn read_index(&self, group: GroupId) -> Result<u64, RaftError> {
        self.group(group)?;
        let (reply, rx) = oneshot::channel();
        self.send(Command::ReadIndex { group, reply })?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// The applied index of `group`, as it changes.
    pub fn applied_updates(&self, group: GroupId) -> Result<watch::Receiver<u64>, RaftError> {
        Ok(self.group(group)?.applied.subscribe())
    }

    /// Waits until `group` has applied `index`.
    pub async fn wait_applied(&self, group: GroupId, index: u64) -> Result<(), RaftError> {
        let mut rx = self.group(group)?.applied.subscribe();
        rx.wait_for(|applied| *applied >= index)
            .await
            .map_err(|_| RaftError::Stopped)?;
        Ok(())
    }

    /// Hands a message from a peer to Raft.
    pub fn step(&self, group: GroupId, message: Message) -> Result<(), RaftError> {
        self.send(Command::Step {
            group,
            message: Box::new(message),
        })
    }

    /// Asks the leader of `group` to hand leadership to `to`.
    pub fn transfer_leader(&self, group: GroupId, to: u64) -> Result<(), RaftError> {
        self.send(Command::TransferLeader { group, to })
    }

    /// Tells Raft a peer could not be reached.
    pub fn report_unreachable(&self, group: GroupId, to: u64) {
        let _ = self.send(Command::Unreachable { group, to });
    }

    /// Tells Raft whether a snapshot reached a peer.
    pub fn report_snapshot(&self, group: GroupId, to: u64, ok: bool) {
        let _ = self.send(Command::SnapshotDone { group, to, ok });
    }

    /// The latest status of `group`.
    pub fn status(&self, group: GroupId) -> Result<GroupStatus, RaftError> {
        Ok(self.group(group)?.status.load().as_ref().clone())
    }

    /// Stops the loop (pending requests fail with [`RaftError::Stopped`]).
    pub fn stop(&self) {
        let _ = self.send(Command::Stop);
    }
}
