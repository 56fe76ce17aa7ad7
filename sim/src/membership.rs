//! Membership churn: machines replaced the way an operator replaces one with etcdctl. The
//! member is removed, the machine is wiped, and the same host is added back as a new member
//! with an id it never had (as mango's `MemberAdd` gives), which then joins by snapshot.
//!
//! An admin host drives it over the client protocol (`Request::Member`, a Raft configuration
//! change through whichever node it reaches); the wipe and restart are the simulation loop's
//! ([`Replacements::act`]), since only it can crash and restart hosts. Node ids therefore
//! change: [`Identity`] is a host's current id, [`Directory`] where each id runs.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use turmoil::net::UdpSocket;

use crate::disk::NodeDisk;
use crate::record::Shared;
use crate::wire::{Answer, Datagram, PORT, Request};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which host each node id runs on.
#[derive(Clone, Debug, Default)]
pub struct Directory(Arc<Mutex<BTreeMap<u64, String>>>);

impl Directory {
    pub fn insert(&self, id: u64, host: &str) {
        lock(&self.0).insert(id, host.to_string());
    }

    pub fn remove(&self, id: u64) {
        lock(&self.0).remove(&id);
    }

    pub fn host(&self, id: u64) -> Option<String> {
        lock(&self.0).get(&id).cloned()
    }
}

/// A host's current node id, and whether it joins an existing cluster (a replaced machine)
/// rather than founding it.
#[derive(Clone, Debug)]
pub struct Identity(Arc<Mutex<(u64, bool)>>);

impl Identity {
    pub fn founder(id: u64) -> Self {
        Self(Arc::new(Mutex::new((id, false))))
    }

    /// (id, joins).
    pub fn get(&self) -> (u64, bool) {
        *lock(&self.0)
    }

    fn become_joiner(&self, id: u64) {
        *lock(&self.0) = (id, true);
    }
}

/// A host to wipe and restart as a new member.
#[derive(Clone, Debug)]
struct Replace {
    host: String,
    new_id: u64,
    done: bool,
}

/// The replacements the admin asked for, carried out by the simulation loop.
#[derive(Clone, Debug, Default)]
pub struct Replacements(Arc<Mutex<Vec<Replace>>>);

/// What the loop needs to replace a host.
pub struct Host {
    pub identity: Identity,
    pub disk: NodeDisk,
    pub dir: PathBuf,
}

impl Replacements {
    fn request(&self, host: &str, new_id: u64) {
        lock(&self.0).push(Replace {
            host: host.to_string(),
            new_id,
            done: false,
        });
    }

    fn done(&self, host: &str, new_id: u64) -> bool {
        lock(&self.0)
            .iter()
            .any(|r| r.host == host && r.new_id == new_id && r.done)
    }

    /// Carries out the pending replacements whose host `down` does not say is down (the
    /// nemesis restarts those itself): kill its disk, crash it, wipe its files, give it its
    /// new id and start it again. Returns how many were carried out.
    pub fn act(
        &self,
        sim: &mut turmoil::Sim<'_>,
        hosts: &BTreeMap<String, Host>,
        directory: &Directory,
        record: &Shared,
        ms: u64,
        down: impl Fn(&str) -> bool,
    ) -> Result<u32, String> {
        let mut done = 0;
        for r in lock(&self.0).iter_mut().filter(|r| !r.done) {
            if down(&r.host) {
                continue;
            }
            let Some(h) = hosts.get(&r.host) else {
                r.done = true;
                continue;
            };
            h.disk.kill();
            sim.crash(r.host.as_str());
            std::fs::remove_dir_all(&h.dir)
                .map_err(|e| format!("wiping {}: {e}", h.dir.display()))?;
            h.disk.forget();
            let (old, _) = h.identity.get();
            directory.remove(old);
            h.identity.become_joiner(r.new_id);
            directory.insert(r.new_id, &r.host);
            sim.bounce(r.host.as_str());
            record.event_at(
                ms,
                format!("membership: {} wiped, restarts as n{}", r.host, r.new_id),
            );
            r.done = true;
            done += 1;
        }
        Ok(done)
    }
}

/// The admin host.
#[derive(Clone)]
pub struct AdminSpec {
    /// Every node host, and its identity.
    pub hosts: Vec<(String, Identity)>,
    pub groups: u64,
    pub replacements: Replacements,
    pub seed: u64,
    /// It starts no replacement after this much simulated time.
    pub until: Duration,
    pub record: Shared,
}

/// How long the admin waits for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Replaces a random machine every few seconds: remove its member from every group, have it
/// wiped and restarted with a new id, add that id to every group.
pub async fn admin(spec: AdminSpec) -> turmoil::Result {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT)).await?;
    let mut buf = vec![0u8; 1 << 16];
    let mut next_id = 100;
    let mut request = 0u64;
    let now = || turmoil::sim_elapsed().unwrap_or_default();
    while now() < spec.until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_500..3_000))).await;
        let (host, identity) = spec.hosts[rng.random_range(0..spec.hosts.len())].clone();
        let (old, _) = identity.get();
        let mut removed = true;
        for group in 0..spec.groups {
            let change = Request::Member {
                group,
                add: false,
                node: old,
            };
            removed &= send(&spec, &sock, &mut buf, &mut rng, &mut request, change).await;
        }
        spec.record.event(format!(
            "admin: remove n{old} ({host}): {}",
            if removed { "done" } else { "not confirmed" }
        ));
        if !removed {
            // Its outcome unknown, the member may still be one: leave the machine alone.
            continue;
        }
        let new_id = next_id;
        next_id += 1;
        spec.replacements.request(&host, new_id);
        while !spec.replacements.done(&host, new_id) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut added = true;
        for group in 0..spec.groups {
            let change = Request::Member {
                group,
                add: true,
                node: new_id,
            };
            added &= send(&spec, &sock, &mut buf, &mut rng, &mut request, change).await;
        }
        spec.record.event(format!(
            "admin: add n{new_id} ({host}): {}",
            if added { "done" } else { "not confirmed" }
        ));
    }
    Ok(())
}

/// Sends `change` to random nodes until one applies it, up to 8 tries.
async fn send(
    spec: &AdminSpec,
    sock: &UdpSocket,
    buf: &mut [u8],
    rng: &mut SmallRng,
    request: &mut u64,
    change: Request,
) -> bool {
    for _ in 0..8 {
        *request += 1;
        let id = (1u64 << 40) | *request;
        let (host, _) = &spec.hosts[rng.random_range(0..spec.hosts.len())];
        let to = SocketAddr::new(turmoil::lookup(host.as_str()), PORT);
        let _ = sock.try_send_to(
            &Datagram::Request {
                id,
                request: change.clone(),
            }
            .encode(),
            to,
        );
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(buf)).await {
            if let Some(Datagram::Answer { id: got, answer }) = Datagram::decode(&buf[..n])
                && got == id
            {
                if answer == Answer::Changed {
                    return true;
                }
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
