//! `tidemark dlq`: dead outbox entries. `list` (newest first, paged with --before),
//! `show ID` (the whole entry as JSON; exit 4 if none), `retry ID... | --all` (back to pending,
//! attempts reset, previous error kept in errorHistory; exit 4 if some id was not a dead entry),
//! `purge --older-than DURATION` (dead entries only).

use crate::commands::verify::BarProgress;
use crate::common::{init_logging, progress_bar, runtime, GlobalArgs};
use anyhow::Context;
use std::process::ExitCode;
use tidemark_ops::{dlq, parse_id, Ops};

#[derive(clap::Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead entries, newest first.
    List {
        /// Entries per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only entries older than this entry id (the `next` id printed after a page).
        #[arg(long)]
        before: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print one outbox entry as JSON.
    Show { id: String },
    /// Put dead entries back to pending (attempts 0, due now; the last error moves to errorHistory).
    Retry {
        /// Entry ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead entry.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete dead entries whose last attempt is older than DURATION (e.g. 7d, 12h).
    Purge {
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(global: &GlobalArgs, args: DlqArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    init_logging(&cfg);
    runtime()?.block_on(async {
        let ops = Ops::connect(&cfg).await.context("cannot connect")?;
        match args.command {
            DlqCommand::List {
                limit,
                before,
                json,
            } => {
                let before = before.as_deref().map(parse_id).transpose()?;
                let page = dlq::list(&ops, limit, before).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&page)?);
                } else {
                    println!("{} dead entries", page.total);
                    for e in &page.entries {
                        println!(
                            "{} {} {} v{} attempts {} created {} last attempt {}{}: {}",
                            e.id,
                            e.op,
                            e.content_id,
                            e.version,
                            e.attempts,
                            e.created_at,
                            e.last_attempt_at,
                            if e.previous_errors > 0 {
                                format!(" ({} earlier errors)", e.previous_errors)
                            } else {
                                String::new()
                            },
                            e.last_error.as_deref().unwrap_or("-")
                        );
                    }
                    if let Some(n) = &page.next_before {
                        println!("next page: tidemark dlq list --before {n}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            DlqCommand::Show { id } => match dlq::show(&ops, parse_id(&id)?).await? {
                Some(v) => {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("no outbox entry {id}");
                    Ok(ExitCode::from(4))
                }
            },
            DlqCommand::Retry { ids, all, json } => {
                if all {
                    let bar = progress_bar(Some(0), "retry");
                    let n = dlq::retry_all(&ops, 1000, &BarProgress(bar.clone())).await;
                    bar.finish_and_clear();
                    let n = n?;
                    if json {
                        println!("{}", serde_json::json!({"retried": n}));
                    } else {
                        println!("{n} dead entries put back to pending");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                let ids = ids
                    .iter()
                    .map(|s| parse_id(s))
                    .collect::<Result<Vec<_>, _>>()?;
                let r = dlq::retry(&ops, &ids).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                } else {
                    for id in &r.retried {
                        println!("retried {id}");
                    }
                    for id in &r.skipped {
                        eprintln!("skipped {id}: not a dead entry");
                    }
                }
                Ok(if r.skipped.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(4)
                })
            }
            DlqCommand::Purge { older_than, json } => {
                let n = dlq::purge(&ops, older_than).await?;
                if json {
                    println!("{}", serde_json::json!({"deleted": n}));
                } else {
                    println!(
                        "deleted {n} dead entries older than {}",
                        humantime::format_duration(older_than)
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
