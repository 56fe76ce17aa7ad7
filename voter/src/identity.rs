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
pub type Identity = (u64, Vec<(u64, String)>);

/// Reads the id this member ran with before, if any.
fn stored(member_dir: &Path) -> anyhow::Result<Option<u64>> {
    let path = member_dir.join("id");
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
    std::fs::create_dir_all(member_dir)
        .with_context(|| format!("creating {}", member_dir.display()))?;
    let path = member_dir.join("id");
    let tmp = member_dir.join("id.partial");
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
}

/// The id to run with (see the module docs), and the peers' addresses when they had to be
/// asked for (a joining member that has not caught up yet).
pub async fn resolve(start: Start<'_>) -> anyhow::Result<Identity> {
    let stored = stored(start.member_dir)?;
    if start.joining && !start.knows_members {
        let (id, peers) = ask(start.my_peer_urls, start.others, start.patience).await?;
        match stored {
            Some(s) if s != id => anyhow::bail!(
                "this member's data folder says it is member {s:x}, the cluster knows its peer \
                 URLs as member {id:x}"
            ),
            Some(_) => {}
            None => store(start.member_dir, id)?,
        }
        return Ok((id, peers));
    }
    let id = match stored {
        Some(id) => id,
        // A founder, or a member that ran before ids were stored (it ran with the hash).
        None => {
            store(start.member_dir, start.founding_id)?;
            start.founding_id
        }
    };
    Ok((id, Vec::new()))
}

/// Asks each member in turn, until one knows this member's peer URLs.
async fn ask(
    my_peer_urls: &[String],
    others: &[String],
    patience: Duration,
) -> anyhow::Result<Identity> {
    let deadline = Instant::now() + patience;
    let mut last_error = String::from("no other member in --initial-cluster");
    while Instant::now() < deadline {
        for url in others {
            match tokio::time::timeout(
                Duration::from_secs(2),
                mango_consensus::transport::identify(url, my_peer_urls),
            )
            .await
            {
                Ok(Ok((id, peers))) if id != 0 => return Ok((id, peers)),
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
        };
        let (id, peers) = resolve(start(42, false)).await.expect("founder");
        assert_eq!((id, peers.len()), (42, 0));
        // Later starts run with it, whatever they would compute (or whether they join).
        let (again, _) = resolve(start(7, true)).await.expect("restart");
        assert_eq!(again, 42);
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
        })
        .await
        .expect_err("refused");
        assert!(e.to_string().contains("does not hold a member id"), "{e}");
    }
}
