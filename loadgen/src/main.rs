//! `mango-loadgen`: an etcd v3 load generator. It speaks only the etcd v3 gRPC API (through the
//! generated clients of `mango-proto`), so it drives real etcd exactly as it drives mango.
//!
//! Exit codes: 0 when the run completed (request errors are counted, not fatal), 1 when the
//! endpoints cannot be reached at startup, 2 for usage errors.

#![forbid(unsafe_code)]

mod cli;
mod connect;
mod consistency;
mod cpu;
mod keys;
mod progress;
mod report;
mod runner;
mod schedule;
mod stats;
mod workloads;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::cli::Cli;
use crate::connect::Pool;
use crate::progress::{Printer, Progress};
use crate::report::Report;
use crate::workloads::Job;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let job = match Job::from_cli(&cli) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("mango-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let pool = match Pool::connect(&cli.global.endpoints, cli.global.conns).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("mango-loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    let setup = job.describe(&cli.global);
    let name = job.name;
    let progress = Arc::new(Progress::default());
    let printer = Printer::start(Arc::clone(&progress), cli.global.json);
    let run = job.run(&pool, progress).await;
    printer.stop();

    let cpu = cpu::process_cpu_seconds().unwrap_or(0.0);
    let report = Report::new(name, &run.stats, run.elapsed, cpu);
    if cli.global.json {
        println!("{}", report.to_json_line());
    } else {
        println!("{}", report.to_text(&setup));
    }
    ExitCode::SUCCESS
}
