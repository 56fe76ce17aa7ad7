//! Peer round-trip probing (etcd's prober, which feeds
//! `etcd_network_peer_round_trip_time_seconds`): every interval, one small `Identify` call
//! to each peer over a connection kept open, timed. The Raft stream is one-way, so it has
//! no round trip of its own to time.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::{Duration, Instant};

use mango_proto::mangopb::IdentifyRequest;
use mango_proto::mangopb::peer_client::PeerClient;
use tonic::transport::Channel;

use super::client::{PeerLink, PeerUrls, connect};

/// How long one probe may take before it counts as failed (and its connection is dropped).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes every peer in `urls` but `me` every `every`, calling `observe(peer, rtt)` for
/// each answer, until the task is dropped.
pub async fn probe_peers(
    urls: PeerUrls,
    link: PeerLink,
    me: u64,
    every: Duration,
    observe: impl Fn(u64, Duration) + Send + 'static,
) {
    let mut clients: HashMap<u64, (String, PeerClient<Channel>)> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let peers: Vec<(u64, String)> = urls
            .entries()
            .into_iter()
            .filter(|(id, _)| *id != me)
            .collect();
        clients.retain(|id, (url, _)| peers.iter().any(|(i, u)| i == id && u == url));
        for (id, url) in peers {
            let client = match clients.entry(id) {
                Entry::Occupied(e) => &mut e.into_mut().1,
                Entry::Vacant(e) => {
                    match tokio::time::timeout(PROBE_TIMEOUT, connect(&url, &link)).await {
                        Ok(Ok(channel)) => &mut e.insert((url.clone(), PeerClient::new(channel))).1,
                        _ => continue,
                    }
                }
            };
            let started = Instant::now();
            let call = client.identify(IdentifyRequest { peer_urls: vec![] });
            match tokio::time::timeout(PROBE_TIMEOUT, call).await {
                Ok(Ok(_)) => observe(id, started.elapsed()),
                _ => {
                    clients.remove(&id);
                }
            }
        }
    }
}
