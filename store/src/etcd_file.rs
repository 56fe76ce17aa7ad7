//! A group's state as etcd 3.4's snapshot layout ([`mango_bbolt::etcd::EtcdSnapshot`]), both
//! ways: [`ReadView::to_etcd`] for `Maintenance.Snapshot` (so `etcdctl snapshot save`,
//! `status` and `restore` work on what mango streams), and [`Store::import_etcd`] for
//! restoring a new cluster from a file saved from mango or from etcd 3.4.
//!
//! Mapping (mango's tables are described in `crate::mvcc`):
//! - `Revs` ↔ the `key` bucket, one entry per revision. etcd stores a tombstone's KeyValue
//!   with only the key; mango also sets `mod_revision`, put back on import, so a round trip
//!   gives the same bytes (and the same HashKV).
//! - `History` and `Live` are rebuilt on import from the revisions (`Live`: each key's last
//!   revision unless a tombstone); `LeaseKeys` from the live keys whose lease exists (etcd's
//!   restore attaches the same ones).
//! - `Leases` ↔ the `lease` bucket (TTL and checkpointed remaining TTL).
//! - The compacted revision ↔ `scheduledCompactRev`/`finishedCompactRev`; the export leaves
//!   out versions the compaction made unreachable even if physical compaction has not
//!   removed them yet.
//! - Auth (users, roles, enabled, revision) ↔ `auth`, `authUsers`, `authRoles`.
//! - Members and alarms are not imported: a restore founds a new cluster, whose members come
//!   from its own flags. The applied index starts at 0 with the new cluster's empty Raft log.

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;

use mango_bbolt::etcd::{Compaction, EtcdSnapshot, KeyRevision, Lease, Member};
use mango_proto::mvccpb::KeyValue;
use prost::Message;

use crate::backend::{Backend, BackendError, GroupId, ReadTables, Table, WriteTables};
use crate::encoding::{
    KeyMeta, LeaseRecord, Revision, encode_lease_id, history_key, split_history_key,
};
use crate::error::StoreError;
use crate::mvcc::{GroupState, KIND_DELETE, KIND_PUT, decode_rev_record};
use crate::store::{ReadView, Store};

/// The cluster version written into exported files (what etcd 3.4 writes).
const CLUSTER_VERSION: &str = "3.4.0";

/// Why a snapshot could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The snapshot's content is inconsistent (a revision that is not a valid key write).
    #[error("snapshot: {0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Backend(b) => ImportError::Backend(b),
            other => ImportError::Invalid(other.to_string()),
        }
    }
}

fn corrupt(table: Table, what: String) -> BackendError {
    BackendError::Corrupt { table, what }
}

impl<S: ReadTables> ReadView<S> {
    /// Everything this view holds in etcd 3.4's layout: every revision still reachable (the
    /// history since the compacted revision, and each key's version at it), leases, the
    /// compacted revision, the applied index as `consistent_index`, members and auth.
    /// Built in memory: its size is about the size of the data.
    pub fn to_etcd(&self) -> Result<EtcdSnapshot, BackendError> {
        let tables = self.snapshot();
        let state = self.state();
        let compacted = state.compact_revision;
        let kept_base = bases_at(tables, compacted)?;
        let mut revisions = Vec::new();
        let mut bad = None;
        tables.scan(Table::Revs, &[], None, false, &mut |k, v| {
            let Some(rev) = Revision::decode(k) else {
                bad = Some(corrupt(Table::Revs, format!("revision key {k:?}")));
                return ControlFlow::Break(());
            };
            if rev.main <= compacted && !kept_base.contains(&rev) {
                return ControlFlow::Continue(());
            }
            match decode_rev_record(v) {
                Ok((kind, kv)) => {
                    let tombstone = kind == KIND_DELETE;
                    let kv = if tombstone {
                        KeyValue {
                            key: kv.key,
                            ..Default::default()
                        }
                    } else {
                        kv
                    };
                    revisions.push(KeyRevision {
                        revision: mango_bbolt::etcd::Revision {
                            main: rev.main,
                            sub: rev.sub,
                        },
                        tombstone,
                        kv,
                    });
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    bad = Some(e);
                    ControlFlow::Break(())
                }
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        let leases = self
            .leases()?
            .into_iter()
            .map(|l| Lease {
                id: l.id,
                ttl: l.granted_ttl,
                remaining_ttl: l.remaining_ttl.unwrap_or(0),
            })
            .collect();
        let members = self
            .members()?
            .into_iter()
            .map(|m| Member {
                id: m.id,
                peer_urls: m.peer_urls,
                is_learner: m.is_learner,
                name: m.name,
                client_urls: m.client_urls,
            })
            .collect();
        let auth = self.auth();
        let compaction = (compacted > 0).then_some(compacted);
        Ok(EtcdSnapshot {
            revisions,
            leases,
            consistent_index: Some(state.applied_index),
            compaction: Compaction {
                scheduled: compaction,
                finished: compaction,
            },
            members,
            cluster_version: Some(CLUSTER_VERSION.into()),
            auth: mango_bbolt::etcd::Auth {
                enabled: auth.enabled(),
                revision: Some(auth.revision()),
                users: load_all(tables, Table::AuthUsers)?,
                roles: load_all(tables, Table::AuthRoles)?,
            },
            ..Default::default()
        })
    }
}

/// For each key, its newest version at or below `compacted` if that is not a tombstone: what
/// etcd's compaction keeps below the compacted revision.
fn bases_at<R: ReadTables + ?Sized>(
    tables: &R,
    compacted: i64,
) -> Result<HashSet<Revision>, BackendError> {
    let mut kept = HashSet::new();
    if compacted <= 0 {
        return Ok(kept);
    }
    let mut current: Vec<u8> = Vec::new();
    let mut base: Option<(Revision, u8)> = None;
    let mut bad = None;
    let mut flush = |base: &mut Option<(Revision, u8)>| {
        if let Some((rev, kind)) = base.take()
            && kind != KIND_DELETE
        {
            kept.insert(rev);
        }
    };
    tables.scan(Table::History, &[], None, false, &mut |k, v| {
        let Some((prefix, rev)) = split_history_key(k) else {
            bad = Some(corrupt(Table::History, format!("history key {k:?}")));
            return ControlFlow::Break(());
        };
        if prefix != current.as_slice() {
            flush(&mut base);
            current.clear();
            current.extend_from_slice(prefix);
        }
        if rev.main <= compacted {
            base = Some((rev, v.first().copied().unwrap_or(KIND_PUT)));
        }
        ControlFlow::Continue(())
    })?;
    flush(&mut base);
    match bad {
        Some(e) => Err(e),
        None => Ok(kept),
    }
}

fn load_all<M: Message + Default, R: ReadTables + ?Sized>(
    tables: &R,
    table: Table,
) -> Result<Vec<M>, BackendError> {
    let mut out = Vec::new();
    let mut bad = None;
    tables.scan(table, &[], None, false, &mut |_, v| match M::decode(v) {
        Ok(m) => {
            out.push(m);
            ControlFlow::Continue(())
        }
        Err(e) => {
            bad = Some(corrupt(table, e.to_string()));
            ControlFlow::Break(())
        }
    })?;
    match bad {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

impl<B: Backend> Store<B> {
    /// Replaces all of `group`'s state with `snapshot`, in one durable transaction (nothing
    /// changes on error), as the state of a new cluster: applied index 0, no members, the
    /// snapshot's revisions, leases, compaction and auth. Returns the state installed.
    pub fn import_etcd(
        &self,
        group: GroupId,
        snapshot: &EtcdSnapshot,
    ) -> Result<GroupState, ImportError> {
        let state = self.with_writer(group, || {
            self.backend().write(group, true, |tables| {
                for table in Table::ALL {
                    tables.clear(table)?;
                }
                write_all(tables, snapshot)
            })
        })?;
        self.republish(group)?;
        Ok(state)
    }
}

fn write_all(
    tables: &mut dyn WriteTables,
    snapshot: &EtcdSnapshot,
) -> Result<GroupState, StoreError> {
    let invalid = |what: String| StoreError::Malformed(format!("snapshot: {what}"));
    // Each key's newest revision: Live after the import.
    let mut live: BTreeMap<&[u8], (Revision, &KeyRevision)> = BTreeMap::new();
    let mut last: Option<Revision> = None;
    for r in &snapshot.revisions {
        let rev = Revision::new(r.revision.main, r.revision.sub);
        if last.is_some_and(|l| l >= rev) {
            return Err(invalid(format!("revision {rev:?} out of order")));
        }
        last = Some(rev);
        if r.kv.key.is_empty() {
            return Err(invalid(format!("revision {rev:?} has an empty key")));
        }
        let (kind, kv) = if r.tombstone {
            let kv = KeyValue {
                key: r.kv.key.clone(),
                mod_revision: rev.main,
                ..Default::default()
            };
            (KIND_DELETE, kv)
        } else {
            (KIND_PUT, r.kv.clone())
        };
        let mut record = Vec::with_capacity(1 + kv.encoded_len());
        record.push(kind);
        kv.encode(&mut record)
            .map_err(|e| BackendError::Engine(e.to_string()))?;
        tables.put(Table::Revs, &rev.encode(), &record)?;
        tables.put(Table::History, &history_key(&r.kv.key, rev), &[kind])?;
        live.insert(&r.kv.key, (rev, r));
    }
    for l in &snapshot.leases {
        let record = LeaseRecord {
            ttl: l.ttl,
            remaining_ttl: l.remaining_ttl,
        };
        tables.put(Table::Leases, &encode_lease_id(l.id), &record.encode())?;
    }
    let leases: HashSet<i64> = snapshot.leases.iter().map(|l| l.id).collect();
    for (key, (rev, r)) in live {
        if r.tombstone {
            continue;
        }
        let meta = KeyMeta {
            create: r.kv.create_revision,
            modified: rev,
            version: r.kv.version,
            lease: r.kv.lease,
        };
        tables.put(Table::Live, key, &meta.encode())?;
        if r.kv.lease != 0 && leases.contains(&r.kv.lease) {
            crate::lease::attach(tables, r.kv.lease, key)?;
        }
    }
    for user in &snapshot.auth.users {
        tables.put(Table::AuthUsers, &user.name, &user.encode_to_vec())?;
    }
    for role in &snapshot.auth.roles {
        tables.put(Table::AuthRoles, &role.name, &role.encode_to_vec())?;
    }
    crate::auth::state::set_enabled(tables, snapshot.auth.enabled)?;
    if let Some(rev) = snapshot.auth.revision {
        crate::auth::state::set_revision(tables, rev)?;
    }
    let compact = snapshot
        .compaction
        .scheduled
        .max(snapshot.compaction.finished);
    let state = GroupState {
        applied_index: 0,
        applied_term: 0,
        revision: snapshot.current_revision().max(compact.unwrap_or(0)).max(1),
        compact_revision: compact.filter(|&c| c > 0).unwrap_or(-1),
        compacted_through: snapshot.compaction.finished.unwrap_or(0).max(0),
    };
    state.save(tables)?;
    Ok(state)
}
