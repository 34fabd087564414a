//! `tidemark import FILE.jsonl`: bulk load documents, one JSON object per line:
//! `{"contentId": "...", "type": "...", "content": "...", "metadata": {...}}` (metadata
//! optional, no other keys). Blank lines are ignored.
//!
//! Good lines are written in batches of `--batch` lines with `Store::put_many` (each document
//! with its outbox entry; a batch is one transaction, or several when it exceeds
//! `limits.max_batch_bytes`), so every accepted line is written whole or not at all.
//! Bad lines (invalid JSON, missing or unknown keys, validation errors) are reported on stderr
//! as `line N: reason`. By default they are skipped; with `--stop-on-error` the import stops at
//! the first bad line and the batch that line belongs to is not written at all (earlier batches
//! stay committed). A summary is printed on stdout as one JSON object.
//!
//! Exit status: 0 when every line was imported, 2 when some lines were bad, 1 on other errors.

use crate::commands::docs::open_store;
use crate::common::{self, GlobalArgs};
use anyhow::Context;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tidemark_core::config::Limits;
use tidemark_store::{validate, NewDocument, Store, StoreError};

/// Exit status when some lines were bad.
pub const EXIT_BAD_LINES: u8 = 2;

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The JSON Lines file.
    pub file: PathBuf,
    /// Lines per transaction batch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Stop at the first bad line (its batch is not written); default: skip and report.
    #[arg(long)]
    pub stop_on_error: bool,
}

/// One input line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(rename = "contentId")]
    content_id: String,
    #[serde(rename = "type")]
    doc_type: String,
    content: String,
    #[serde(default = "empty_object")]
    metadata: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// Parses and validates one line into a document, or says why it is bad.
fn parse_line(raw: &[u8], limits: &Limits) -> Result<NewDocument, String> {
    let text = std::str::from_utf8(raw).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // The input line is one line: serde's "at line 1 column N" becomes "(column N)".
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let what = full.strip_suffix(&suffix).unwrap_or(&full);
        format!("not valid JSON: {what} (column {})", e.column())
    })?;
    if !value.is_object() {
        return Err("wrong shape: must be a JSON object with contentId, type, content and optional metadata".into());
    }
    let line: Line = serde_json::from_value(value).map_err(|e| format!("wrong shape: {e}"))?;
    let doc =
        NewDocument::new(line.content_id, line.doc_type, line.content).with_metadata(line.metadata);
    validate(&doc, limits).map_err(|e| e.to_string())?;
    Ok(doc)
}

fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let mut reader = BufReader::new(std::fs::File::open(path)?);
    let mut n = 0;
    let mut buf = Vec::new();
    while reader.read_until(b'\n', &mut buf)? > 0 {
        n += 1;
        buf.clear();
    }
    Ok(n)
}

/// What happened, for the summary.
#[derive(Default)]
struct Report {
    lines: u64,
    written: u64,
    bad: Vec<(u64, String)>,
    stopped_at: Option<u64>,
    discarded: u64,
}

struct Batch {
    docs: Vec<NewDocument>,
    first_line: u64,
}

async fn flush(
    store: &Store,
    batch: &mut Batch,
    report: &mut Report,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    if batch.docs.is_empty() {
        return Ok(());
    }
    let docs = std::mem::take(&mut batch.docs);
    let n = docs.len() as u64;
    match store.put_many(docs).await {
        Ok(_) => {
            report.written += n;
            bar.inc(n);
            Ok(())
        }
        Err(StoreError::BatchFailed {
            committed, source, ..
        }) => Err(anyhow::anyhow!(
            "{} documents written in total; of the batch starting at line {}, the first {committed} \
             documents are committed and the rest are not: {source}",
            report.written + committed as u64,
            batch.first_line
        )),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "{} documents written; the batch starting at line {} was not written",
            report.written, batch.first_line
        ))),
    }
}

pub fn run(global: &GlobalArgs, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let total =
        count_lines(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    common::runtime()?.block_on(async {
        let store = open_store(global).await?;
        let limits = store.limits().clone();
        let bar = common::progress_bar(Some(total), "import");
        let mut report = Report::default();
        let mut batch = Batch {
            docs: Vec::new(),
            first_line: 1,
        };
        let mut reader = BufReader::new(std::fs::File::open(&args.file)?);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            line_no += 1;
            let raw = buf.trim_ascii();
            if raw.is_empty() {
                bar.inc(1);
                continue;
            }
            report.lines += 1;
            match parse_line(raw, &limits) {
                Ok(doc) => {
                    if batch.docs.is_empty() {
                        batch.first_line = line_no;
                    }
                    batch.docs.push(doc);
                    if batch.docs.len() >= args.batch as usize {
                        flush(&store, &mut batch, &mut report, &bar).await?;
                    }
                }
                Err(reason) => {
                    bar.suspend(|| eprintln!("line {line_no}: {reason}"));
                    report.bad.push((line_no, reason));
                    bar.inc(1);
                    if args.stop_on_error {
                        report.stopped_at = Some(line_no);
                        report.discarded = batch.docs.len() as u64;
                        batch.docs.clear();
                        break;
                    }
                }
            }
        }
        if report.stopped_at.is_none() {
            flush(&store, &mut batch, &mut report, &bar).await?;
        }
        bar.finish_and_clear();
        summarize(&args.file, &report)
    })
}

fn summarize(file: &Path, r: &Report) -> anyhow::Result<ExitCode> {
    let bad: Vec<Value> = r
        .bad
        .iter()
        .map(|(line, error)| json!({"line": line, "error": error}))
        .collect();
    let summary = json!({
        "file": file.display().to_string(),
        "lines": r.lines,
        "written": r.written,
        "bad": bad,
        "stoppedAtLine": r.stopped_at,
        "discardedFromBatch": r.discarded,
    });
    println!("{}", serde_json::to_string(&summary)?);
    match r.stopped_at {
        Some(line) => eprintln!(
            "stopped at bad line {line}: {} documents written before its batch; the {} good \
             lines of its batch were not written",
            r.written, r.discarded
        ),
        None => eprintln!(
            "imported {} of {} lines; {} bad line(s){}",
            r.written,
            r.lines,
            r.bad.len(),
            if r.bad.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = r.bad.iter().take(20).map(|(l, _)| l.to_string()).collect();
                format!(" (lines {})", list.join(", "))
            }
        ),
    }
    Ok(if r.bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BAD_LINES)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_errors_say_why() {
        let l = Limits::default();
        assert!(parse_line(br#"{"contentId":"a","type":"t","content":"c"}"#, &l).is_ok());
        let e = parse_line(b"{not json", &l).unwrap_err();
        assert!(e.starts_with("not valid JSON"), "{e}");
        let e = parse_line(br#"{"contentId":"a","content":"c"}"#, &l).unwrap_err();
        assert!(e.contains("missing field `type`"), "{e}");
        let e = parse_line(
            br#"{"contentId":"a","type":"t","content":"c","extra":1}"#,
            &l,
        )
        .unwrap_err();
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = parse_line(br#"{"contentId":"","type":"t","content":"c"}"#, &l).unwrap_err();
        assert!(e.contains("contentId"), "{e}");
        let e = parse_line(br#"["a","t","c"]"#, &l).unwrap_err();
        assert!(e.contains("must be a JSON object"), "{e}");
        let e = parse_line(b"\xff\xfe", &l).unwrap_err();
        assert!(e.contains("UTF-8"), "{e}");
    }
}
