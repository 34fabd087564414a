//! The `tidemark` command: one binary for the worker daemon, document commands and operations.
//!
//! Each subcommand lives in its own module under `commands/`; this file only parses and
//! dispatches. Errors print as one `error: ...` line (see `errors.rs`; `-v` adds the chain) and exit with status 1 (or the
//! status a command chooses, e.g. `status` and `verify` use 2 for "unhealthy / drift found").

mod commands;
mod common;
mod errors;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tidemark",
    version,
    about = "Keep a Chroma vector store consistent with MongoDB through a transactional outbox"
)]
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
    /// Write a document (and its outbox entry, in one transaction); content from an argument,
    /// --file or stdin. Exit 3: committed but --wait timed out before the vector was indexed.
    Put(commands::docs::PutArgs),
    /// Print a document as JSON (exit 4 if there is none).
    Get(commands::docs::GetArgs),
    /// Delete a document by contentId (its vector is removed by the worker; exit 4 if none).
    Delete(commands::docs::DeleteArgs),
    /// Import a JSON Lines file of {"contentId","type","content","metadata"} objects in batches.
    /// Exit 2 if some lines were bad (reported by line number).
    Import(commands::import::ImportArgs),
    /// Measure the write path, drain rates, lag, worker memory and catch-up against the real
    /// services; print a table and write the figures as JSON (--out). Reports, never fails on a number.
    Bench(commands::bench::BenchArgs),
    /// Embedding tools: `embed serve` serves the local model over an OpenAI-compatible API.
    Embed(commands::embed::EmbedArgs),
    /// Run the worker: tail the outbox, embed, upsert into Chroma, mark done; serves /metrics,
    /// /healthz, /readyz. Stops gracefully on SIGTERM/SIGINT (exit 0). --once: drain and exit.
    Worker(commands::worker::WorkerArgs),
    /// Embed a query and print the nearest documents (contentId, score, first line);
    /// --type and --where '<json>' filter them.
    Search(commands::search::SearchArgs),
    /// The outbox's audit trail of a document: every version, op, result, attempts, errors.
    History(commands::history::HistoryArgs),
    /// Serve the HTTP API (search, documents, history, put/delete) on serve.addr.
    Serve(commands::serve::ServeArgs),
    /// Outbox health: pending/dead counts, lag, done in the last minute, leases, resume token
    /// age. Exit 0 healthy, 2 unhealthy (status.max_lag / status.max_dead exceeded), 1 error.
    Status(commands::status::StatusArgs),
    /// Compare documents with Chroma: missing, stale, behind and orphan vectors by contentId
    /// (pending work reported as in flight). Exit 2 on drift. --repair: fix it (see `repair`).
    Verify(commands::verify::VerifyArgs),
    /// Enqueue reindex entries for missing/stale/behind documents (transactionally) and delete
    /// orphan vectors; --dry-run only reports (exit 2 on drift).
    Repair(commands::verify::RepairArgs),
    /// Dead letters: list, show ID, retry ID...|--all, purge --older-than DURATION.
    Dlq(commands::dlq::DlqArgs),
    /// Enqueue entries for documents (all, --type T, or --missing-only) in batches; resumable
    /// (same command continues after an interruption; --restart starts over).
    Backfill(commands::backfill::BackfillArgs),
    /// Index versions: list, create NAME (from this config's [embedder]/[chunking]), build,
    /// status, activate NAME [--force], drop NAME.
    Index(commands::index::IndexArgs),
    /// Bring the data of the legacy dual store into tidemark: inventory, plan, run, status,
    /// verify (exit 2 if a legacy record is unaccounted for), rollback. Never writes the legacy side.
    Migrate(commands::migrate::MigrateArgs),
}

fn main() -> ExitCode {
    common::quiet_teardown_panics();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config(args) => commands::config::run(&cli.global, args),
        Command::Put(args) => commands::docs::run_put(&cli.global, args),
        Command::Get(args) => commands::docs::run_get(&cli.global, args),
        Command::Delete(args) => commands::docs::run_delete(&cli.global, args),
        Command::Import(args) => commands::import::run(&cli.global, args),
        Command::Bench(args) => commands::bench::run(&cli.global, args),
        Command::Embed(args) => commands::embed::run(&cli.global, args),
        Command::Worker(args) => commands::worker::run(&cli.global, args),
        Command::Search(args) => commands::search::run(&cli.global, args),
        Command::History(args) => commands::history::run(&cli.global, args),
        Command::Serve(args) => commands::serve::run(&cli.global, args),
        Command::Status(args) => commands::status::run(&cli.global, args),
        Command::Verify(args) => commands::verify::run_verify(&cli.global, args),
        Command::Repair(args) => commands::verify::run_repair(&cli.global, args),
        Command::Dlq(args) => commands::dlq::run(&cli.global, args),
        Command::Backfill(args) => commands::backfill::run(&cli.global, args),
        Command::Migrate(args) => commands::migrate::run(&cli.global, args),
        Command::Index(args) => commands::index::run(&cli.global, args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", errors::render(&err));
            if cli.global.verbose {
                eprintln!("{}", errors::render_verbose(&err));
            }
            ExitCode::FAILURE
        }
    }
}
