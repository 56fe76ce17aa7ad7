//! The configuration contract every binary keeps (mango-boot's layering), checked against the
//! real binary: for every flag, a value on the command line wins over the environment, which
//! wins over the `--config-file`; a key that names no flag fails start-up with the key named.
//! The binaries print what they resolved with the hidden `--print-config` (as TOML).

use std::path::Path;
use std::process::Command;

use mango_boot::config::{COMMON_ETCD_FLAGS, CONFIG_FILE, env_name, layered_args, sample_values};

/// What the binary resolved (its `--print-config` output) for these args, environment and
/// file text.
fn resolved(
    bin: &Path,
    file: Option<&str>,
    env: &[(String, String)],
    args: &[String],
) -> toml::Table {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(bin);
    if let Some(text) = file {
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write the config file");
        cmd.arg("--config-file").arg(path);
    }
    for name in std::env::vars().map(|(k, _)| k) {
        if name.starts_with("ETCD_") || name.starts_with("MANGO_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .args(args)
        .arg("--print-config")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run the binary");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} {args:?} (env {env:?}, file {file:?}) failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    toml::from_str(&text)
        .unwrap_or_else(|e| panic!("--print-config printed bad TOML ({e}): {text}"))
}

/// A flag's value as a config file would hold it (numbers and booleans unquoted).
fn file_line(key: &str, value: &str) -> String {
    if value.parse::<i64>().is_ok() || value == "true" || value == "false" {
        format!("{key} = {value}\n")
    } else {
        format!("{key} = {value:?}\n")
    }
}

/// Checks, for every flag of `cmd` (the binary's own clap command), that flags win over the
/// environment, which wins over the file, against the real binary `bin`. `etcd_flags` are
/// the flags read from `ETCD_*` (the others from `MANGO_*`). Returns how many flags it
/// checked.
pub fn check_every_flag(bin: &Path, cmd: &clap::Command, etcd_flags: &[&str]) -> usize {
    let mut checked = 0;
    for arg in layered_args(cmd) {
        let Some(long) = arg.get_long() else { continue };
        if long == CONFIG_FILE {
            continue;
        }
        let (a, b) =
            sample_values(cmd, arg).unwrap_or_else(|| panic!("no two sample values for --{long}"));
        let etcd = etcd_flags.contains(&long) || COMMON_ETCD_FLAGS.contains(&long);
        let env_var = env_name(long, etcd);
        let flag = |v: &str| vec![format!("--{long}={v}")];
        let env = |v: &str| vec![(env_var.clone(), v.to_string())];
        let file = file_line(long, &a);
        let get = |t: &toml::Table| t.get(long).cloned();

        let from_file = get(&resolved(bin, Some(&file), &[], &[]));
        let from_flag_b = get(&resolved(bin, None, &[], &flag(&b)));
        assert_ne!(
            from_file, from_flag_b,
            "--{long}: values {a:?} and {b:?} resolve alike"
        );
        assert_eq!(
            get(&resolved(bin, Some(&file), &[], &flag(&b))),
            from_flag_b,
            "--{long}: the flag must win over the file"
        );
        assert_eq!(
            get(&resolved(bin, Some(&file), &env(&b), &[])),
            from_flag_b,
            "--{long}: {env_var} must win over the file"
        );
        assert_eq!(
            get(&resolved(bin, None, &env(&a), &flag(&b))),
            from_flag_b,
            "--{long}: the flag must win over {env_var}"
        );
        checked += 1;
    }
    checked
}

/// Starts `bin` with a config file holding `key`, which names no flag: it must exit with
/// status 2 and name the key.
pub fn check_unknown_key_refused(bin: &Path, key: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("{key} = 1\n")).expect("write the config file");
    let out = Command::new(bin)
        .arg("--config-file")
        .arg(&path)
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}: {stderr}", bin.display());
    assert!(
        stderr.contains(&format!("{key:?}")),
        "the key is not named: {stderr}"
    );
}
