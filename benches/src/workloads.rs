//! The workloads: each one mango-loadgen invocation (plus an optional preload), sized by
//! `--scale` or tiny under `--smoke`.

/// Key space of the put and txn workloads.
const KEY_SPACE: u64 = 100_000;
/// Value size of every writing workload.
const VAL_SIZE: u64 = 256;
/// The key the range workloads read, as the preload (`put --key-space-size 1
/// --sequential-keys`, 8-byte keys) writes it.
pub const RANGE_KEY: &str = "00000000";

/// One workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Short name, the table's first column.
    pub name: String,
    /// loadgen arguments of an unmeasured run before the measured one.
    pub preload: Option<Vec<String>>,
    /// loadgen arguments of the measured run (endpoints and --json are added).
    pub args: Vec<String>,
    /// A dataset load: the on-disk size is measured too.
    pub dataset: bool,
}

/// `base` scaled, at least `min`.
pub fn scaled(base: u64, scale: f64, min: u64) -> u64 {
    ((base as f64 * scale).round() as u64).max(min)
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Number of decimal digits of `n - 1` (the widest key index below `n`), at least 8.
fn key_size_for(n: u64) -> u64 {
    (n.saturating_sub(1).max(1).ilog10() as u64 + 1).max(8)
}

/// Thousands as "1k", millions as "1M", else the number.
fn short(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(100_000) {
        let m = n as f64 / 1e6;
        format!("{}M", trim(m))
    } else if n >= 1_000 && n.is_multiple_of(100) {
        format!("{}k", trim(n as f64 / 1e3))
    } else {
        n.to_string()
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
}

/// The preload of the range workloads: one put of [`RANGE_KEY`].
pub fn range_preload() -> Vec<String> {
    args(&[
        "--total",
        "1",
        "put",
        "--key-space-size",
        "1",
        "--sequential-keys",
        "--val-size",
        &VAL_SIZE.to_string(),
    ])
}

/// Every workload at `scale`, or tiny ones under `smoke`.
pub fn all(scale: f64, smoke: bool) -> Vec<Workload> {
    // (base at scale 1, size under --smoke)
    let size = |base: u64, tiny: u64| if smoke { tiny } else { scaled(base, scale, 1) };
    let put1 = size(5_000, 50);
    let put = size(20_000, 300);
    let range = size(40_000, 300);
    let txn = size(20_000, 300);
    let watch_puts = size(1_000, 20);
    let (streams, per_stream) = if smoke { (2, 10) } else { (10, 100) };
    let (big_streams, big_per_stream) = if smoke { (4, 10) } else { (100, 100) };
    let keepalives = size(20_000, 300);
    let dataset = size(1_000_000, 500);

    let key_space = KEY_SPACE.to_string();
    let val = VAL_SIZE.to_string();
    let put_run = |clients: u64, total: u64| {
        args(&[
            "--clients",
            &clients.to_string(),
            "--total",
            &total.to_string(),
            "put",
            "--key-space-size",
            &key_space,
            "--val-size",
            &val,
        ])
    };
    let preload_key = range_preload();
    let range_run = |consistency: &str| {
        args(&[
            "--clients",
            "256",
            "--total",
            &range.to_string(),
            "range",
            RANGE_KEY,
            "--consistency",
            consistency,
        ])
    };
    vec![
        Workload {
            name: "put, 1 client".into(),
            preload: None,
            args: put_run(1, put1),
            dataset: false,
        },
        Workload {
            name: "put, 64 clients".into(),
            preload: None,
            args: put_run(64, put),
            dataset: false,
        },
        Workload {
            name: "put, 256 clients".into(),
            preload: None,
            args: put_run(256, put),
            dataset: false,
        },
        Workload {
            name: "range linearizable, 256 clients".into(),
            preload: Some(preload_key.clone()),
            args: range_run("l"),
            dataset: false,
        },
        Workload {
            name: "range serializable, 256 clients".into(),
            preload: Some(preload_key),
            args: range_run("s"),
            dataset: false,
        },
        Workload {
            name: "txn-put, 64 clients".into(),
            preload: None,
            args: args(&[
                "--clients",
                "64",
                "--total",
                &txn.to_string(),
                "txn-put",
                "--key-space-size",
                &key_space,
                "--val-size",
                &val,
            ]),
            dataset: false,
        },
        Workload {
            name: format!("watch-latency, {} watchers", streams * per_stream),
            preload: None,
            args: args(&[
                "watch-latency",
                "--streams",
                &streams.to_string(),
                "--watchers-per-stream",
                &per_stream.to_string(),
                "--put-rate",
                "100",
                "--put-total",
                &watch_puts.to_string(),
            ]),
            dataset: false,
        },
        Workload {
            name: format!("watch-latency, {} watchers", big_streams * big_per_stream),
            preload: None,
            args: args(&[
                "watch-latency",
                "--streams",
                &big_streams.to_string(),
                "--watchers-per-stream",
                &big_per_stream.to_string(),
                "--put-rate",
                "100",
                "--put-total",
                &watch_puts.to_string(),
            ]),
            dataset: false,
        },
        Workload {
            name: "lease-keepalive, 64 clients".into(),
            preload: None,
            args: args(&[
                "--clients",
                "64",
                "--total",
                &keepalives.to_string(),
                "lease-keepalive",
            ]),
            dataset: false,
        },
        Workload {
            name: format!("dataset load, {} keys", short(dataset)),
            preload: None,
            args: args(&[
                "--clients",
                "256",
                "--total",
                &dataset.to_string(),
                "put",
                "--key-space-size",
                &dataset.to_string(),
                "--key-size",
                &key_size_for(dataset).to_string(),
                "--sequential-keys",
                "--val-size",
                &val,
            ]),
            dataset: true,
        },
    ]
}

/// A file-name-safe version of a workload name: "put, 64 clients" is "put-64-clients".
pub fn slug(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    s.trim_matches('-').to_owned()
}

/// Keeps the workloads whose slug (see [`slug`]) contains the slug of one of `filters`; all
/// when `filters` is empty.
pub fn select(all: Vec<Workload>, filters: &[String]) -> Vec<Workload> {
    if filters.is_empty() {
        return all;
    }
    all.into_iter()
        .filter(|w| {
            let name = slug(&w.name);
            filters.iter().any(|f| name.contains(&slug(f)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(w: &Workload) -> u64 {
        let i = w.args.iter().position(|a| a == "--total").unwrap();
        w.args[i + 1].parse().unwrap()
    }

    #[test]
    fn scale_one_has_the_documented_sizes() {
        let w = all(1.0, false);
        assert_eq!(w.len(), 10);
        assert_eq!(total(&w[0]), 5_000);
        assert_eq!(total(&w[1]), 20_000);
        assert_eq!(total(&w[2]), 20_000);
        assert_eq!(w[6].name, "watch-latency, 1000 watchers");
        assert_eq!(w[7].name, "watch-latency, 10000 watchers");
        assert_eq!(w[8].name, "lease-keepalive, 64 clients");
        assert_eq!(total(&w[8]), 20_000);
        assert_eq!(w[9].name, "dataset load, 1M keys");
        assert_eq!(total(&w[9]), 1_000_000);
        assert!(w[9].dataset);
        assert!(w[3].preload.is_some() && w[3].args.contains(&"l".to_owned()));
        assert!(w[4].args.contains(&"s".to_owned()));
    }

    #[test]
    fn scale_and_smoke_shrink_everything() {
        let w = all(0.1, false);
        assert_eq!(total(&w[1]), 2_000);
        assert_eq!(w[9].name, "dataset load, 100k keys");
        let s = all(1.0, true);
        assert!(
            s.iter()
                .filter(|w| !w.name.starts_with("watch"))
                .all(|w| total(w) <= 500)
        );
        assert!(s[6].args.contains(&"20".to_owned()));
    }

    #[test]
    fn key_size_fits_the_dataset() {
        assert_eq!(key_size_for(500), 8);
        assert_eq!(key_size_for(100_000_000), 8);
        assert_eq!(key_size_for(100_000_001), 9);
        assert_eq!(short(250_000), "250k");
        assert_eq!(short(1_500_000), "1.5M");
        assert_eq!(short(123), "123");
    }

    #[test]
    fn select_by_substring() {
        let w = select(all(1.0, true), &["PUT-1-".into(), "dataset".into()]);
        let names: Vec<&str> = w.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["put, 1 client", "dataset load, 500 keys"]);
        let w = select(all(1.0, true), &["put-64".into()]);
        let names: Vec<&str> = w.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["put, 64 clients", "txn-put, 64 clients"]);
        assert_eq!(
            slug("range linearizable, 256 clients"),
            "range-linearizable-256-clients"
        );
        assert_eq!(slug("dataset load, 1M keys"), "dataset-load-1m-keys");
    }
}
