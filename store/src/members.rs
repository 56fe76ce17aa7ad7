//! The member registry: who is in the cluster, with names and URLs (etcd's `members` bucket),
//! and the cluster's alarms (etcd's `alarm` bucket).
//! Changed only by applying `MemberChange`s, which travel with Raft's configuration changes,
//! so every member's registry follows the same log.

use std::ops::ControlFlow;

use mango_proto::mangopb::member_change::Kind;
use mango_proto::mangopb::{MemberChange, MemberInfo};
use prost::Message;

use crate::backend::{BackendError, ReadTables, Table, WriteTables};

const PREFIX: &[u8] = b"member/";

fn key(id: u64) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Every member, by id.
pub(crate) fn list<R: ReadTables + ?Sized>(tables: &R) -> Result<Vec<MemberInfo>, BackendError> {
    let mut end = PREFIX.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let mut out = Vec::new();
    let mut corrupt = None;
    tables.scan(
        Table::Meta,
        PREFIX,
        Some(&end),
        false,
        &mut |_, v| match MemberInfo::decode(v) {
            Ok(m) => {
                out.push(m);
                ControlFlow::Continue(())
            }
            Err(e) => {
                corrupt = Some(e.to_string());
                ControlFlow::Break(())
            }
        },
    )?;
    match corrupt {
        Some(what) => Err(BackendError::Corrupt {
            table: Table::Meta,
            what,
        }),
        None => Ok(out),
    }
}

/// Applies one change. Adding a member that exists replaces it; removing or changing one that
/// does not exist does nothing (the configuration change was accepted by Raft regardless).
pub(crate) fn apply(
    tables: &mut dyn WriteTables,
    change: &MemberChange,
) -> Result<(), BackendError> {
    let Some(member) = &change.member else {
        return Ok(());
    };
    let k = key(member.id);
    let existing = tables
        .get(Table::Meta, &k)?
        .and_then(|v| MemberInfo::decode(v.as_slice()).ok());
    let updated = match (Kind::try_from(change.kind).unwrap_or(Kind::Add), existing) {
        (Kind::Add, _) => Some(member.clone()),
        (Kind::Remove, _) => {
            tables.delete(Table::Meta, &k)?;
            None
        }
        (Kind::Update, Some(mut m)) => {
            // An update names what changes: empty fields stay as they are (a member publishing
            // its name and client URLs at startup sends no peer URLs).
            if !member.peer_urls.is_empty() {
                m.peer_urls = member.peer_urls.clone();
            }
            if !member.name.is_empty() {
                m.name = member.name.clone();
            }
            if !member.client_urls.is_empty() {
                m.client_urls = member.client_urls.clone();
            }
            Some(m)
        }
        (Kind::Promote, Some(mut m)) => {
            m.is_learner = false;
            Some(m)
        }
        (_, None) => None,
    };
    if let Some(m) = updated {
        tables.put(Table::Meta, &k, &m.encode_to_vec())?;
    }
    Ok(())
}

const ALARM_PREFIX: &[u8] = b"alarm/";

fn alarm_key(member: u64, alarm: i32) -> Vec<u8> {
    let mut k = ALARM_PREFIX.to_vec();
    k.extend_from_slice(&member.to_be_bytes());
    k.extend_from_slice(&alarm.to_be_bytes());
    k
}

/// Raises (`ACTIVATE`) or clears (`DEACTIVATE`) one alarm of one member, exactly as etcd
/// 3.4's alarm store: the pair `(member, alarm)`, `NONE` included (etcd 3.4 records an
/// activated `NONE` and lists it; `etcdctl alarm disarm` clears each listed alarm in turn).
pub(crate) fn apply_alarm(
    tables: &mut dyn WriteTables,
    req: &mango_proto::etcdserverpb::AlarmRequest,
) -> Result<(), BackendError> {
    use mango_proto::etcdserverpb::alarm_request::AlarmAction;
    let key = alarm_key(req.member_id, req.alarm);
    match AlarmAction::try_from(req.action) {
        Ok(AlarmAction::Activate) => tables.put(Table::Meta, &key, &[]),
        Ok(AlarmAction::Deactivate) => tables.delete(Table::Meta, &key),
        _ => Ok(()),
    }
}

/// The active alarms.
pub(crate) fn alarms<R: ReadTables + ?Sized>(
    tables: &R,
) -> Result<Vec<mango_proto::etcdserverpb::AlarmMember>, BackendError> {
    let mut end = ALARM_PREFIX.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let mut out = Vec::new();
    tables.scan(Table::Meta, ALARM_PREFIX, Some(&end), false, &mut |k, _| {
        let rest = &k[ALARM_PREFIX.len()..];
        if rest.len() == 12 {
            let member = u64::from_be_bytes(rest[..8].try_into().unwrap_or([0; 8]));
            let alarm = i32::from_be_bytes(rest[8..].try_into().unwrap_or([0; 4]));
            out.push(mango_proto::etcdserverpb::AlarmMember {
                member_id: member,
                alarm,
            });
        }
        ControlFlow::Continue(())
    })?;
    Ok(out)
}
