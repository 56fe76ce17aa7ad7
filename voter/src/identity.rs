//! The member id a voter runs with.
//!
//! - Once a member has run, its id is in its data folder (`member/id`), whatever the flags.
//! - A founding member (`--initial-cluster-state new`) takes the hash of its peer URLs and the
//!   cluster token, which every founder computes alike for every other.
//! - A member joining an existing cluster takes the id it was added with. `MemberAdd` gives
//!   every new member an id of its own (salted with the time, as etcd's are), so a machine
//!   removed and added back with the same peer URLs never comes back as the member it was:
//!   with the old id and none of its old votes it could vote twice in one term. The joiner
//!   learns its id by asking the members it names in `--initial-cluster` which id they know
//!   its peer URLs by (`mangopb.Peer/Identify`), and takes their address book with it.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context as _;

/// How long a joining member asks the others for its id before giving up.
pub const IDENTIFY_FOR: Duration = Duration::from_secs(30);

/// The id, and the peers' addresses learned while joining (empty otherwise).
/// Who this member is: its id, its cluster's id, and (for a member joining a running
/// cluster) the address book the member that answered knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// This member's id.
    pub id: u64,
    /// The cluster's id: the founders' (computed from their ids and the token), learned by a
    /// joiner from the member it asks, and kept in `member/cluster_id` ever after.
    pub cluster_id: u64,
    /// Every (id, peer URL) the answering member knows (empty for founders and restarts).
    pub peers: Vec<(u64, String)>,
}

/// Reads the id this member ran with before, if any.
fn stored(member_dir: &Path) -> anyhow::Result<Option<u64>> {
    stored_in(member_dir, "id")
}

fn stored_in(member_dir: &Path, name: &str) -> anyhow::Result<Option<u64>> {
    let path = member_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text
                .trim()
                .parse::<u64>()
                .with_context(|| format!("{} does not hold a member id", path.display()))?;
            Ok(Some(id))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Records the id, synced, so every later start runs with it.
fn store(member_dir: &Path, id: u64) -> anyhow::Result<()> {
    store_in(member_dir, "id", id)
}

pub(crate) fn store_in(member_dir: &Path, name: &str, id: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(member_dir)
        .with_context(|| format!("creating {}", member_dir.display()))?;
    let path = member_dir.join(name);
    let tmp = member_dir.join(format!("{name}.partial"));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::io::Write::write_all(&mut file, format!("{id}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    if let Ok(dir) = std::fs::File::open(member_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// What [`resolve`] goes on.
pub struct Start<'a> {
    /// Where the member keeps its state.
    pub member_dir: &'a Path,
    /// `--initial-cluster-state existing`.
    pub joining: bool,
    /// The hash of this member's peer URLs and the token.
    pub founding_id: u64,
    pub my_peer_urls: &'a [String],
    /// The peer URLs of the other members in `--initial-cluster`.
    pub others: &'a [String],
    /// Whether the store already holds the member registry (then the peers' addresses are
    /// known without asking).
    pub knows_members: bool,
    /// How long to ask before giving up ([`IDENTIFY_FOR`]).
    pub patience: Duration,
    /// The cluster id the founders compute from `--initial-cluster` and the token.
    pub founding_cluster_id: u64,
    /// How to reach the other members.
    pub link: &'a mango_consensus::transport::PeerLink,
}

/// The id to run with (see the module docs), and the peers' addresses when they had to be
/// asked for (a joining member that has not caught up yet).
pub async fn resolve(start: Start<'_>) -> anyhow::Result<Identity> {
    let stored = stored(start.member_dir)?;
    let stored_cluster = stored_in(start.member_dir, "cluster_id")?;
    if start.joining && !start.knows_members {
        let (id, cluster_id, peers) =
            ask(start.my_peer_urls, start.others, start.patience, start.link).await?;
        match stored {
            Some(s) if s != id => anyhow::bail!(
                "this member's data folder says it is member {s:x}, the cluster knows its peer \
                 URLs as member {id:x}"
            ),
            Some(_) => {}
            None => store(start.member_dir, id)?,
        }
        let cluster_id = settle_cluster(start.member_dir, stored_cluster, cluster_id)?;
        return Ok(Identity {
            id,
            cluster_id,
            peers,
        });
    }
    let id = match stored {
        Some(id) => id,
        None => {
            store(start.member_dir, start.founding_id)?;
            start.founding_id
        }
    };
    // A member that joined keeps the cluster id it learned; a founder's is computed, and a
    // data folder of another cluster is refused.
    let cluster_id = match (stored_cluster, start.joining) {
        (Some(c), true) => c,
        _ => settle_cluster(start.member_dir, stored_cluster, start.founding_cluster_id)?,
    };
    Ok(Identity {
        id,
        cluster_id,
        peers: Vec::new(),
    })
}

/// Keeps `cluster_id` in the member folder, refusing a folder that belongs to another cluster.
fn settle_cluster(member_dir: &Path, stored: Option<u64>, cluster_id: u64) -> anyhow::Result<u64> {
    match stored {
        Some(s) if s != cluster_id => anyhow::bail!(
            "the data folder {} belongs to cluster {s:x}, but this member's flags make it a \
             member of cluster {cluster_id:x} (check --initial-cluster and \
             --initial-cluster-token, or use an empty --data-dir)",
            member_dir.display()
        ),
        Some(s) => Ok(s),
        None => {
            store_in(member_dir, "cluster_id", cluster_id)?;
            Ok(cluster_id)
        }
    }
}

async fn ask(
    my_peer_urls: &[String],
    others: &[String],
    patience: Duration,
    link: &mango_consensus::transport::PeerLink,
) -> anyhow::Result<(u64, u64, Vec<(u64, String)>)> {
    let deadline = Instant::now() + patience;
    let mut last_error = String::from("no other member in --initial-cluster");
    while Instant::now() < deadline {
        for url in others {
            match tokio::time::timeout(
                Duration::from_secs(2),
                mango_consensus::transport::identify(url, my_peer_urls, link),
            )
            .await
            {
                Ok(Ok((id, cluster_id, peers))) if id != 0 => {
                    return Ok((id, cluster_id, peers));
                }
                Ok(Ok(_)) => last_error = format!("{url} knows no member at {my_peer_urls:?}"),
                Ok(Err(e)) => last_error = format!("{url}: {e}"),
                Err(_) => last_error = format!("{url}: timed out"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!(
        "joining an existing cluster: no member knows this one's peer URLs {my_peer_urls:?} \
         (add it with `etcdctl member add` first); last answer: {last_error}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stored_id_wins_and_a_founder_stores_its_hash() {
        let link = mango_consensus::transport::PeerLink::default();
        let dir = tempfile::tempdir().expect("tempdir");
        let member = dir.path().join("member");
        let start = |founding_id, joining| Start {
            member_dir: &member,
            joining,
            founding_id,
            my_peer_urls: &[],
            others: &[],
            knows_members: true,
            patience: IDENTIFY_FOR,
            founding_cluster_id: 5,
            link: &link,
        };
        let first = resolve(start(42, false)).await.expect("founder");
        assert_eq!((first.id, first.cluster_id, first.peers.len()), (42, 5, 0));
        // Later starts run with it, whatever they would compute (or whether they join).
        let again = resolve(start(7, true)).await.expect("restart");
        assert_eq!((again.id, again.cluster_id), (42, 5));
    }

    #[tokio::test]
    async fn a_joiner_nobody_knows_is_told_to_be_added_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = resolve(Start {
            member_dir: dir.path(),
            joining: true,
            founding_id: 1,
            my_peer_urls: &["http://127.0.0.1:1".into()],
            others: &[],
            knows_members: false,
            patience: Duration::from_millis(300),
            founding_cluster_id: 1,
            link: &mango_consensus::transport::PeerLink::default(),
        })
        .await
        .expect_err("nobody to ask");
        assert!(e.to_string().contains("etcdctl member add"), "{e}");
        assert!(!dir.path().join("id").exists(), "an unknown id was stored");
    }

    #[tokio::test]
    async fn a_garbled_id_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("id"), "not a number").expect("write");
        let e = resolve(Start {
            member_dir: dir.path(),
            joining: false,
            founding_id: 1,
            my_peer_urls: &[],
            others: &[],
            knows_members: true,
            patience: IDENTIFY_FOR,
            founding_cluster_id: 1,
            link: &mango_consensus::transport::PeerLink::default(),
        })
        .await
        .expect_err("refused");
        assert!(e.to_string().contains("does not hold a member id"), "{e}");
    }

    #[tokio::test]
    async fn a_data_folder_of_another_cluster_is_refused_with_both_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = mango_consensus::transport::PeerLink::default();
        let start = |cluster| Start {
            member_dir: dir.path(),
            joining: false,
            founding_id: 1,
            my_peer_urls: &[],
            others: &[],
            knows_members: true,
            patience: IDENTIFY_FOR,
            founding_cluster_id: cluster,
            link: &link,
        };
        resolve(start(0xaa)).await.expect("first start");
        let e = resolve(start(0xbb)).await.expect_err("another cluster");
        let text = e.to_string();
        assert!(text.contains("aa") && text.contains("bb"), "{text}");
    }
}
