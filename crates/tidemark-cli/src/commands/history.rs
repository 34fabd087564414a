//! `tidemark history CONTENT_ID [--json]`: the audit trail the outbox keeps for a document
//! (every version, op, status, result, attempts, errors, times), oldest first. Exit 4 when
//! there are no entries (never written, or expired with `outbox.retention`).

use crate::commands::docs::{open_store, EXIT_NOT_FOUND};
use crate::common::{self, GlobalArgs};
use std::process::ExitCode;
use tidemark_read::{HistoryEntry, Reader};

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// The document's key.
    pub content_id: String,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The contract name of an enum value (`upsert`, `done`, ...).
fn text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn row(e: &HistoryEntry) -> String {
    let result = e.result.as_ref().map(text).unwrap_or_else(|| "-".into());
    let mut line = format!(
        "{:>4}  {:<6}  {:<7}  {:<10}  {:>3}  {}  {}",
        e.version,
        text(&e.op),
        text(&e.status),
        result,
        e.attempts,
        e.created_at,
        e.done_at.as_deref().unwrap_or("-"),
    );
    if let Some(err) = &e.last_error {
        line.push_str(&format!("  error: {err}"));
    }
    if !e.error_history.is_empty() {
        line.push_str(&format!("  (earlier errors: {})", e.error_history.len()));
    }
    line
}

pub fn run(global: &GlobalArgs, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    common::runtime()?.block_on(async {
        let store = open_store(global).await?;
        let entries = Reader::new(&cfg, store).history(&args.content_id).await?;
        if entries.is_empty() {
            eprintln!(
                "no outbox entries for contentId `{}` (never written, or expired)",
                args.content_id
            );
            return Ok(ExitCode::from(EXIT_NOT_FOUND));
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&entries)?);
        } else {
            println!("version  op      status   result      att  created  done");
            for e in &entries {
                println!("{}", row(e));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
