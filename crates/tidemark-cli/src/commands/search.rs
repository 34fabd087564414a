//! `tidemark search "text" [-k N]`: embeds the query with the configured model and prints the
//! nearest documents (contentId, score, first line), so a person can see the vectors mean
//! something.

use crate::common::{runtime, GlobalArgs};
use anyhow::{bail, Context};
use bson::doc;
use futures::TryStreamExt;
use std::collections::HashMap;
use std::process::ExitCode;
use tidemark_chroma::{ChromaClient, ChromaOptions};
use tidemark_store::Store;

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// The query text.
    pub text: String,
    /// How many results.
    #[arg(short = 'k', long, default_value_t = 5)]
    pub k: usize,
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

pub fn run(global: &GlobalArgs, args: SearchArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    if args.k == 0 {
        bail!("-k must be at least 1");
    }
    let embedder =
        tidemark_embed::from_config(&cfg.embedder).context("cannot load the embedder")?;
    let rt = runtime()?;
    rt.block_on(async {
        let chroma = ChromaClient::new(ChromaOptions::from_config(&cfg.chroma))?;
        let name = tidemark_core::collection_name(&cfg.chroma.namespace, embedder.model_id());
        let Some(coll) = chroma.get_collection(&name).await? else {
            bail!(
                "no Chroma collection `{name}` yet: is the worker running with model `{}`?",
                embedder.model_id()
            );
        };
        let v = embedder
            .embed(std::slice::from_ref(&args.text))
            .await?
            .pop()
            .context("the embedder returned no vector")?;
        let hits = chroma.query(&coll.id, &v, args.k).await?;
        let ids: Vec<bson::oid::ObjectId> = hits
            .iter()
            .filter_map(|h| bson::oid::ObjectId::parse_str(&h.id).ok())
            .collect();
        let store = Store::connect(&cfg).await.context("cannot connect to MongoDB")?;
        let docs: HashMap<String, tidemark_core::DocumentRecord> = store
            .documents()
            .find(doc! {"_id": {"$in": ids}})
            .await?
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .map(|d| (d.id.to_hex(), d))
            .collect();
        for (rank, h) in hits.iter().enumerate() {
            // Cosine distance: score 1 = same direction.
            let score = 1.0 - h.distance;
            let meta_cid = h
                .metadata
                .as_ref()
                .and_then(|m| m.get("contentId"))
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            let (cid, line) = match docs.get(&h.id) {
                Some(d) => (d.content_id.as_str(), first_line(&d.content, 80)),
                None => (meta_cid, "(document no longer exists)".to_string()),
            };
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"rank": rank + 1, "contentId": cid, "score": score, "firstLine": line})
                );
            } else {
                println!("{:>2}. {cid:<30} {score:>6.3}  {line}", rank + 1);
            }
        }
        if hits.is_empty() {
            eprintln!("no vectors in `{name}` yet");
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::first_line;

    #[test]
    fn first_non_empty_line_is_shortened() {
        assert_eq!(first_line("\n  hello world \nsecond", 80), "hello world");
        assert_eq!(first_line("abcdef", 4), "abc…");
    }
}
