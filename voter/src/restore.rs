//! Restoring a snapshot into the data folder of one member of a new cluster
//! (`mangoctl snapshot restore`, etcdctl's flags).
//!
//! The snapshot is etcd 3.4's file: one saved from mango (`Maintenance.Snapshot` streams that
//! format) or from etcd 3.4 by `etcdctl snapshot save`. What it holds goes into the store
//! (`member/db`) by `Store::import_etcd`: every revision with its versions and create/mod
//! revisions, leases with their TTLs, the compacted revision, auth. The Raft log stays empty
//! and the applied index 0, as for any new cluster; the member registry stays empty, so the
//! voter records the members of `--initial-cluster` at its first start. The member and
//! cluster ids are written (`member/id`, `member/cluster_id`) as the voter computes them from
//! the same flags, so a member started with other flags than it was restored with refuses
//! to run instead of forming another cluster.
//!
//! Start each restored member with the same `--name`, `--initial-cluster`,
//! `--initial-cluster-token` and peer URLs, and `--initial-cluster-state new` (the default).
//!
//! The folder is built beside `--data-dir` under a temporary name and renamed into place
//! only when complete: a damaged snapshot or any other failure leaves no data folder.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mango_store::mango_bbolt::Db;
use mango_store::mango_bbolt::etcd::EtcdSnapshot;
use mango_store::mango_bbolt::sha::{HashCheck, check_sha256};
use mango_store::{Store, StoreOptions};

use crate::config::{cluster_id, member_id, parse_initial_cluster};

/// What `mangoctl snapshot restore` was asked to do.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The snapshot file.
    pub snapshot: PathBuf,
    /// This member's name (`--name`), one of `--initial-cluster`'s.
    pub name: String,
    /// `name=peer-url,...` of every member of the new cluster.
    pub initial_cluster: String,
    /// The new cluster's token.
    pub initial_cluster_token: String,
    /// This member's peer URLs; empty: its URLs in `initial_cluster`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// The data folder to create (it must not exist).
    pub data_dir: PathBuf,
    /// Accept a file without etcd's trailing SHA-256 (a member's `db` copied from disk).
    pub skip_hash_check: bool,
}

/// What a restore made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// This member's id in the new cluster.
    pub member_id: u64,
    /// The new cluster's id.
    pub cluster_id: u64,
    /// The revision the store holds.
    pub revision: i64,
    /// The compacted revision (-1: none).
    pub compact_revision: i64,
    /// Entries of the snapshot's key history restored.
    pub revisions: usize,
    /// Leases restored.
    pub leases: usize,
}

/// Reads and checks a snapshot file: its trailing SHA-256 (required unless
/// `skip_hash_check`), its bbolt structure and etcd's buckets.
pub fn read_snapshot(path: &Path, skip_hash_check: bool) -> anyhow::Result<EtcdSnapshot> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let unusable = || format!("{} is not a usable snapshot", path.display());
    let check = check_sha256(&bytes).1;
    if check == HashCheck::Mismatch {
        anyhow::bail!(
            "{}: the trailing sha256 does not match the file (damaged or truncated)",
            path.display()
        );
    }
    // The structure first, so a truncated file says so rather than that its hash is missing.
    let db = Db::from_bytes(bytes).with_context(unusable)?;
    // bbolt's own consistency check, as etcd's `snapshot status` runs it: a damaged page
    // is refused here rather than half read.
    db.check().with_context(unusable)?;
    if check == HashCheck::Missing && !skip_hash_check {
        anyhow::bail!(
            "{}: snapshot missing hash but --skip-hash-check=false",
            path.display()
        );
    }
    let snapshot = EtcdSnapshot::from_db(&db).with_context(unusable)?;
    Ok(snapshot)
}

/// Builds `opts.data_dir` for member `opts.name` of a new cluster from the snapshot.
pub fn restore(opts: &RestoreOptions) -> anyhow::Result<Restored> {
    let members = parse_initial_cluster(&opts.initial_cluster)?;
    let me = members
        .iter()
        .find(|m| m.name == opts.name)
        .with_context(|| format!("--initial-cluster has no member named {:?}", opts.name))?;
    if !opts.initial_advertise_peer_urls.is_empty() {
        let mut given = opts.initial_advertise_peer_urls.clone();
        let mut listed = me.peer_urls.clone();
        given.sort();
        listed.sort();
        if given != listed {
            anyhow::bail!(
                "--initial-cluster has {}={:?} but --initial-advertise-peer-urls is {:?}",
                opts.name,
                me.peer_urls,
                opts.initial_advertise_peer_urls
            );
        }
    }
    let token = &opts.initial_cluster_token;
    let ids: Vec<u64> = members
        .iter()
        .map(|m| member_id(&m.peer_urls, token))
        .collect();
    let my_id = member_id(&me.peer_urls, token);
    let cluster = cluster_id(&ids, token);

    if opts.data_dir.exists() {
        anyhow::bail!("data-dir {} exists", opts.data_dir.display());
    }
    // Read and check everything before creating anything.
    let snapshot = read_snapshot(&opts.snapshot, opts.skip_hash_check)?;

    let partial = partial_dir(&opts.data_dir)?;
    if partial.exists() {
        // What an interrupted restore left.
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    let built = build(&partial, &snapshot, my_id, cluster);
    let state = match built {
        Ok(state) => state,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&partial, &opts.data_dir) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e).with_context(|| format!("creating {}", opts.data_dir.display()));
    }
    sync_parent(&opts.data_dir);
    Ok(Restored {
        member_id: my_id,
        cluster_id: cluster,
        revision: state.revision,
        compact_revision: state.compact_revision,
        revisions: snapshot.revisions.len(),
        leases: snapshot.leases.len(),
    })
}

/// `<parent>/.<name>.restoring`: where the folder is built before it is renamed into place.
fn partial_dir(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let name = data_dir
        .file_name()
        .with_context(|| format!("--data-dir {} has no folder name", data_dir.display()))?;
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    Ok(parent.join(format!(".{}.restoring", name.to_string_lossy())))
}

fn build(
    dir: &Path,
    snapshot: &EtcdSnapshot,
    my_id: u64,
    cluster: u64,
) -> anyhow::Result<mango_store::GroupState> {
    let member = dir.join("member");
    std::fs::create_dir_all(member.join("snap"))
        .with_context(|| format!("creating {}", member.display()))?;
    let state = {
        let store = Store::open_path(member.join("db"), StoreOptions::default())
            .context("creating the store")?;
        store
            .import_etcd(0, snapshot)
            .context("writing the snapshot into the store")?
    };
    crate::identity::store_in(&member, "id", my_id)?;
    crate::identity::store_in(&member, "cluster_id", cluster)?;
    Ok(state)
}

fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
    {
        let _ = dir.sync_all();
    }
}
