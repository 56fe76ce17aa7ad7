//! The member registry: who is in the cluster, with names and URLs (etcd's `members` bucket).
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
