//! Layered configuration, done once for every binary: a flag given on the command line wins,
//! then the environment, then the TOML file named by `--config-file`, then the flag's default.
//!
//! The file and the environment are folded in as clap defaults of the binary's own `Parser`,
//! so every flag is covered without a hand-kept list, and clap validates every value the same
//! way whichever layer it came from. Environment names: `ETCD_<FLAG>` for the flags etcd has
//! ([`Layered::ETCD_FLAGS`], as etcd reads them), `MANGO_<FLAG>` for mango's own, with the
//! flag's long name upper-cased and `-` as `_`. File keys are the long names (kebab-case);
//! a key that names no flag fails start-up with the key named.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};

/// The hidden flag that prints the resolved configuration (as TOML) and exits.
pub const PRINT_CONFIG: &str = "print-config";
/// The flags of [`CommonFlags`] that are etcd's (read from `ETCD_*`).
pub const COMMON_ETCD_FLAGS: &[&str] = &["listen-metrics-urls"];

/// The flag naming the TOML file.
pub const CONFIG_FILE: &str = "config-file";

/// The flags every binary takes alike: logging, the gRPC server's keep-alives and the
/// metrics endpoint.
#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct CommonFlags {
    /// The metrics and health endpoint.
    #[command(flatten)]
    #[serde(flatten)]
    pub metrics: crate::http::MetricsFlags,
    /// gRPC keep-alive.
    #[command(flatten)]
    #[serde(flatten)]
    pub grpc: crate::grpc::GrpcFlags,
    /// Logging.
    #[command(flatten)]
    #[serde(flatten)]
    pub log: crate::logging::LogFlags,
}

/// A binary's configuration type: a clap `Parser` whose fields serialize under their long
/// flag names (`#[serde(rename_all = "kebab-case")]`), so `--print-config` output is itself
/// a valid config file.
pub trait Layered: clap::Parser + serde::Serialize {
    /// The long names of the flags that are etcd's (read from `ETCD_*` variables); every
    /// other flag is read from `MANGO_*`.
    const ETCD_FLAGS: &'static [&'static str];

    /// The flags every binary has (flattened into the configuration).
    fn common(&self) -> &CommonFlags;
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The file has a key that names no flag.
    #[error("{path}: unknown key {key:?} (not a flag of this program)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A key's value is not a string, number, boolean or array of them.
    #[error("{path}: key {key:?}: {message}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// clap refused the flags (or `--help` / `--version` was asked for: clap prints those).
    #[error(transparent)]
    Flags(#[from] clap::Error),
}

/// The configuration and what the command line asked for besides it.
#[derive(Debug)]
pub struct Loaded<C> {
    /// The resolved configuration.
    pub config: C,
    /// `--print-config` was given: print and exit.
    pub print: bool,
}

/// The environment variable a flag is read from.
pub fn env_name(long: &str, etcd_flag: bool) -> String {
    let prefix = if etcd_flag { "ETCD_" } else { "MANGO_" };
    format!("{prefix}{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// The long flags of a command that take part in layering (not help, version or the hidden
/// print flag).
pub fn layered_args(cmd: &Command) -> Vec<&Arg> {
    cmd.get_arguments()
        .filter(|a| a.get_long().is_some())
        .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
        .filter(|a| a.get_long() != Some(PRINT_CONFIG))
        .collect()
}

/// Loads `C` from the process's arguments and environment.
pub fn load<C: Layered>() -> Result<Loaded<C>, ConfigError> {
    load_from(std::env::args_os(), |name| std::env::var(name).ok())
}

/// Loads `C` from `args` (the first is the program name) and the environment `env`.
pub fn load_from<C: Layered>(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Loaded<C>, ConfigError> {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let base = C::command().arg(
        Arg::new(PRINT_CONFIG)
            .long(PRINT_CONFIG)
            .hide(true)
            .action(ArgAction::SetTrue)
            .help("Print the resolved configuration as TOML and exit"),
    );
    // Which file? A first lenient pass over the flags, then the environment.
    let first = base
        .clone()
        .ignore_errors(true)
        .get_matches_from(args.clone());
    let file = first
        .try_get_one::<PathBuf>("config_file")
        .ok()
        .flatten()
        .cloned()
        .or_else(|| {
            let etcd = C::ETCD_FLAGS.contains(&CONFIG_FILE);
            env(&env_name(CONFIG_FILE, etcd)).map(PathBuf::from)
        });
    let from_file = match &file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            file_values(path, &text, &base)?
        }
        None => BTreeMap::new(),
    };
    resolve(base, args, env, &from_file)
}

/// `C` from the text of a config file alone (no flags, no environment): what a test or a
/// tool that holds the text wants.
pub fn from_toml_str<C: Layered>(text: &str) -> Result<C, ConfigError> {
    let base = C::command();
    let values = file_values(Path::new("<config>"), text, &base)?;
    let name = base.get_name().to_string();
    Ok(resolve(base, [OsString::from(name)], |_| None, &values)?.config)
}

/// Folds the environment and the file's values in as defaults, then parses `args`.
fn resolve<C: Layered>(
    base: Command,
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    env: impl Fn(&str) -> Option<String>,
    from_file: &BTreeMap<String, String>,
) -> Result<Loaded<C>, ConfigError> {
    let cmd = base.mut_args(|arg| {
        let Some(long) = arg.get_long().map(str::to_string) else {
            return arg;
        };
        if long == PRINT_CONFIG || long == CONFIG_FILE {
            return arg;
        }
        let etcd =
            C::ETCD_FLAGS.contains(&long.as_str()) || COMMON_ETCD_FLAGS.contains(&long.as_str());
        match env(&env_name(&long, etcd)).or_else(|| from_file.get(&long).cloned()) {
            Some(value) => arg.default_value(value).required(false),
            None => arg,
        }
    });
    let mut matches = cmd.try_get_matches_from(args)?;
    let print = matches.try_get_one::<bool>(PRINT_CONFIG).ok().flatten() == Some(&true);
    let config = C::from_arg_matches_mut(&mut matches)?;
    Ok(Loaded { config, print })
}

/// The file's keys as flag values, every key checked against the command's flags.
fn file_values(
    path: &Path,
    text: &str,
    cmd: &Command,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Every long name and its visible and hidden aliases, as the long name.
    let known: Vec<(&str, &str)> = layered_args(cmd)
        .into_iter()
        .filter_map(|a| {
            let long = a.get_long()?;
            let aliases = a.get_all_aliases().unwrap_or_default();
            Some(std::iter::once(long).chain(aliases).map(move |n| (n, long)))
        })
        .flatten()
        .filter(|(_, l)| *l != CONFIG_FILE)
        .collect();
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let Some(&(_, long)) = known.iter().find(|(n, _)| *n == key.as_str()) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key,
            });
        };
        let key = long.to_string();
        let text = scalar(&value).map_err(|message| ConfigError::BadValue {
            path: path.to_path_buf(),
            key: key.clone(),
            message,
        })?;
        out.insert(key, text);
    }
    Ok(out)
}

/// A TOML value as the text a flag would carry (arrays comma-separated, as etcd's lists).
fn scalar(value: &toml::Value) -> Result<String, String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Table(_) => return Err("a table is not a flag value".into()),
    })
}

/// The resolved configuration as TOML (what `--print-config` prints).
pub fn to_toml<C: serde::Serialize>(config: &C) -> Result<String, toml::ser::Error> {
    toml::to_string(config)
}

/// Two different values each flag of `cmd` accepts, for tests that set every flag in two
/// layers and check which one wins; `None` for a flag no candidate suits.
pub fn sample_values(cmd: &Command, arg: &Arg) -> Option<(String, String)> {
    let long = arg.get_long()?;
    let mut candidates: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|p| p.get_name().to_string())
        .collect();
    candidates.extend(
        [
            "true",
            "false",
            "7",
            "9",
            "127.0.0.1:7",
            "127.0.0.1:9",
            "http://127.0.0.1:7",
            "http://127.0.0.1:9",
            "/tmp/mango-a",
            "/tmp/mango-b",
        ]
        .map(String::from),
    );
    let accepts = |v: &str| {
        cmd.clone()
            .mut_args(|a| a.required(false))
            .try_get_matches_from(["program".to_string(), format!("--{long}={v}")])
            .is_ok()
    };
    let ok: Vec<String> = candidates.into_iter().filter(|v| accepts(v)).collect();
    let a = ok.first()?.clone();
    let b = ok.iter().find(|v| **v != a)?.clone();
    Some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser, serde::Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Demo {
        #[arg(long)]
        #[serde(skip)]
        config_file: Option<PathBuf>,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long, default_value_t = 5)]
        count: u64,
        #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
              action = ArgAction::Set)]
        flag: bool,
        #[arg(long)]
        maybe: Option<String>,
        #[command(flatten)]
        #[serde(flatten)]
        common: CommonFlags,
    }

    impl Layered for Demo {
        const ETCD_FLAGS: &'static [&'static str] = &["name"];

        fn common(&self) -> &CommonFlags {
            &self.common
        }
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), text).expect("write");
        f
    }

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Demo, ConfigError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut all = vec!["demo"];
        all.extend_from_slice(args);
        load_from::<Demo>(all, |k| env.get(k).cloned()).map(|l| l.config)
    }

    #[test]
    fn flags_win_over_environment_over_file_over_defaults() -> Result<(), ConfigError> {
        let f = file("name = \"file\"\ncount = 1\nflag = true\nmaybe = \"m\"\n");
        let path = f.path().to_str().unwrap_or_default();
        let d = load(&["--config-file", path], &[])?;
        assert_eq!((d.name.as_str(), d.count, d.flag), ("file", 1, true));
        assert_eq!(d.maybe.as_deref(), Some("m"));
        let d = load(
            &["--config-file", path],
            &[("ETCD_NAME", "env"), ("MANGO_COUNT", "2")],
        )?;
        assert_eq!((d.name.as_str(), d.count), ("env", 2));
        let d = load(
            &["--config-file", path, "--name", "flag", "--flag=false"],
            &[("ETCD_NAME", "env")],
        )?;
        assert_eq!((d.name.as_str(), d.flag), ("flag", false));
        // etcd's name for an etcd flag, mango's for ours: not the other way round.
        let d = load(&[], &[("MANGO_NAME", "x"), ("ETCD_COUNT", "3")])?;
        assert_eq!((d.name.as_str(), d.count), ("default", 5));
        // The file may also come from the environment.
        let d = load(&[], &[("MANGO_CONFIG_FILE", path)])?;
        assert_eq!(d.name, "file");
        Ok(())
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let f = file("name = \"a\"\nnmae = \"typo\"\n");
        let path = f.path().to_str().unwrap_or_default();
        let err = load(&["--config-file", path], &[])
            .err()
            .map(|e| e.to_string());
        assert!(err.as_deref().unwrap_or("").contains("\"nmae\""), "{err:?}");
        let f = file("count = \"many\"\n");
        let path = f.path().to_str().unwrap_or_default();
        assert!(load(&["--config-file", path], &[]).is_err());
        let f = file("[table]\nx = 1\n");
        let path = f.path().to_str().unwrap_or_default();
        let err = load(&["--config-file", path], &[])
            .err()
            .map(|e| e.to_string());
        assert!(err.as_deref().unwrap_or("").contains("table"), "{err:?}");
        assert!(matches!(
            load(&["--config-file", "/nonexistent/mango.toml"], &[]),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn printed_config_loads_back_the_same() -> Result<(), Box<dyn std::error::Error>> {
        let d = load(&["--name", "n", "--count", "9", "--flag"], &[])?;
        let text = to_toml(&d)?;
        let f = file(&text);
        let back = load(
            &["--config-file", f.path().to_str().unwrap_or_default()],
            &[],
        )?;
        assert_eq!(to_toml(&back)?, text);
        Ok(())
    }

    #[test]
    fn every_flag_has_two_sample_values() {
        let cmd = <Demo as clap::CommandFactory>::command();
        for arg in layered_args(&cmd) {
            if arg.get_long() == Some(CONFIG_FILE) {
                continue;
            }
            let (a, b) = sample_values(&cmd, arg).unwrap_or_default();
            assert_ne!(a, b, "{:?}", arg.get_long());
        }
    }

    #[test]
    fn the_metrics_flag_takes_its_old_name_and_etcds_variable() -> Result<(), ConfigError> {
        let f = file("listen-metrics-addr = \"127.0.0.1:9\"\n");
        let path = f.path().to_str().unwrap_or_default();
        let d = load(&["--config-file", path], &[])?;
        assert_eq!(d.common.metrics.listen_metrics_urls, "127.0.0.1:9");
        let d = load(&["--listen-metrics-addr", "127.0.0.1:8"], &[])?;
        assert_eq!(d.common.metrics.listen_metrics_urls, "127.0.0.1:8");
        let d = load(&[], &[("ETCD_LISTEN_METRICS_URLS", "http://127.0.0.1:7")])?;
        assert_eq!(d.common.metrics.listen_metrics_urls, "http://127.0.0.1:7");
        Ok(())
    }
}
