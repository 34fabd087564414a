//! `verify` and `repair`: compare the documents with the Chroma collection of the configured
//! model and report drift by contentId; optionally repair it.
//!
//! Two streaming passes, each bounded by `batch_size`:
//! 1. documents in `_id` order (keyset pages, no content read); each page's vectors are fetched
//!    by id. A document is, in this order of precedence:
//!    - **missing**: no vector with its id;
//!    - **stale**: the vector's `contentHash`, `version` or `model` differs from the document's
//!      (or from the configured model);
//!    - **behind**: the vector matches but `indexedVersion` is absent or below `version`;
//! 2. the vectors, scanned page by page: a vector whose id is not a document's `_id` is an
//!    **orphan**.
//!
//! **In flight** is not drift: a would-be finding whose document has a pending outbox entry
//! (the worker has not caught up yet), or whose document changed between the two reads of the
//! check (re-read after Chroma), is listed under `inFlight` and does not make the exit code
//! non-zero. Dead entries are not in flight: their documents are reported as drift.
//!
//! Repair (`repair = Some`) acts page by page as findings come in: missing, stale and behind
//! documents get an `upsert` outbox entry at their current version through
//! `Store::enqueue_reindex` (one transaction per page); orphan vectors are deleted from Chroma.
//! With `dry_run` it only counts what it would do. The worker then does the rest.

use tidemark_core::OutboxStatus;
use crate::{Ops, OpsError, Progress};
use bson::{doc, oid::ObjectId, Bson, Document};
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use tidemark_core::vector_meta::{keys, meta_str, Metadata};
use crate::verify_chunks::{classify, Expected};
use tidemark_core::ids::document_of_vector;
use tidemark_core::ScanCursor;
use tidemark_core::{COLL_DOCUMENTS, COLL_OUTBOX};

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Documents per page (and Chroma ids per request); vectors per scanned page.
    pub batch_size: usize,
    /// At most this many items are listed per category (counts stay exact).
    pub list_limit: usize,
    /// Repair what is found.
    pub repair: Option<RepairOptions>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            batch_size: 500,
            list_limit: 1000,
            repair: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RepairOptions {
    /// Report what would be done, change nothing.
    pub dry_run: bool,
}

/// A document with drift.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DocDrift {
    pub content_id: String,
    pub document_id: String,
    pub version: i64,
    pub indexed_version: Option<i64>,
    /// For stale vectors: which fields differ, e.g. `contentHash: vector sha256:.. != document sha256:..`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
}

/// A vector without a document.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrphanVector {
    pub vector_id: String,
    /// From the vector's metadata.
    pub content_id: Option<String>,
}

/// A finding that is not drift because the worker has work pending for it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    pub content_id: Option<String>,
    pub id: String,
    /// `missing`, `stale`, `behind` or `orphan`.
    pub would_be: &'static str,
}

/// Exact counts.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub documents: u64,
    pub vectors: u64,
    pub missing: u64,
    pub stale: u64,
    pub behind: u64,
    pub orphans: u64,
    pub in_flight: u64,
}

/// What repair did (or would do, with `dry_run`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RepairSummary {
    pub dry_run: bool,
    /// Outbox entries written for missing, stale and behind documents.
    pub enqueued: u64,
    /// Orphan vectors deleted from Chroma.
    pub orphans_deleted: u64,
}

/// The result of a verification.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub collection: String,
    pub model: String,
    pub collection_exists: bool,
    pub counts: Counts,
    pub missing: Vec<DocDrift>,
    pub stale: Vec<DocDrift>,
    pub behind: Vec<DocDrift>,
    pub orphans: Vec<OrphanVector>,
    pub in_flight: Vec<InFlight>,
    /// Some list was cut at the list limit (the counts are complete).
    pub truncated: bool,
    pub repair: Option<RepairSummary>,
}

impl VerifyReport {
    /// True when anything besides in-flight work was found.
    pub fn has_drift(&self) -> bool {
        let c = &self.counts;
        c.missing + c.stale + c.behind + c.orphans > 0
    }

    fn push<T>(list: &mut Vec<T>, item: T, limit: usize, truncated: &mut bool) {
        if list.len() < limit {
            list.push(item);
        } else {
            *truncated = true;
        }
    }

    /// Human-readable summary and lists.
    pub fn to_text(&self) -> String {
        let c = &self.counts;
        let mut s = format!(
            "collection {} (model {}{}): {} documents, {} vectors\n",
            self.collection,
            self.model,
            if self.collection_exists {
                ""
            } else {
                ", does not exist yet"
            },
            c.documents,
            c.vectors
        );
        s.push_str(&format!(
            "missing {}, stale {}, behind {}, orphans {}, in flight {} -> {}\n",
            c.missing,
            c.stale,
            c.behind,
            c.orphans,
            c.in_flight,
            if self.has_drift() {
                "DRIFT"
            } else {
                "consistent"
            }
        ));
        for (name, list) in [
            ("missing", &self.missing),
            ("stale", &self.stale),
            ("behind", &self.behind),
        ] {
            for d in list {
                s.push_str(&format!(
                    "{name:8} {} (id {}, version {}, indexedVersion {})",
                    d.content_id,
                    d.document_id,
                    d.version,
                    d.indexed_version
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into())
                ));
                if !d.differences.is_empty() {
                    s.push_str(&format!(": {}", d.differences.join("; ")));
                }
                s.push('\n');
            }
        }
        for o in &self.orphans {
            s.push_str(&format!(
                "orphan   {} (vector {})\n",
                o.content_id.as_deref().unwrap_or("?"),
                o.vector_id
            ));
        }
        for f in &self.in_flight {
            s.push_str(&format!(
                "in flight {} (id {}, would be {})\n",
                f.content_id.as_deref().unwrap_or("?"),
                f.id,
                f.would_be
            ));
        }
        if self.truncated {
            s.push_str("(lists truncated at the list limit; counts are complete)\n");
        }
        if let Some(r) = &self.repair {
            let verb = if r.dry_run {
                "would enqueue"
            } else {
                "enqueued"
            };
            let del = if r.dry_run { "would delete" } else { "deleted" };
            s.push_str(&format!(
                "repair: {verb} {} reindex entries, {del} {} orphan vectors\n",
                r.enqueued, r.orphans_deleted
            ));
        }
        s
    }
}

/// The fields of a document the check reads (never its content).
struct DocRow {
    id: ObjectId,
    content_id: String,
    version: i64,
    content_hash: String,
    indexed_version: Option<i64>,
}

fn as_i64(b: Option<&Bson>) -> Option<i64> {
    match b {
        Some(Bson::Int64(i)) => Some(*i),
        Some(Bson::Int32(i)) => Some(*i as i64),
        Some(Bson::Double(f)) => Some(*f as i64),
        _ => None,
    }
}

fn doc_row(d: &Document) -> Result<DocRow, OpsError> {
    Ok(DocRow {
        id: d
            .get_object_id("_id")
            .map_err(|e| OpsError::Decode(format!("document _id: {e}")))?,
        content_id: d.get_str("contentId").unwrap_or_default().to_string(),
        version: as_i64(d.get("version")).unwrap_or(0),
        content_hash: d.get_str("contentHash").unwrap_or_default().to_string(),
        indexed_version: as_i64(d.get("indexedVersion")),
    })
}

fn meta_i64(v: Option<&Value>) -> Option<i64> {
    v.and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

/// Differences between a vector's metadata and its document (empty when it matches).
pub fn differences(meta: &Metadata, content_hash: &str, version: i64, model: &str) -> Vec<String> {
    let mut out = Vec::new();
    let hash = meta_str(meta, keys::CONTENT_HASH);
    if hash != Some(content_hash) {
        out.push(format!(
            "contentHash: vector {} != document {content_hash}",
            hash.unwrap_or("(none)")
        ));
    }
    let v = meta_i64(meta.get(keys::VERSION));
    if v != Some(version) {
        out.push(format!(
            "version: vector {} != document {version}",
            v.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into())
        ));
    }
    let m = meta_str(meta, keys::MODEL);
    if m != Some(model) {
        out.push(format!(
            "model: vector {} != {model}",
            m.unwrap_or("(none)")
        ));
    }
    out
}

/// Document ids among `ids` that have a pending outbox entry.
async fn pending_for(ops: &Ops, ids: &[ObjectId]) -> Result<HashSet<ObjectId>, OpsError> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(ops
        .store
        .database()
        .collection::<Document>(COLL_OUTBOX)
        .distinct(
            "documentId",
            doc! {"documentId": {"$in": ids}, "status": OutboxStatus::Pending},
        )
        .await?
        .into_iter()
        .filter_map(|b| b.as_object_id())
        .collect())
}

/// Verifies (and with `opts.repair`, repairs) the configured collection.
pub async fn verify(
    ops: &Ops,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport, OpsError> {
    let batch = opts.batch_size.clamp(1, 5000);
    let exists = ops.index_exists().await?;
    let mut r = VerifyReport {
        collection: ops.collection.clone(),
        model: ops.model.clone(),
        collection_exists: exists,
        repair: opts.repair.map(|o| RepairSummary {
            dry_run: o.dry_run,
            ..Default::default()
        }),
        ..Default::default()
    };
    let docs = ops.store.database().collection::<Document>(COLL_DOCUMENTS);
    progress.phase("documents", Some(docs.estimated_document_count().await?));
    let mut last: Option<ObjectId> = None;
    loop {
        let filter = match last {
            Some(l) => doc! {"_id": {"$gt": l}},
            None => doc! {},
        };
        let page: Vec<DocRow> = docs
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(batch as i64)
            .projection(doc! {"contentId": 1, "version": 1, "contentHash": 1, "indexedVersion": 1})
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .iter()
            .map(doc_row)
            .collect::<Result<_, _>>()?;
        let Some(l) = page.last() else { break };
        last = Some(l.id);
        check_documents(ops, exists, &page, opts, &mut r).await?;
        r.counts.documents += page.len() as u64;
        progress.inc(page.len() as u64);
    }
    if exists {
        progress.phase("vectors", Some(ops.index.count().await?));
        scan_orphans(ops, batch, opts, &mut r, progress).await?;
    }
    tracing::info!(
        collection = %r.collection,
        documents = r.counts.documents,
        vectors = r.counts.vectors,
        missing = r.counts.missing,
        stale = r.counts.stale,
        behind = r.counts.behind,
        orphans = r.counts.orphans,
        in_flight = r.counts.in_flight,
        "verify finished"
    );
    Ok(r)
}

async fn check_documents(
    ops: &Ops,
    exists: bool,
    page: &[DocRow],
    opts: &VerifyOptions,
    r: &mut VerifyReport,
) -> Result<(), OpsError> {
    let chunked = ops.text.as_ref().is_some_and(|t| t.chunks.is_some());
    let records = if !exists {
        Vec::new()
    } else {
        let ids: Vec<String> = page.iter().map(|d| d.id.to_hex()).collect();
        if chunked {
            ops.index.fetch_by_document(&ids).await?
        } else {
            ops.index.fetch(&ids).await?
        }
    };
    let mut of_doc: HashMap<ObjectId, Vec<(String, Metadata)>> = HashMap::new();
    for s in records {
        if let Some(d) = document_of_vector(&s.id) {
            of_doc.entry(d).or_default().push((s.id, s.metadata));
        }
    }
    let fingerprint = ops.text.as_ref().map(|t| t.fingerprint.as_str());
    let mut problems: Vec<(&DocRow, &'static str, Vec<String>)> = Vec::new();
    for d in page {
        let vs: Vec<(&str, &Metadata)> = of_doc
            .get(&d.id)
            .map(|v| v.iter().map(|(i, m)| (i.as_str(), m)).collect())
            .unwrap_or_default();
        let want = Expected {
            content_hash: &d.content_hash,
            version: d.version,
            model: &ops.model,
            fingerprint,
            chunked,
        };
        match classify(&want, &vs) {
            Some((kind, diff)) => problems.push((d, kind, diff)),
            None if d.indexed_version.is_none_or(|iv| iv < d.version) => {
                problems.push((d, "behind", Vec::new()))
            }
            None => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let ids: Vec<ObjectId> = problems.iter().map(|p| p.0.id).collect();
    let pending = pending_for(ops, &ids).await?;
    // Re-read: a document that changed since the page was read is being worked on.
    let now: HashMap<ObjectId, i64> = ops
        .store
        .database()
        .collection::<Document>(COLL_DOCUMENTS)
        .find(doc! {"_id": {"$in": &ids}})
        .projection(doc! {"version": 1})
        .await?
        .try_collect::<Vec<Document>>()
        .await?
        .iter()
        .filter_map(|d| Some((d.get_object_id("_id").ok()?, as_i64(d.get("version"))?)))
        .collect();
    let limit = opts.list_limit;
    let mut to_enqueue = Vec::new();
    for (d, kind, differences) in problems {
        if pending.contains(&d.id) || now.get(&d.id) != Some(&d.version) {
            r.counts.in_flight += 1;
            let f = InFlight {
                content_id: Some(d.content_id.clone()),
                id: d.id.to_hex(),
                would_be: kind,
            };
            VerifyReport::push(&mut r.in_flight, f, limit, &mut r.truncated);
            continue;
        }
        let item = DocDrift {
            content_id: d.content_id.clone(),
            document_id: d.id.to_hex(),
            version: d.version,
            indexed_version: d.indexed_version,
            differences,
        };
        let (list, count) = match kind {
            "missing" => (&mut r.missing, &mut r.counts.missing),
            "stale" => (&mut r.stale, &mut r.counts.stale),
            _ => (&mut r.behind, &mut r.counts.behind),
        };
        *count += 1;
        VerifyReport::push(list, item, limit, &mut r.truncated);
        to_enqueue.push(d.id);
    }
    if let Some(rep) = r.repair.as_mut() {
        if !to_enqueue.is_empty() {
            if rep.dry_run {
                rep.enqueued += to_enqueue.len() as u64;
            } else {
                let n = ops.store.enqueue_reindex(&to_enqueue).await?;
                tracing::info!(entries = n, "repair: reindex entries enqueued");
                rep.enqueued += n as u64;
            }
        }
    }
    Ok(())
}

async fn scan_orphans(
    ops: &Ops,
    batch: usize,
    opts: &VerifyOptions,
    r: &mut VerifyReport,
    progress: &dyn Progress,
) -> Result<(), OpsError> {
    let docs = ops.store.database().collection::<Document>(COLL_DOCUMENTS);
    let mut cursor = Some(ScanCursor::default());
    let mut all_orphans = Vec::new();
    while let Some(from) = cursor.take() {
        let scanned = ops.index.scan(from, batch).await?;
        cursor = scanned.next;
        let page = scanned.vectors;
        if page.is_empty() {
            break;
        }
        r.counts.vectors += page.len() as u64;
        let oids: Vec<ObjectId> = page
            .iter()
            .filter_map(|s| document_of_vector(&s.id))
            .collect();
        let existing: HashSet<ObjectId> = docs
            .distinct("_id", doc! {"_id": {"$in": &oids}})
            .await?
            .into_iter()
            .filter_map(|b| b.as_object_id())
            .collect();
        let candidates: Vec<_> = page
            .iter()
            .filter(|s| {
                document_of_vector(&s.id)
                    .map(|o| !existing.contains(&o))
                    .unwrap_or(true)
            })
            .collect();
        let cand_oids: Vec<ObjectId> = candidates
            .iter()
            .filter_map(|s| document_of_vector(&s.id))
            .collect();
        let pending = pending_for(ops, &cand_oids).await?;
        let mut orphans = Vec::new();
        for s in candidates {
            let content_id = meta_str(&s.metadata, keys::CONTENT_ID).map(str::to_string);
            if document_of_vector(&s.id).is_some_and(|o| pending.contains(&o)) {
                r.counts.in_flight += 1;
                let f = InFlight {
                    content_id,
                    id: s.id.clone(),
                    would_be: "orphan",
                };
                VerifyReport::push(&mut r.in_flight, f, opts.list_limit, &mut r.truncated);
                continue;
            }
            r.counts.orphans += 1;
            orphans.push(s.id.clone());
            let o = OrphanVector {
                vector_id: s.id.clone(),
                content_id,
            };
            VerifyReport::push(&mut r.orphans, o, opts.list_limit, &mut r.truncated);
        }
        all_orphans.extend(orphans);
        progress.inc(page.len() as u64);
    }
    // Deleted only after the scan: deleting while scanning would shift the pages.
    if let Some(rep) = r.repair.as_mut() {
        if !all_orphans.is_empty() {
            if !rep.dry_run {
                ops.index.delete(&all_orphans).await?;
                tracing::info!(vectors = all_orphans.len(), "repair: orphan vectors deleted");
            }
            rep.orphans_deleted += all_orphans.len() as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> Metadata {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn matching_metadata_has_no_differences() {
        let m = meta(json!({"contentHash": "h", "version": 3, "model": "m", "x": 1}));
        assert!(differences(&m, "h", 3, "m").is_empty());
    }

    #[test]
    fn each_field_is_named() {
        let m = meta(json!({"contentHash": "old", "version": 2.0, "model": "other"}));
        let d = differences(&m, "new", 3, "m");
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].starts_with("contentHash"));
        assert!(d[1].starts_with("version: vector 2 "));
        assert!(d[2].starts_with("model"));
        let d = differences(&Metadata::new(), "h", 1, "m");
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn drift_excludes_in_flight() {
        let mut r = VerifyReport::default();
        r.counts.in_flight = 3;
        assert!(!r.has_drift());
        r.counts.orphans = 1;
        assert!(r.has_drift());
    }
}
