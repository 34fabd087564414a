//! `tidemark search "text" [-k N] [--type T] [--where JSON] [--json]`: the read API's search
//! (tidemark-read): the query embedded with the configured model, the filter passed to Chroma
//! where it can be and applied to the documents otherwise; prints contentId, score and the
//! first line of each document (stale vectors marked).

use crate::common::{runtime, GlobalArgs};
use anyhow::{bail, Context};
use std::process::ExitCode;
use tidemark_read::{Filter, SearchRequest};
use tidemark_store::Store;

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// The query text.
    pub text: String,
    /// How many results.
    #[arg(short = 'k', long, default_value_t = 5)]
    pub k: usize,
    /// Only documents of this type.
    #[arg(long = "type", short = 't')]
    pub doc_type: Option<String>,
    /// A filter on metadata, e.g. '{"lang":"en","year":{"$gte":2020}}' (nested keys `a.b`).
    #[arg(long = "where", short = 'w')]
    pub filter: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn first_line(s: &str, max: usize) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max - 1).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

/// The `--where` and `--type` flags as one filter.
pub fn parse_filter(filter: Option<&str>, doc_type: Option<&str>) -> anyhow::Result<Filter> {
    let mut f = match filter {
        Some(text) => {
            let v: serde_json::Value =
                serde_json::from_str(text).context("--where is not valid JSON")?;
            Filter::from_json(&v).context("--where")?
        }
        None => Filter::all(),
    };
    if let Some(t) = doc_type {
        f = f.with_type(t);
    }
    Ok(f)
}

pub fn run(global: &GlobalArgs, args: SearchArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    if args.k == 0 {
        bail!("-k must be at least 1");
    }
    let filter = parse_filter(args.filter.as_deref(), args.doc_type.as_deref())?;
    let rt = runtime()?;
    rt.block_on(async {
        let store = Store::connect(&cfg)
            .await
            .context("cannot connect to MongoDB")?;
        let reader = crate::common::searching_reader(&cfg, store).await?;
        let req = SearchRequest::text(&args.text, args.k).with_filter(filter);
        let result = reader.search(&req).await?;
        for (rank, h) in result.hits.iter().enumerate() {
            let d = &h.document;
            let line = first_line(&d.content, 80);
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "rank": rank + 1, "contentId": d.content_id, "score": h.score,
                        "stale": h.stale, "type": d.doc_type, "version": d.version,
                        "firstLine": line,
                    })
                );
            } else {
                let mark = if h.stale { " (stale vector)" } else { "" };
                println!(
                    "{:>2}. {:<30} {:>6.3}  {line}{mark}",
                    rank + 1,
                    d.content_id,
                    h.score
                );
            }
        }
        if result.hits.is_empty() {
            eprintln!(
                "no matching documents in `{}` (is the worker running with this model?)",
                reader.collection_name().unwrap_or_else(|| "?".into())
            );
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::{first_line, parse_filter};

    #[test]
    fn first_non_empty_line_is_shortened() {
        assert_eq!(first_line("\n  hello world \nsecond", 80), "hello world");
        assert_eq!(first_line("abcdef", 4), "abc…");
    }

    #[test]
    fn where_and_type_flags_make_one_filter() {
        let f = parse_filter(Some(r#"{"lang":"en"}"#), Some("faq")).unwrap();
        assert_eq!(f.conds.len(), 2);
        let err = parse_filter(Some("{"), None).unwrap_err();
        assert!(format!("{err:#}").contains("--where is not valid JSON"));
        let err = parse_filter(Some(r#"{"n":{"$gt":true}}"#), None).unwrap_err();
        assert!(format!("{err:#}").contains("filter `n.$gt`"), "{err:#}");
    }
}
