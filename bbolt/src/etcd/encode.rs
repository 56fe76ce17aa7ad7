//! Writing an [`EtcdSnapshot`] as etcd 3.4's buckets.

use std::collections::HashSet;

use prost::Message;

use super::records::{Member, Revision};
use super::{
    ALARM, AUTH, AUTH_ENABLED, AUTH_REVISION, AUTH_ROLES, AUTH_USERS, BUCKETS, CLUSTER,
    CLUSTER_VERSION, CONSISTENT_INDEX, EtcdError, EtcdSnapshot, FINISHED_COMPACT_REV, KEY, LEASE,
    MEMBERS, MEMBERS_REMOVED, META, SCHEDULED_COMPACT_REV,
};
use crate::DbBuilder;

impl EtcdSnapshot {
    /// The buckets of the snapshot, in etcd 3.4's layout: all ten buckets etcd creates (empty
    /// ones too), then every record under its key. Entries of [`EtcdSnapshot::other`] go in
    /// first, so a typed record wins over a verbatim one at the same key.
    pub fn to_db_builder(&self) -> Result<DbBuilder, EtcdError> {
        let mut db = DbBuilder::new();
        for name in BUCKETS {
            db.bucket_mut(name)?;
        }
        for e in &self.other {
            db.bucket_mut(e.bucket.clone())?
                .put(e.key.clone(), e.value.clone())?;
        }

        let keys = db.bucket_mut(KEY)?;
        let mut seen = HashSet::with_capacity(self.revisions.len());
        for r in &self.revisions {
            if r.revision.main < 0 || r.revision.sub < 0 {
                return Err(EtcdError::BadKey {
                    bucket: KEY,
                    key: r.bucket_key(),
                    reason: "negative revision",
                });
            }
            if !seen.insert(r.revision) {
                return Err(EtcdError::DuplicateRevision(r.revision));
            }
            keys.put(r.bucket_key(), r.kv.encode_to_vec())?;
        }

        let leases = db.bucket_mut(LEASE)?;
        for l in &self.leases {
            leases.put(l.id.to_be_bytes(), l.encode_to_vec())?;
        }

        let meta = db.bucket_mut(META)?;
        if let Some(index) = self.consistent_index {
            meta.put(CONSISTENT_INDEX, index.to_be_bytes())?;
        }
        if let Some(rev) = self.compaction.scheduled {
            meta.put(SCHEDULED_COMPACT_REV, Revision::new(rev).to_bytes())?;
        }
        if let Some(rev) = self.compaction.finished {
            meta.put(FINISHED_COMPACT_REV, Revision::new(rev).to_bytes())?;
        }

        let members = db.bucket_mut(MEMBERS)?;
        for m in &self.members {
            let json = m.to_json().map_err(|e| EtcdError::BadValue {
                bucket: MEMBERS,
                key: Member::bucket_key(m.id),
                reason: e.to_string(),
            })?;
            members.put(Member::bucket_key(m.id), json)?;
        }
        let removed = db.bucket_mut(MEMBERS_REMOVED)?;
        for id in &self.removed_members {
            removed.put(Member::bucket_key(*id), "removed")?;
        }
        if let Some(version) = &self.cluster_version {
            db.bucket_mut(CLUSTER)?
                .put(CLUSTER_VERSION, version.as_bytes())?;
        }
        let alarms = db.bucket_mut(ALARM)?;
        for a in &self.alarms {
            alarms.put(a.encode_to_vec(), Vec::new())?;
        }

        let auth = db.bucket_mut(AUTH)?;
        // etcd writes `authEnabled` only when auth is first switched; absent means off, so a
        // store that never had auth on keeps the key absent, as etcd would.
        if self.auth.enabled {
            auth.put(AUTH_ENABLED, [1u8])?;
        }
        if let Some(rev) = self.auth.revision {
            auth.put(AUTH_REVISION, rev.to_be_bytes())?;
        }
        let users = db.bucket_mut(AUTH_USERS)?;
        for u in &self.auth.users {
            users.put(u.name.clone(), u.encode_to_vec())?;
        }
        let roles = db.bucket_mut(AUTH_ROLES)?;
        for r in &self.auth.roles {
            roles.put(r.name.clone(), r.encode_to_vec())?;
        }
        Ok(db)
    }
}
