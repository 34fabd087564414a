//! `tidemark put`, `tidemark get`, `tidemark delete`: single-document commands on top of
//! tidemark-store (one transaction for the document and its outbox entry).
//!
//! Exit status: 0 on success; 1 on errors (invalid input, MongoDB failures); 3 when `put --wait`
//! timed out: the document IS committed, only its vector is still pending; 4 when `get` or
//! `delete` found no document with that contentId.

use crate::common::{self, GlobalArgs};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tidemark_store::{Consistency, NewDocument, Store, StoreError};

/// Exit status when the write committed but the vector did not become visible in time.
pub const EXIT_PENDING: u8 = 3;
/// Exit status when there is no document with the given contentId.
pub const EXIT_NOT_FOUND: u8 = 4;

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// The document's key (unique): a put of an existing contentId replaces its content.
    pub content_id: String,
    /// The text; without it (and without --file) the text is read from stdin.
    #[arg(conflicts_with = "file")]
    pub content: Option<String>,
    /// Read the text from this file (UTF-8).
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// The document's type.
    #[arg(long = "type", short = 't', default_value = "text")]
    pub doc_type: String,
    /// Metadata as a JSON object, e.g. '{"lang":"en","tags":["a","b"]}'.
    #[arg(long, short = 'm')]
    pub metadata: Option<String>,
    /// Wait until the worker has indexed the vector (VectorVisible), at most this long, e.g. 10s.
    /// On timeout the exit status is 3: the document IS committed, its vector is pending.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wait: Option<Duration>,
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The document's key.
    pub content_id: String,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The document's key.
    pub content_id: String,
    /// Exit 0 (instead of 4) when there is no such document.
    #[arg(long)]
    pub missing_ok: bool,
}

/// Connects and makes sure collections and indexes exist (idempotent, cheap).
pub async fn open_store(global: &GlobalArgs) -> anyhow::Result<Store> {
    let cfg = global.load_config()?;
    common::init_logging(&cfg);
    common::ready_store(&cfg).await
}

fn read_content(args: &PutArgs) -> anyhow::Result<String> {
    if let Some(c) = &args.content {
        return Ok(c.clone());
    }
    if let Some(path) = &args.file {
        return std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {} as UTF-8 text", path.display()));
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        bail!("no content: give it as an argument, with --file, or on stdin");
    }
    let mut s = String::new();
    stdin
        .read_to_string(&mut s)
        .context("cannot read the content from stdin as UTF-8 text")?;
    Ok(s)
}

pub fn run_put(global: &GlobalArgs, args: PutArgs) -> anyhow::Result<ExitCode> {
    let content = read_content(&args)?;
    let metadata = match &args.metadata {
        Some(text) => serde_json::from_str::<Value>(text).with_context(|| {
            format!(
                "--metadata is not valid JSON (value starts `{}`)",
                tidemark_core::error_text::excerpt(text, 40)
            )
        })?,
        None => json!({}),
    };
    let doc = NewDocument::new(&args.content_id, &args.doc_type, content).with_metadata(metadata);
    let level = match args.wait {
        Some(timeout) => Consistency::VectorVisible { timeout },
        None => Consistency::Eventual,
    };
    common::runtime()?.block_on(async {
        let store = open_store(global).await?;
        match store.put_with(doc, level).await {
            Ok(out) => {
                println!("{}", serde_json::to_string(&out)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ StoreError::NotVisible { .. }) => {
                eprintln!("warning: {e}");
                Ok(ExitCode::from(EXIT_PENDING))
            }
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("nothing written: cannot put `{}`", args.content_id))),
        }
    })
}

pub use tidemark_read::json::document_json;

pub fn run_get(global: &GlobalArgs, args: GetArgs) -> anyhow::Result<ExitCode> {
    common::runtime()?.block_on(async {
        let cfg = global.load_config()?;
        let reader = tidemark_read::Reader::new(&cfg, open_store(global).await?);
        match reader.get(&args.content_id).await? {
            Some(d) => {
                println!("{}", serde_json::to_string_pretty(&document_json(&d))?);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no document with contentId `{}`", args.content_id);
                Ok(ExitCode::from(EXIT_NOT_FOUND))
            }
        }
    })
}

pub fn run_delete(global: &GlobalArgs, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    common::runtime()?.block_on(async {
        let store = open_store(global).await?;
        let deleted = store
            .delete(&args.content_id)
            .await
            .with_context(|| format!("nothing deleted: cannot delete `{}`", args.content_id))?;
        match deleted {
            Some(out) => {
                println!("{}", serde_json::to_string(&out)?);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!(
                    "no document with contentId `{}`; nothing deleted",
                    args.content_id
                );
                Ok(if args.missing_ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_NOT_FOUND)
                })
            }
        }
    })
}
