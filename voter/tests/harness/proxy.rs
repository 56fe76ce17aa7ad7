//! `mango-proxy` in front of a test cluster's voters, for replaying etcdctl scenarios through
//! it. Killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Cluster, free_port};

/// `mango-proxy` in front of a fresh 3-voter mango (built beside the voter binary by the
/// workspace's test command), killed on drop; its client endpoint.
pub struct ProxyProc {
    child: Child,
    /// The proxy's client endpoint (host:port).
    pub endpoint: String,
}

impl ProxyProc {
    pub fn start(c: &Cluster) -> Self {
        let bin = std::path::Path::new(super::voter_bin()).with_file_name("mango-proxy");
        assert!(
            bin.exists(),
            "{} is missing: build it first (cargo build -p mango-proxy, or run the workspace's \
             tests)",
            bin.display()
        );
        let port = free_port();
        let voters = c
            .voters
            .iter()
            .map(|v| format!("http://{}", v.endpoint()))
            .collect::<Vec<_>>()
            .join(",");
        let child = Command::new(bin)
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{port}")])
            .args(["--voters", &voters])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mango-proxy");
        let endpoint = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Cluster::etcdctl_at(&endpoint, &["get", "startup"])
            .status
            .success()
        {
            assert!(Instant::now() < deadline, "the proxy never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
        ProxyProc { child, endpoint }
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
