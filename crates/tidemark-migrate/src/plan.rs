//! `migrate plan`: the mapping validated against the source (unknown collection or field, a
//! text field that is mostly not a string, an unknown time format, a reused legacy Chroma
//! collection that is missing or of another dimension; each naming the collection, the field and
//! an example record), then what a run would do per collection.

use crate::dedupe::{Merged, WinReason};
use crate::mapping::{Mapping, TargetModel};
use crate::record::content_id;
use crate::source::{scan, Problem, Scan, Source};
use crate::MigrateError;
use serde::Serialize;
use std::collections::BTreeMap;
use tidemark_core::config::Limits;

/// How many merge decisions a plan lists per collection.
const MERGE_EXAMPLES: usize = 5;

/// What a run would do with one collection.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionPlan {
    pub collection: String,
    pub records: u64,
    pub migrate: u64,
    pub merge: u64,
    pub duplicate_ids: u64,
    pub skip: BTreeMap<String, u64>,
    pub reuse_vectors: bool,
    /// A few merge decisions: which record wins and why.
    pub merges: Vec<MergeDecision>,
}

/// One merge decision, for a person to read.
#[derive(Debug, Clone, Serialize)]
pub struct MergeDecision {
    pub id: String,
    pub content_id: String,
    pub winner: String,
    pub loser: String,
    pub reason: WinReason,
}

/// The plan of a whole mapping.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub migration: String,
    pub collections: Vec<CollectionPlan>,
}

impl Plan {
    /// Text for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = format!("migration `{}`\n", self.migration);
        for c in &self.collections {
            let skips: Vec<String> = c.skip.iter().map(|(k, v)| format!("{v} {k}")).collect();
            s.push_str(&format!(
                "  {}: {} records -> migrate {}, merge {} duplicates of {} ids, skip {}{}\n",
                c.collection,
                c.records,
                c.migrate,
                c.merge,
                c.duplicate_ids,
                if skips.is_empty() {
                    "0".into()
                } else {
                    skips.join(", ")
                },
                if c.reuse_vectors {
                    ", reuse legacy vectors where the text matches"
                } else {
                    ""
                }
            ));
            for m in &c.merges {
                let why = match m.reason {
                    WinReason::NewestTimestamp => "newest timestamp",
                    WinReason::LatestId => "same timestamp, latest _id",
                };
                s.push_str(&format!(
                    "    id `{}`: _id {} wins over {} ({why})\n",
                    m.id, m.winner, m.loser
                ));
            }
        }
        s
    }
}

fn decision(collection: &str, m: &Merged) -> MergeDecision {
    MergeDecision {
        id: m.id.clone(),
        content_id: content_id(collection, &m.id),
        winner: m.winner.to_hex(),
        loser: m.oid.to_hex(),
        reason: m.reason,
    }
}

/// Scans every mapped collection and checks the mapping against the data. Nothing is
/// written. Returns the scans (run builds on them) or every problem found.
pub async fn check(
    mapping: &Mapping,
    source: &Source,
    target: &TargetModel,
    limits: &Limits,
) -> Result<Vec<Scan>, MigrateError> {
    mapping.validate(target)?;
    let existing = source.collection_names().await?;
    let mut problems = Vec::new();
    let mut scans = Vec::new();
    for (name, m) in &mapping.collections {
        if !existing.contains(name) {
            problems.push(Problem {
                collection: name.clone(),
                field: "-".into(),
                reason: format!(
                    "no such collection in source database `{}`",
                    source.db.name()
                ),
                example: None,
            });
            continue;
        }
        let s = scan(&source.db, name, &mapping.migration.id, m, limits).await?;
        problems.extend(s.problems(m));
        if m.reuse_vectors && !m.skip {
            if let Some(p) = check_reuse(source, name, m, target).await? {
                problems.push(p);
            }
        }
        scans.push(s);
    }
    if problems.is_empty() {
        Ok(scans)
    } else {
        Err(MigrateError::Problems(problems))
    }
}

async fn check_reuse(
    source: &Source,
    name: &str,
    m: &crate::mapping::CollectionMapping,
    target: &TargetModel,
) -> Result<Option<Problem>, MigrateError> {
    let problem = |reason: String| Problem {
        collection: name.to_string(),
        field: "chroma_collection".into(),
        reason,
        example: None,
    };
    let chroma = source.chroma.as_ref().expect("validated: chroma_url set");
    let cname = m.chroma_collection.as_deref().unwrap_or_default();
    let Some(c) = chroma.get_collection(cname).await? else {
        return Ok(Some(problem(format!(
            "legacy Chroma collection `{cname}` does not exist"
        ))));
    };
    let sample = chroma.get_full_page(&c.id, 0, 1, true).await?;
    let dim = sample
        .first()
        .and_then(|r| r.embedding.as_ref())
        .map(Vec::len);
    Ok(match dim {
        Some(d) if d != target.dimension => Some(problem(format!(
            "legacy vectors in `{cname}` have {d} dimensions, tidemark's embedder {}: cannot reuse them",
            target.dimension
        ))),
        _ => None,
    })
}

/// The plan of a checked mapping.
pub fn plan_of(mapping: &Mapping, scans: &[Scan]) -> Plan {
    let collections = scans
        .iter()
        .map(|s| {
            let m = &mapping.collections[&s.collection];
            CollectionPlan {
                collection: s.collection.clone(),
                records: s.records,
                migrate: s.dedup.winners.len() as u64,
                merge: s.dedup.merged.len() as u64,
                duplicate_ids: s.dedup.duplicate_ids() as u64,
                skip: s.skip_counts(),
                reuse_vectors: m.reuse_vectors && !m.skip,
                merges: s
                    .dedup
                    .merged
                    .iter()
                    .take(MERGE_EXAMPLES)
                    .map(|x| decision(&s.collection, x))
                    .collect(),
            }
        })
        .collect();
    Plan {
        migration: mapping.migration.id.clone(),
        collections,
    }
}

/// `migrate plan`: check, then plan.
pub async fn plan(
    mapping: &Mapping,
    source: &Source,
    target: &TargetModel,
    limits: &Limits,
) -> Result<Plan, MigrateError> {
    let scans = check(mapping, source, target, limits).await?;
    Ok(plan_of(mapping, &scans))
}
