//! `mangoctl`: mango's admin CLI. Today: development certificates (a CA and member
//! certificates issued by it, for `scripts/cluster`, the compose files and tests), and
//! `snapshot status`/`snapshot restore` on etcd 3.4 snapshot files (from mango or etcd).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cert;
mod snapshot;

/// mango's admin CLI.
#[derive(Debug, Parser)]
#[command(name = "mangoctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Development certificates: a CA kept in a folder, and certificates it issues.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Snapshots in etcd 3.4's format (saved from mango or from etcd): status, restore.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Prints the hash, revision, total keys and size of a snapshot file, as etcdctl does.
    Status {
        /// The snapshot file.
        file: PathBuf,
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "simple")]
        write_out: snapshot::Format,
    },
    /// Builds the data folder of one member of a NEW cluster from a snapshot file. Start the
    /// member with the same --name, --initial-cluster, --initial-cluster-token and peer URLs
    /// and --initial-cluster-state new.
    Restore {
        /// The snapshot file.
        file: PathBuf,
        /// This member's name.
        #[arg(long, default_value = "default")]
        name: String,
        /// The new cluster's members, `name=peer-url,...`.
        #[arg(long, default_value = "default=http://localhost:2380")]
        initial_cluster: String,
        /// The new cluster's token.
        #[arg(long, default_value = "etcd-cluster")]
        initial_cluster_token: String,
        /// This member's peer URLs (comma-separated); default: its --initial-cluster URLs.
        #[arg(long, default_value = "")]
        initial_advertise_peer_urls: String,
        /// The data folder to create; default: `<name>.etcd`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Accept a file without etcd's trailing SHA-256 (a member's `db` copied from disk).
        #[arg(long)]
        skip_hash_check: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Makes the CA (`ca.crt`, `ca.key`) in DIR unless it is there.
    Init {
        /// The folder.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issues `<NAME>.crt` and `<NAME>.key` in DIR (kept if both exist), for servers and
    /// clients alike, with NAME as the common name (etcd's user for client certificates).
    Issue {
        /// The CA's folder (made if missing); the files go there too.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate's common name and file name.
        #[arg(long)]
        name: String,
        /// Host names and IP addresses the certificate is valid for (comma-separated;
        /// localhost and 127.0.0.1 are always added).
        #[arg(long, default_value = "")]
        hosts: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Cert(CertCommand::Init { dir }) => cert::init(&dir),
        Command::Cert(CertCommand::Issue { dir, name, hosts }) => cert::issue(&dir, &name, &hosts),
        Command::Snapshot(SnapshotCommand::Status { file, write_out }) => {
            snapshot::print_status(&file, write_out)
        }
        Command::Snapshot(SnapshotCommand::Restore {
            file,
            name,
            initial_cluster,
            initial_cluster_token,
            initial_advertise_peer_urls,
            data_dir,
            skip_hash_check,
        }) => snapshot::run_restore(&mango_voter::restore::RestoreOptions {
            snapshot: file,
            data_dir: data_dir.unwrap_or_else(|| PathBuf::from(format!("{name}.etcd"))),
            name,
            initial_cluster,
            initial_cluster_token,
            initial_advertise_peer_urls: initial_advertise_peer_urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect(),
            skip_hash_check,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mangoctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
