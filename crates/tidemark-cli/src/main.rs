//! The `tidemark` command: one binary for the worker daemon, document commands and operations.
//!
//! Each subcommand lives in its own module under `commands/`; this file only parses and
//! dispatches. Errors print as `error: ...` with their causes and exit with status 1 (or the
//! status a command chooses, e.g. `status` and `verify` use 2 for "unhealthy / drift found").

mod commands;
mod common;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "tidemark", version, about = "Keep a Chroma vector store consistent with MongoDB through a transactional outbox")]
struct Cli {
    #[command(flatten)]
    global: common::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration file and print the effective configuration (secrets hidden).
    Config(commands::config::ConfigArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config(args) => commands::config::run(&cli.global, args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
