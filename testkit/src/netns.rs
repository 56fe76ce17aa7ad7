//! Test hosts in network namespaces: each voter gets a namespace of its own, joined to the
//! test's namespace by a veth pair on one bridge, with an address on a private subnet that
//! exists only inside this machine (the test made it; nothing else is there). Faults:
//! firewall rules inside one namespace (cut it off from its peers, clients still reach it),
//! or its cable pulled (the veth down: nothing reaches it). Everything is removed on drop.

use std::process::Command;

fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn must(args: &[&str]) {
    assert!(run(args), "failed: {}", args.join(" "));
}

/// The namespaces of one test.
#[derive(Debug)]
pub struct Netns {
    /// Namespace names, one per host.
    pub names: Vec<String>,
    /// Each host's address.
    pub hosts: Vec<String>,
    tag: String,
    bridge: String,
}

impl Netns {
    /// Whether namespaces can be made here (root, iproute2).
    pub fn available() -> bool {
        run(&["ip", "netns", "list"])
    }

    /// `n` hosts on a bridge; the test's own namespace reaches them all at `.1`.
    pub fn create(n: usize) -> Self {
        let pid = std::process::id();
        let tag = format!("mg{}", pid % 100_000);
        // A subnet no other test's bridge uses (tests run side by side).
        let taken = Command::new("ip")
            .args(["-o", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let third = (0..250)
            .map(|k| (pid + k) % 250)
            .find(|x| !taken.contains(&format!("10.213.{x}.")))
            .expect("a free test subnet");
        let subnet = format!("10.213.{third}");
        let bridge = format!("{tag}b");
        let net = Netns {
            names: (0..n).map(|i| format!("{tag}n{i}")).collect(),
            hosts: (0..n).map(|i| format!("{subnet}.{}", i + 2)).collect(),
            tag: tag.clone(),
            bridge: bridge.clone(),
        };
        must(&["ip", "link", "add", &bridge, "type", "bridge"]);
        must(&[
            "ip",
            "addr",
            "add",
            &format!("{subnet}.1/24"),
            "dev",
            &bridge,
        ]);
        must(&["ip", "link", "set", &bridge, "up"]);
        // Where bridged traffic passes the firewall (br_netfilter, as Docker sets up), let
        // this bridge's own traffic through.
        let _ = run(&[
            "iptables", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
        ]);
        for (i, ns) in net.names.iter().enumerate() {
            let (outer, inner) = (format!("{tag}v{i}"), format!("{tag}p{i}"));
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
            must(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            must(&["ip", "link", "set", &inner, "netns", ns]);
            must(&[
                "ip", "netns", "exec", ns, "ip", "link", "set", &inner, "name", "eth0",
            ]);
            let addr = format!("{}/24", net.hosts[i]);
            must(&[
                "ip", "netns", "exec", ns, "ip", "addr", "add", &addr, "dev", "eth0",
            ]);
            must(&["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"]);
            must(&["ip", "link", "set", &outer, "master", &bridge]);
            must(&["ip", "link", "set", &outer, "up"]);
        }
        net
    }

    /// Drops everything between host `i` and the other hosts, both ways, inside `i`'s
    /// namespace; the test's namespace (clients) still reaches it.
    pub fn cut_peers(&self, i: usize) {
        for (j, other) in self.hosts.iter().enumerate() {
            if j == i {
                continue;
            }
            let ns = &self.names[i];
            must(&[
                "ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", other, "-j", "DROP",
            ]);
            must(&[
                "ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-d", other, "-j", "DROP",
            ]);
        }
    }

    /// Undoes [`Netns::cut_peers`].
    pub fn heal_peers(&self, i: usize) {
        must(&["ip", "netns", "exec", &self.names[i], "iptables", "-F"]);
    }

    /// Pulls host `i`'s cable: nothing reaches it, nor leaves it.
    pub fn unplug(&self, i: usize) {
        must(&["ip", "link", "set", &format!("{}v{i}", self.tag), "down"]);
    }

    /// Plugs host `i` back in.
    pub fn plug(&self, i: usize) {
        must(&["ip", "link", "set", &format!("{}v{i}", self.tag), "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        let _ = run(&[
            "iptables",
            "-D",
            "FORWARD",
            "-i",
            &self.bridge,
            "-o",
            &self.bridge,
            "-j",
            "ACCEPT",
        ]);
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}
