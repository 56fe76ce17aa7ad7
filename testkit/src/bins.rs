//! Where the binaries are: the workspace's own (`mango-voter`, `mango-learner`, `mango-proxy`,
//! in the target directory of the running test, or in `MANGO_BIN_DIR`) and the installed
//! tools (etcd, etcdctl).

use std::path::{Path, PathBuf};

/// `MANGO_BIN_DIR`, else the profile directory of the running test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MANGO_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's directory");
    deps.parent().unwrap_or(deps).to_path_buf()
}

/// A binary of the workspace; panics saying how to build it if it is missing.
fn sibling(name: &str) -> PathBuf {
    let bin = bin_dir().join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p mango-voter -p mango-learner -p \
         mango-proxy, or run the workspace's tests)",
        bin.display()
    );
    bin
}

pub fn voter_bin() -> PathBuf {
    sibling("mango-voter")
}

pub fn learner_bin() -> PathBuf {
    sibling("mango-learner")
}

pub fn proxy_bin() -> PathBuf {
    sibling("mango-proxy")
}

/// The etcd server binary (3.4).
pub fn etcd_bin() -> PathBuf {
    tool("etcd", "etcd-server")
}

/// An installed tool: `/usr/bin/<name>` first, then `PATH`; panics naming the Debian
/// package to install when it is missing.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let usr = Path::new("/usr/bin").join(name);
    if usr.exists() {
        return usr;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| {
            panic!("{name} not found in /usr/bin or PATH: install it with `apt-get install -y {package}`")
        })
}
