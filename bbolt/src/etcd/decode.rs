//! Reading etcd 3.4's buckets out of a [`Db`] into an [`EtcdSnapshot`].

use prost::Message;

use super::records::{KeyRevision, Lease, Member, Revision};
use super::{
    ALARM, AUTH, AUTH_ENABLED, AUTH_REVISION, AUTH_ROLES, AUTH_USERS, CLUSTER, CLUSTER_VERSION,
    CONSISTENT_INDEX, EtcdError, EtcdSnapshot, FINISHED_COMPACT_REV, KEY, LEASE, MEMBERS,
    MEMBERS_REMOVED, META, OtherEntry, SCHEDULED_COMPACT_REV,
};
use crate::{Db, Value};

fn bad_value(bucket: &'static str, key: &[u8], reason: impl ToString) -> EtcdError {
    EtcdError::BadValue {
        bucket,
        key: key.to_vec(),
        reason: reason.to_string(),
    }
}

fn decode<M: Message + Default>(
    bucket: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<M, EtcdError> {
    M::decode(bytes).map_err(|e| bad_value(bucket, key, e))
}

fn be_u64(bucket: &'static str, key: &[u8], value: &[u8]) -> Result<u64, EtcdError> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| bad_value(bucket, key, "expected 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

fn revision_main(key: &[u8], value: &[u8]) -> Result<i64, EtcdError> {
    Revision::from_bytes(value)
        .map(|r| r.main)
        .ok_or_else(|| bad_value(META, key, "expected revision bytes"))
}

/// The `key` bucket of `db` one revision at a time, in revision order, decoded as it goes:
/// for a large database, migrate from this rather than hold [`EtcdSnapshot::revisions`].
pub fn key_revisions(
    db: &Db,
) -> Result<impl Iterator<Item = Result<KeyRevision, EtcdError>> + '_, EtcdError> {
    let bucket = db
        .bucket(KEY.as_bytes())?
        .ok_or(EtcdError::MissingBucket(KEY))?;
    Ok(bucket.iter().map(|entry| {
        let entry = entry?;
        let Value::Data(value) = entry.value else {
            return Err(EtcdError::NestedBucket {
                bucket: KEY.to_owned(),
                key: entry.key.to_vec(),
            });
        };
        let (revision, tombstone) = KeyRevision::parse_bucket_key(entry.key)?;
        let kv = decode(KEY, entry.key, value)?;
        Ok(KeyRevision {
            revision,
            tombstone,
            kv,
        })
    }))
}

impl EtcdSnapshot {
    /// Reads every bucket of `db` as etcd 3.4 lays them out. The `key` and `meta` buckets
    /// must exist (etcd creates them first); the others may be absent, as if empty.
    pub fn from_db(db: &Db) -> Result<Self, EtcdError> {
        let mut out = Self::default();
        let (mut has_key, mut has_meta) = (false, false);
        for top in db.root().iter() {
            let top = top?;
            let Value::Bucket(bucket) = top.value else {
                return Err(EtcdError::NotABucket(top.key.to_vec()));
            };
            has_key |= top.key == KEY.as_bytes();
            has_meta |= top.key == META.as_bytes();
            for entry in bucket.iter() {
                let entry = entry?;
                let Value::Data(value) = entry.value else {
                    return Err(EtcdError::NestedBucket {
                        bucket: String::from_utf8_lossy(top.key).into_owned(),
                        key: entry.key.to_vec(),
                    });
                };
                out.decode_entry(top.key, entry.key, value)?;
            }
        }
        if !has_key {
            return Err(EtcdError::MissingBucket(KEY));
        }
        if !has_meta {
            return Err(EtcdError::MissingBucket(META));
        }
        Ok(out)
    }

    /// Files one entry of top-level bucket `bucket` into its typed place.
    fn decode_entry(&mut self, bucket: &[u8], key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        let is = |name: &str| bucket == name.as_bytes();
        let key_is = |name: &str| key == name.as_bytes();
        if is(KEY) {
            let (revision, tombstone) = KeyRevision::parse_bucket_key(key)?;
            let kv = decode(KEY, key, value)?;
            self.revisions.push(KeyRevision {
                revision,
                tombstone,
                kv,
            });
        } else if is(LEASE) {
            let id = be_u64(LEASE, key, key)? as i64;
            let lease: Lease = decode(LEASE, key, value)?;
            if lease.id != id {
                return Err(bad_value(
                    LEASE,
                    key,
                    format!("lease id {} under key {id}", lease.id),
                ));
            }
            self.leases.push(lease);
        } else if is(META) && key_is(CONSISTENT_INDEX) {
            self.consistent_index = Some(be_u64(META, key, value)?);
        } else if is(META) && key_is(SCHEDULED_COMPACT_REV) {
            self.compaction.scheduled = Some(revision_main(key, value)?);
        } else if is(META) && key_is(FINISHED_COMPACT_REV) {
            self.compaction.finished = Some(revision_main(key, value)?);
        } else if is(MEMBERS) {
            let id = Member::parse_bucket_key(MEMBERS, key)?;
            let member: Member =
                serde_json::from_slice(value).map_err(|e| bad_value(MEMBERS, key, e))?;
            if member.id != id {
                return Err(bad_value(
                    MEMBERS,
                    key,
                    format!("member id {:x}", member.id),
                ));
            }
            self.members.push(member);
        } else if is(MEMBERS_REMOVED) {
            self.removed_members
                .push(Member::parse_bucket_key(MEMBERS_REMOVED, key)?);
        } else if is(CLUSTER) && key_is(CLUSTER_VERSION) {
            let version = std::str::from_utf8(value).map_err(|e| bad_value(CLUSTER, key, e))?;
            self.cluster_version = Some(version.to_owned());
        } else if is(ALARM) {
            self.alarms.push(decode(ALARM, key, key)?);
        } else if is(AUTH) && key_is(AUTH_ENABLED) {
            // etcd: enabled only when the value is exactly [1].
            self.auth.enabled = value == [1];
        } else if is(AUTH) && key_is(AUTH_REVISION) {
            self.auth.revision = Some(be_u64(AUTH, key, value)?);
        } else if is(AUTH_USERS) {
            let user: mango_proto::authpb::User = decode(AUTH_USERS, key, value)?;
            if user.name != key {
                return Err(bad_value(AUTH_USERS, key, "user name differs from its key"));
            }
            self.auth.users.push(user);
        } else if is(AUTH_ROLES) {
            let role: mango_proto::authpb::Role = decode(AUTH_ROLES, key, value)?;
            if role.name != key {
                return Err(bad_value(AUTH_ROLES, key, "role name differs from its key"));
            }
            self.auth.roles.push(role);
        } else {
            self.other.push(OtherEntry {
                bucket: bucket.to_vec(),
                key: key.to_vec(),
                value: value.to_vec(),
            });
        }
        Ok(())
    }
}
