//! Addresses without port races: every process a test (or benchmark) starts gets a loopback
//! address of its own, `127.b.c.d`, and listens on fixed ports there ([`CLIENT_PORT`],
//! [`PEER_PORT`], [`LOGSTREAM_PORT`], [`METRICS_PORT`]).
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so any such address can be bound without setup.
//! An address is reserved for as long as its [`Host`] lives by a TCP listener on
//! [`RESERVE_PORT`]: a second bind of that port fails, so two tests (or two threads) never
//! get the same address, whatever the order they probe in. Only the holder starts processes
//! on the address, so nothing else binds its service ports: no port is picked, released and
//! hoped to be still free when the child binds it. Each process starts probing at an address
//! derived from its pid, so test processes running side by side seldom probe the same ones.
//!
//! In-process servers need none of this: bind port 0 and pass the listener (or read the bound
//! address back).

use std::fmt;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// Client traffic (gRPC), as etcd's default.
pub const CLIENT_PORT: u16 = 2379;
/// Peer traffic (Raft), as etcd's default.
pub const PEER_PORT: u16 = 2380;
/// The QUIC log stream to learners (UDP).
pub const LOGSTREAM_PORT: u16 = 2381;
/// A metrics endpoint (HTTP), e.g. the proxy's.
pub const METRICS_PORT: u16 = 2382;
/// Held by the reservation; no process of a test listens on it.
pub const RESERVE_PORT: u16 = 2378;

/// Usable addresses: 127.b.c.d with b in 1..=254, c in 0..=255, d in 1..=254 (127.0/16,
/// where 127.0.0.1 lives, and the .0/.255 ends are left alone).
const SPAN: u32 = 254 * 256 * 254;
/// Addresses a process may take before two processes' starting points can meet.
const PER_PROCESS: u32 = 64;
/// How many addresses one reservation probes before giving up.
const MAX_PROBES: u32 = 4096;

fn nth(i: u32) -> Ipv4Addr {
    let i = i % SPAN;
    let b = 1 + i / (256 * 254);
    let c = (i / 254) % 256;
    let d = 1 + i % 254;
    Ipv4Addr::new(127, b as u8, c as u8, d as u8)
}

/// The next address this process probes.
fn next_index() -> u32 {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(PER_PROCESS) % SPAN))
        .fetch_add(1, Ordering::Relaxed)
}

/// Whether every service port of `ip` is free: a process left over from a killed run (or
/// anything listening on a wildcard address) may hold one.
fn service_ports_free(ip: IpAddr) -> bool {
    [CLIENT_PORT, PEER_PORT, METRICS_PORT]
        .iter()
        .all(|&p| TcpListener::bind((ip, p)).is_ok())
        && UdpSocket::bind((ip, LOGSTREAM_PORT)).is_ok()
}

/// The address a process listens on: a reserved loopback address, or an address something
/// else makes unique (a host in a network namespace of its own). Clones share the
/// reservation, which ends when the last one drops.
#[derive(Clone)]
pub struct Host {
    ip: IpAddr,
    /// The listener on [`RESERVE_PORT`] that keeps the address ours.
    _reservation: Option<Arc<TcpListener>>,
}

impl Host {
    /// Reserves a loopback address of its own. Panics if none is free (something listens on
    /// the service ports of every address, e.g. on 0.0.0.0:2379).
    pub fn reserve() -> Host {
        for _ in 0..MAX_PROBES {
            let ip = IpAddr::V4(nth(next_index()));
            match TcpListener::bind((ip, RESERVE_PORT)) {
                Ok(l) if service_ports_free(ip) => {
                    return Host {
                        ip,
                        _reservation: Some(Arc::new(l)),
                    };
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::AddrInUse => {}
                Err(e) => panic!("cannot bind {ip}:{RESERVE_PORT} to reserve it: {e}"),
            }
        }
        panic!(
            "no free loopback address in {MAX_PROBES} tries: does something listen on a \
             wildcard address at port {CLIENT_PORT}, {PEER_PORT} or {METRICS_PORT}?"
        )
    }

    /// An address made unique by other means (a network namespace's host).
    pub fn fixed(ip: IpAddr) -> Host {
        Host {
            ip,
            _reservation: None,
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// `ip:port`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, port)
    }

    /// `ip:2379`, as etcdctl's `--endpoints` and tonic want it (after `http://`).
    pub fn client_endpoint(&self) -> String {
        self.addr(CLIENT_PORT).to_string()
    }

    /// `http://ip:2379`.
    pub fn client_url(&self) -> String {
        format!("http://{}", self.addr(CLIENT_PORT))
    }

    /// `http://ip:2380`.
    pub fn peer_url(&self) -> String {
        format!("http://{}", self.addr(PEER_PORT))
    }

    /// `ip:2381` (UDP).
    pub fn logstream_addr(&self) -> String {
        self.addr(LOGSTREAM_PORT).to_string()
    }

    /// `ip:2382`.
    pub fn metrics_addr(&self) -> String {
        self.addr(METRICS_PORT).to_string()
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ip.fmt(f)
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({})", self.ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_loopback_and_distinct() {
        let hosts: Vec<Host> = (0..20).map(|_| Host::reserve()).collect();
        let mut ips: Vec<IpAddr> = hosts.iter().map(Host::ip).collect();
        assert!(ips.iter().all(IpAddr::is_loopback));
        ips.sort_unstable();
        ips.dedup();
        assert_eq!(ips.len(), 20);
    }

    #[test]
    fn a_reserved_address_is_not_handed_out_again_while_held() {
        let held = Host::reserve();
        // Another reservation (as another test process would make) cannot take it.
        assert!(TcpListener::bind((held.ip(), RESERVE_PORT)).is_err());
        // Its service ports are free for the process the test starts.
        let client = TcpListener::bind(held.addr(CLIENT_PORT)).unwrap();
        assert_eq!(client.local_addr().unwrap(), held.addr(CLIENT_PORT));
    }

    #[test]
    fn the_address_space_wraps_within_127() {
        assert_eq!(nth(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(nth(253), Ipv4Addr::new(127, 1, 0, 254));
        assert_eq!(nth(254), Ipv4Addr::new(127, 1, 1, 1));
        assert_eq!(nth(SPAN - 1), Ipv4Addr::new(127, 254, 255, 254));
        assert_eq!(nth(SPAN), nth(0));
    }
}
