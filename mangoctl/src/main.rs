//! `mangoctl`: mango's admin CLI. Today: development certificates (a CA and member
//! certificates issued by it, for `scripts/cluster`, the compose files and tests).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cert;

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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mangoctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
