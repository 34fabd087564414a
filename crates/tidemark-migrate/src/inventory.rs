//! `migrate inventory`: what the legacy side holds, per collection — record count, detected
//! field roles, time-type histogram, duplicate ids, records without text or id, images, the
//! matching Chroma collection (naming rules and `collection_aliases`), vector coverage
//! (records with a vector, missing, orphan vectors, text mismatches) and the model and
//! dimensions known — plus a draft mapping file. Read only.

use crate::mapping::{CollectionMapping, TargetModel, UNDECIDED};
use crate::naming::{match_collection, parse_versioned, Alias, ChromaMatch};
use crate::roles::{detect, FieldStats, Roles};
use crate::source::{scan, Scan, Source};
use crate::MigrateError;
use bson::{doc, Document};
use futures::TryStreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use tidemark_chroma::{ChromaClient, CollectionInfo};
use tidemark_core::config::Limits;

/// Records read to detect the field roles.
const ROLE_SAMPLE: i64 = 2000;
/// Examples listed per anomaly.
const EXAMPLES: usize = 5;

/// Vectors of a matched legacy Chroma collection against the records.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    pub vectors: u64,
    /// Records (one per id) with a vector.
    pub with_vector: u64,
    /// Records without a vector.
    pub missing: u64,
    /// Vectors whose id is no record's id.
    pub orphans: u64,
    /// Vectors whose document text differs from the record's text.
    pub text_mismatch: u64,
    pub missing_examples: Vec<String>,
    pub orphan_examples: Vec<String>,
    pub mismatch_examples: Vec<String>,
}

/// One legacy collection.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionInventory {
    pub collection: String,
    pub records: u64,
    pub roles: Roles,
    pub time_kinds: BTreeMap<String, u64>,
    /// Ids with more than one record, and the records beyond the first.
    pub duplicate_ids: u64,
    pub duplicate_records: u64,
    pub skipped: BTreeMap<String, u64>,
    pub chroma: Option<ChromaMatch>,
    pub notes: Vec<String>,
    pub coverage: Option<Coverage>,
    pub model: Option<String>,
    pub dimension: Option<usize>,
    pub space: Option<String>,
}

/// The whole inventory.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub database: String,
    pub aliases: Vec<Alias>,
    pub chroma_collections: Vec<String>,
    /// Chroma collections no MongoDB collection matched.
    pub unmatched_chroma: Vec<String>,
    pub collections: Vec<CollectionInventory>,
}

/// The provisional mapping the roles suggest (used to scan, and for the draft).
pub fn suggested(name: &str, roles: &Roles) -> CollectionMapping {
    CollectionMapping {
        skip: false,
        doc_type: crate::naming::unprefixed(name).unwrap_or(name).to_string(),
        id_field: roles.id.clone().unwrap_or_else(|| UNDECIDED.into()),
        text_field: roles.text.clone().unwrap_or_else(|| UNDECIDED.into()),
        time_field: roles.time.clone(),
        metadata_field: roles.metadata.clone(),
        extra_fields: true,
        drop_fields: None,
        chroma_collection: None,
        vector_model: None,
        vector_dimension: None,
        reuse_vectors: false,
    }
}

async fn roles_of(source: &Source, name: &str) -> Result<Roles, MigrateError> {
    let mut stats = FieldStats::default();
    let mut cursor = source
        .db
        .collection::<Document>(name)
        .find(doc! {})
        .limit(ROLE_SAMPLE)
        .await?;
    while let Some(d) = cursor.try_next().await? {
        stats.observe(&d);
    }
    Ok(detect(&stats))
}

/// Reads the legacy side and describes it.
pub async fn inventory(source: &Source, limits: &Limits) -> Result<Inventory, MigrateError> {
    let aliases = source.aliases().await?;
    let chroma_infos = match &source.chroma {
        Some(c) => c.list_collections().await?,
        None => Vec::new(),
    };
    let chroma_names: Vec<String> = chroma_infos.iter().map(|c| c.name.clone()).collect();
    let mut collections = Vec::new();
    for name in source.collection_names().await? {
        let roles = roles_of(source, &name).await?;
        let m = suggested(&name, &roles);
        let s = scan(&source.db, &name, "inventory", &m, limits).await?;
        let matched = match_collection(&name, &chroma_names, &aliases);
        let mut inv = CollectionInventory {
            collection: name.clone(),
            records: s.records,
            time_kinds: s
                .time_kinds
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect(),
            duplicate_ids: s.dedup.duplicate_ids() as u64,
            duplicate_records: s.dedup.merged.len() as u64,
            skipped: s.skip_counts(),
            roles,
            chroma: matched.found.clone(),
            notes: matched.notes.clone(),
            coverage: None,
            model: None,
            dimension: None,
            space: None,
        };
        if let (Some(found), Some(client)) = (&matched.found, &source.chroma) {
            let info = chroma_infos
                .iter()
                .find(|c| c.name == found.chroma)
                .expect("listed");
            describe_vectors(&mut inv, client, info, found, &s).await?;
        }
        collections.push(inv);
    }
    let used: HashSet<&str> = collections
        .iter()
        .filter_map(|c| c.chroma.as_ref().map(|m| m.chroma.as_str()))
        .collect();
    Ok(Inventory {
        database: source.db.name().to_string(),
        unmatched_chroma: chroma_names
            .iter()
            .filter(|n| !used.contains(n.as_str()))
            .cloned()
            .collect(),
        chroma_collections: chroma_names,
        aliases,
        collections,
    })
}

fn meta_str(info: &CollectionInfo, key: &str) -> Option<String> {
    info.metadata
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

fn meta_usize(info: &CollectionInfo, key: &str) -> Option<usize> {
    info.metadata
        .get(key)
        .and_then(|v| v.as_u64())
        .map(|n| n as usize)
}

async fn describe_vectors(
    inv: &mut CollectionInventory,
    client: &ChromaClient,
    info: &CollectionInfo,
    found: &ChromaMatch,
    s: &Scan,
) -> Result<(), MigrateError> {
    let embed = found
        .alias
        .as_ref()
        .and_then(|a| a.embed.clone())
        .unwrap_or_default();
    let versioned = parse_versioned(&info.name);
    inv.model = embed
        .model
        .or_else(|| meta_str(info, "fn"))
        .or_else(|| versioned.map(|v| v.model));
    let sample = client.get_full_page(&info.id, 0, 1, true).await?;
    let sampled = sample
        .first()
        .and_then(|r| r.embedding.as_ref())
        .map(Vec::len);
    inv.dimension = sampled
        .or(embed.dims)
        .or_else(|| meta_usize(info, "dims"))
        .or(info.dimension);
    inv.space = info.space.clone();
    inv.coverage = Some(coverage(client, &info.id, s).await?);
    Ok(())
}

async fn coverage(client: &ChromaClient, coll: &str, s: &Scan) -> Result<Coverage, MigrateError> {
    let mut all_ids: HashSet<&str> = s.dedup.winners.keys().map(String::as_str).collect();
    all_ids.extend(s.dedup.merged.iter().map(|m| m.id.as_str()));
    all_ids.extend(s.skipped.iter().filter_map(|x| x.id.as_deref()));
    let mut cov = Coverage::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut offset = 0;
    loop {
        let page = client.get_full_page(coll, offset, 1000, false).await?;
        offset += page.len();
        for r in &page {
            cov.vectors += 1;
            match s.dedup.winners.get(&r.id) {
                Some(w) => {
                    seen.insert(r.id.clone());
                    let text = r.document.as_deref().unwrap_or_default();
                    if tidemark_core::content_hash(text) != w.hash {
                        cov.text_mismatch += 1;
                        push(&mut cov.mismatch_examples, &r.id);
                    }
                }
                None if !all_ids.contains(r.id.as_str()) => {
                    cov.orphans += 1;
                    push(&mut cov.orphan_examples, &r.id);
                }
                None => {}
            }
        }
        if page.len() < 1000 {
            break;
        }
    }
    cov.with_vector = seen.len() as u64;
    let mut missing: Vec<&String> = s
        .dedup
        .winners
        .keys()
        .filter(|k| !seen.contains(*k))
        .collect();
    missing.sort();
    cov.missing = missing.len() as u64;
    for m in missing.into_iter().take(EXAMPLES) {
        cov.missing_examples.push(m.clone());
    }
    cov.orphan_examples.sort();
    cov.mismatch_examples.sort();
    Ok(cov)
}

fn push(v: &mut Vec<String>, id: &str) {
    if v.len() < EXAMPLES {
        v.push(id.to_string());
    }
}

#[path = "inventory_text.rs"]
mod text;
pub use text::draft_mapping;

impl Inventory {
    /// Text for a terminal.
    pub fn to_text(&self) -> String {
        text::to_text(self)
    }

    /// A draft mapping file (TOML, with comments for what a person must decide).
    pub fn draft(
        &self,
        source: &crate::mapping::SourceSection,
        migration: &str,
        target: &TargetModel,
    ) -> String {
        draft_mapping(self, source, migration, target)
    }
}
