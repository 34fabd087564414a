//! The legacy side, read only: the MongoDB database (collections, the `collection_aliases`
//! registry, records in `_id` order) and its Chroma. [`scan`] reads one collection through the
//! normalisation and the merge, which plan, run and verify all share, and collects what the
//! mapping's validation needs: field presence, non-string texts and unknown time formats, each
//! with an example record id.

use crate::dedupe::{merge, Dedup, Summary};
use crate::mapping::{CollectionMapping, SourceSection};
use crate::naming::{Alias, EmbedInfo};
use crate::record::{normalise, Context, SkipReason, Skipped};
use crate::roles::FieldStats;
use crate::time::TimeKind;
use crate::MigrateError;
use bson::{doc, Bson, Document};
use futures::TryStreamExt;
use mongodb::{Client, Database};
use serde::Serialize;
use std::collections::BTreeMap;
use tidemark_chroma::{ChromaClient, ChromaOptions};
use tidemark_core::config::Limits;

/// The registry of legacy Chroma collection names.
pub const COLL_ALIASES: &str = "collection_aliases";

/// Read-only handles on the legacy stores.
#[derive(Clone)]
pub struct Source {
    pub db: Database,
    pub chroma: Option<ChromaClient>,
}

impl Source {
    /// Connects to the legacy MongoDB (and Chroma, when a URL is given). Nothing is written.
    pub async fn connect(s: &SourceSection) -> Result<Source, MigrateError> {
        let client = Client::with_uri_str(&s.uri).await.map_err(|e| {
            MigrateError::Source(format!(
                "cannot use source uri {}: {e}",
                tidemark_core::redact_uri(&s.uri)
            ))
        })?;
        let chroma = match &s.chroma_url {
            Some(url) => {
                let mut o = ChromaOptions::new(url);
                o.tenant = s.chroma_tenant.clone();
                o.database = s.chroma_database.clone();
                Some(ChromaClient::new(o)?)
            }
            None => None,
        };
        Ok(Source {
            db: client.database(&s.database),
            chroma,
        })
    }

    /// The record collections (the alias registry and system collections left out), sorted.
    pub async fn collection_names(&self) -> Result<Vec<String>, MigrateError> {
        let mut names: Vec<String> = self
            .db
            .list_collection_names()
            .await?
            .into_iter()
            .filter(|n| n != COLL_ALIASES && !n.starts_with("system."))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The entries of `collection_aliases` (none when it does not exist).
    pub async fn aliases(&self) -> Result<Vec<Alias>, MigrateError> {
        let docs: Vec<Document> = self
            .db
            .collection::<Document>(COLL_ALIASES)
            .find(doc! {})
            .await?
            .try_collect()
            .await?;
        Ok(docs.iter().filter_map(alias_of).collect())
    }
}

fn as_usize(v: Option<&Bson>) -> Option<usize> {
    match v? {
        Bson::Int32(n) => usize::try_from(*n).ok(),
        Bson::Int64(n) => usize::try_from(*n).ok(),
        Bson::Double(f) if *f >= 0.0 => Some(*f as usize),
        Bson::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn alias_of(d: &Document) -> Option<Alias> {
    let family = match d.get("_id")? {
        Bson::String(s) => s.clone(),
        other => other.to_string(),
    };
    let target = d.get_str("target").ok()?.to_string();
    let embed = d.get_document("embed").ok().map(|e| EmbedInfo {
        driver: e.get_str("driver").ok().map(str::to_string),
        model: e.get_str("fn").ok().map(str::to_string),
        dims: as_usize(e.get("dims")),
        version: e.get_str("version").ok().map(str::to_string),
    });
    Some(Alias {
        family,
        target,
        embed,
    })
}

/// A problem of the mapping against the source data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub collection: String,
    pub field: String,
    pub reason: String,
    pub example: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "collection `{}`, field `{}`: {}",
            self.collection, self.field, self.reason
        )?;
        if let Some(e) = &self.example {
            write!(f, " (e.g. record {e})")?;
        }
        Ok(())
    }
}

/// Counters of one field, for the validation.
#[derive(Debug, Clone, Default)]
struct FieldSeen {
    present: u64,
    first_absent: Option<String>,
}

/// One collection read through the normalisation and the merge.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub collection: String,
    pub records: u64,
    pub dedup: Dedup,
    pub skipped: Vec<Skipped>,
    pub time_kinds: BTreeMap<TimeKind, u64>,
    pub stats: FieldStats,
    text_not_string: u64,
    text_example: Option<String>,
    seen: BTreeMap<String, FieldSeen>,
}

fn example(d: &Document, id_field: &str) -> String {
    match crate::record::id_string(d.get(id_field)) {
        Some(id) => format!("id `{id}`"),
        None => format!(
            "_id {}",
            d.get("_id").map(|v| v.to_string()).unwrap_or_default()
        ),
    }
}

impl Scan {
    fn observe_fields(&mut self, d: &Document, m: &CollectionMapping) {
        let fields = [
            Some(&m.id_field),
            Some(&m.text_field),
            m.time_field.as_ref(),
            m.metadata_field.as_ref(),
        ];
        for f in fields.into_iter().flatten() {
            let s = self.seen.entry(f.clone()).or_default();
            if d.contains_key(f) {
                s.present += 1;
            } else if s.first_absent.is_none() {
                s.first_absent = Some(example(d, &m.id_field));
            }
        }
        if !matches!(d.get(&m.text_field), Some(Bson::String(_))) {
            self.text_not_string += 1;
            if self.text_example.is_none() {
                self.text_example = Some(example(d, &m.id_field));
            }
        }
    }

    /// The problems of the mapping `m` found in this collection's records.
    pub fn problems(&self, m: &CollectionMapping) -> Vec<Problem> {
        let problem = |field: &str, reason: String, example: Option<String>| Problem {
            collection: self.collection.clone(),
            field: field.to_string(),
            reason,
            example,
        };
        let mut out = Vec::new();
        if m.skip || self.records == 0 {
            return out;
        }
        for (f, s) in &self.seen {
            if s.present == 0 {
                out.push(problem(
                    f,
                    "occurs in no record".into(),
                    s.first_absent.clone(),
                ));
            }
        }
        if self.text_not_string * 2 > self.records {
            out.push(problem(
                &m.text_field,
                format!(
                    "is not a string in {} of {} records (wrong text field?)",
                    self.text_not_string, self.records
                ),
                self.text_example.clone(),
            ));
        }
        let bad: Vec<&Skipped> = self
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::BadTime)
            .collect();
        if let Some(first) = bad.first() {
            out.push(problem(
                m.time_field.as_deref().unwrap_or("?"),
                format!(
                    "{} in {} record(s)",
                    first.detail.as_deref().unwrap_or("unknown time format"),
                    bad.len()
                ),
                Some(match &first.id {
                    Some(id) => format!("id `{id}`"),
                    None => format!("_id {}", first.oid),
                }),
            ));
        }
        out
    }

    /// Skipped records counted by reason.
    pub fn skip_counts(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in &self.skipped {
            *out.entry(s.reason.as_str().to_string()).or_insert(0) += 1;
        }
        out
    }
}

/// Reads every record of `collection` (in `_id` order) through the normalisation and the merge.
pub async fn scan(
    db: &Database,
    collection: &str,
    migration: &str,
    m: &CollectionMapping,
    limits: &Limits,
) -> Result<Scan, MigrateError> {
    let cx = Context {
        collection,
        migration,
        mapping: m,
        limits,
    };
    let mut out = Scan {
        collection: collection.to_string(),
        ..Default::default()
    };
    let mut summaries = Vec::new();
    let mut cursor = db
        .collection::<Document>(collection)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .batch_size(1000)
        .await?;
    while let Some(d) = cursor.try_next().await? {
        out.records += 1;
        out.stats.observe(&d);
        out.observe_fields(&d, m);
        match normalise(&d, &cx) {
            Ok(c) => {
                *out.time_kinds.entry(c.time_kind).or_insert(0) += 1;
                summaries.push(Summary {
                    hash: tidemark_core::content_hash(&c.doc.content),
                    oid: c.oid,
                    id: c.id,
                    time_ms: c.time.timestamp_millis(),
                });
            }
            Err(s) => out.skipped.push(s),
        }
    }
    out.dedup = merge(summaries);
    Ok(out)
}
