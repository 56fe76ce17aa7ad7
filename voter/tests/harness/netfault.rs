//! Network partitions between voters on distinct loopback addresses, with iptables. Rules are
//! tagged with this process's id and removed on drop.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;

/// Firewall rules a test added; removed when dropped.
pub struct Partition {
    rules: Vec<Vec<String>>,
}

fn iptables(action: &str, rule: &[String]) -> bool {
    Command::new("iptables")
        .arg(action)
        .arg("INPUT")
        .args(rule)
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Partition {
    /// Whether iptables works here (root, and a kernel that allows it).
    pub fn available() -> bool {
        Command::new("iptables")
            .args(["-L", "INPUT", "-n"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Cuts all peer traffic to and from `(host, peer_port)`: nothing reaches its peer port,
    /// and nothing it sends reaches the others' peer ports. Client traffic still flows.
    pub fn isolate(host: &str, peer_port: u16, others: &[(String, u16)]) -> Self {
        let tag = format!("mango-test-{}", std::process::id());
        let mut rules = vec![vec![
            "-p".into(),
            "tcp".into(),
            "-d".into(),
            host.into(),
            "--dport".into(),
            peer_port.to_string(),
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            tag.clone(),
            "-j".into(),
            "DROP".into(),
        ]];
        for (other, port) in others {
            rules.push(vec![
                "-p".into(),
                "tcp".into(),
                "-s".into(),
                host.into(),
                "-d".into(),
                other.clone(),
                "--dport".into(),
                port.to_string(),
                "-m".into(),
                "comment".into(),
                "--comment".into(),
                tag.clone(),
                "-j".into(),
                "DROP".into(),
            ]);
        }
        for r in &rules {
            assert!(iptables("-I", r), "iptables -I INPUT {r:?} failed");
        }
        Partition { rules }
    }

    /// Removes the rules (the partition heals).
    pub fn heal(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        for r in self.rules.drain(..) {
            while iptables("-D", &r) {}
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.remove();
    }
}
