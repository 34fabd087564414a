//! Processing one claimed batch: coalesce per document, read the documents in one query,
//! decide (delete / superseded / unchanged / metadata update / embed), write Chroma, then record
//! the outcome of every entry. Invariants: an entry is done only after Chroma acknowledged the
//! write or nothing needed writing; an older version never overwrites a newer one; one bad
//! document never fails the others (permanent batch failures are retried record by record).

use crate::lease::LeaseClock;
use crate::metadata::{metadata_equal, vector_metadata};
use crate::worker::{BatchReport, Inner};
use crate::WorkerError;
use bson::{doc, oid::ObjectId, Document};
use futures::TryStreamExt;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tidemark_chroma::{ChromaError, Metadata, VectorRecord};
use tidemark_core::{
    DocumentRecord, Op, OutboxEntry, OutboxResult, COLL_DOCUMENTS, SCHEMA_VERSION,
};
use tidemark_embed::EmbedError;

/// Why an entry did not finish.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub error: String,
    pub permanent: bool,
    pub retry_after: Option<Duration>,
    pub stage: &'static str,
}

impl Failure {
    fn permanent(stage: &'static str, error: String) -> Self {
        Failure {
            error,
            permanent: true,
            retry_after: None,
            stage,
        }
    }
    fn chroma(stage: &'static str, e: &ChromaError) -> Self {
        Failure {
            error: e.to_string(),
            permanent: !e.is_transient(),
            retry_after: e.retry_after(),
            stage,
        }
    }
    fn embed(e: &EmbedError) -> Self {
        Failure {
            error: e.to_string(),
            permanent: !e.is_transient(),
            retry_after: None,
            stage: "embed",
        }
    }
}

#[derive(Debug)]
pub(crate) enum Fate {
    Done(OutboxResult),
    Failed(Failure),
    Release,
}

/// What the outcome bookkeeping needs to know about each claimed entry.
pub(crate) struct EntryInfo {
    pub created: bson::DateTime,
    pub attempts: i32,
    pub document_id: ObjectId,
    pub version: i64,
}

/// A document to (re)index, with everything needed to write its vector.
struct Target {
    entry: ObjectId,
    /// Failed attempts so far: retried documents are embedded alone.
    attempts: i32,
    doc: DocumentRecord,
    metadata: Metadata,
}

/// Adds explicit nulls for keys of `stored` that `desired` no longer has: Chroma merges
/// metadata on upsert and update, and a null removes a key.
fn with_removals(mut desired: Metadata, stored: Option<&Metadata>) -> Metadata {
    if let Some(s) = stored {
        for k in s.keys() {
            if !desired.contains_key(k) {
                desired.insert(k.clone(), serde_json::Value::Null);
            }
        }
    }
    desired
}

impl Inner {
    async fn chroma_failure(&self, stage: &'static str, e: &ChromaError) -> Failure {
        let mut f = Failure::chroma(stage, e);
        // The collection was deleted under us: look it up again next time.
        if let ChromaError::Permanent { status: 404, .. } = e {
            self.forget_collection().await;
            f.permanent = false;
        }
        f
    }

    pub(crate) async fn process_batch(
        &self,
        entries: Vec<OutboxEntry>,
        clock: &LeaseClock,
    ) -> Result<BatchReport, WorkerError> {
        let mut fates: HashMap<ObjectId, Fate> = HashMap::new();
        let info: HashMap<ObjectId, EntryInfo> = entries
            .iter()
            .map(|e| {
                let i = EntryInfo {
                    created: e.created_at,
                    attempts: e.attempts,
                    document_id: e.document_id,
                    version: e.version,
                };
                (e.id, i)
            })
            .collect();

        // Coalesce: the newest entry of each document is the primary; older ones are superseded.
        let mut primary: HashMap<ObjectId, OutboxEntry> = HashMap::new();
        for e in entries {
            if e.schema_version > SCHEMA_VERSION {
                let msg = format!(
                    "unsupported schemaVersion {} (this worker understands up to {SCHEMA_VERSION})",
                    e.schema_version
                );
                fates.insert(e.id, Fate::Failed(Failure::permanent("validate", msg)));
                continue;
            }
            match primary.get(&e.document_id) {
                Some(p) if (p.version, p.id) >= (e.version, e.id) => {
                    fates.insert(e.id, Fate::Done(OutboxResult::Superseded));
                }
                _ => {
                    if let Some(old) = primary.insert(e.document_id, e) {
                        fates.insert(old.id, Fate::Done(OutboxResult::Superseded));
                    }
                }
            }
        }

        // The current documents, in one query.
        let ids: Vec<ObjectId> = primary.keys().copied().collect();
        let mut docs: HashMap<ObjectId, Result<DocumentRecord, String>> = HashMap::new();
        if !ids.is_empty() {
            let raw: Vec<Document> = self
                .store
                .database()
                .collection::<Document>(COLL_DOCUMENTS)
                .find(doc! {"_id": {"$in": &ids}})
                .await?
                .try_collect()
                .await?;
            for d in raw {
                if let Ok(id) = d.get_object_id("_id") {
                    docs.insert(
                        id,
                        bson::from_document(d).map_err(|e| format!("invalid document: {e}")),
                    );
                }
            }
        }

        let model = self.embedder.model_id().to_string();
        let mut deletes: Vec<(ObjectId, String)> = Vec::new();
        let mut targets: Vec<Target> = Vec::new();
        for (doc_id, e) in &primary {
            match docs.remove(doc_id) {
                None => deletes.push((e.id, tidemark_core::vector_id(doc_id))),
                Some(Err(msg)) => {
                    fates.insert(e.id, Fate::Failed(Failure::permanent("validate", msg)));
                }
                Some(Ok(d)) if d.version > e.version => {
                    fates.insert(e.id, Fate::Done(OutboxResult::Superseded));
                }
                Some(Ok(d)) if d.version < e.version => {
                    let msg = format!(
                        "document version {} is older than the entry's version {} ({:?})",
                        d.version, e.version, e.op
                    );
                    let f = Failure {
                        error: msg,
                        permanent: false,
                        retry_after: None,
                        stage: "mongo",
                    };
                    fates.insert(e.id, Fate::Failed(f));
                }
                Some(Ok(d)) => {
                    if e.op == Op::Delete {
                        tracing::warn!(document = %doc_id, "delete entry but the document exists at the same version; indexing the document");
                    }
                    let actual = tidemark_core::content_hash(&d.content);
                    if actual != d.content_hash {
                        let msg = format!(
                            "document contentHash {} does not match its content ({actual})",
                            d.content_hash
                        );
                        fates.insert(e.id, Fate::Failed(Failure::permanent("validate", msg)));
                        continue;
                    }
                    let metadata = vector_metadata(&d, &model);
                    targets.push(Target {
                        entry: e.id,
                        attempts: e.attempts,
                        doc: d,
                        metadata,
                    });
                }
            }
        }

        if (!deletes.is_empty() || !targets.is_empty()) && !self.still_ours(clock).await {
            for (id, _) in &deletes {
                fates.insert(*id, Fate::Release);
            }
            for t in &targets {
                fates.insert(t.entry, Fate::Release);
            }
            deletes.clear();
            targets.clear();
        }

        let collection = if deletes.is_empty() && targets.is_empty() {
            None
        } else {
            match self.collection_id().await {
                Ok(c) => Some(c),
                Err(e) => {
                    let f = self.chroma_failure("chroma_read", &e).await;
                    for (id, _) in &deletes {
                        fates.insert(*id, Fate::Failed(f.clone()));
                    }
                    for t in &targets {
                        fates.insert(t.entry, Fate::Failed(f.clone()));
                    }
                    deletes.clear();
                    targets.clear();
                    None
                }
            }
        };

        if let Some(coll) = collection.as_deref() {
            if !deletes.is_empty() {
                let vids: Vec<String> = deletes.iter().map(|(_, v)| v.clone()).collect();
                let t = Instant::now();
                let r = self.chroma.delete(coll, &vids).await;
                self.metrics
                    .vector_write_seconds
                    .with_label_values(&["delete"])
                    .observe(t.elapsed().as_secs_f64());
                let fate = match r {
                    Ok(()) => Fate::Done(OutboxResult::Deleted),
                    Err(e) => Fate::Failed(self.chroma_failure("chroma_write", &e).await),
                };
                for (id, _) in &deletes {
                    fates.insert(*id, clone_fate(&fate));
                }
            }
            if !targets.is_empty() {
                self.index_targets(coll, targets, clock, &mut fates).await;
            }
        }

        self.finish(fates, &info).await
    }

    /// Skips unchanged vectors, updates metadata where only it changed, embeds and upserts
    /// the rest. Sets a fate for every target.
    async fn index_targets(
        &self,
        coll: &str,
        targets: Vec<Target>,
        clock: &LeaseClock,
        fates: &mut HashMap<ObjectId, Fate>,
    ) {
        let vids: Vec<String> = targets.iter().map(|t| t.doc.id.to_hex()).collect();
        let stored = match self.chroma.get(coll, &vids, false).await {
            Ok(s) => s,
            Err(e) => {
                let f = self.chroma_failure("chroma_read", &e).await;
                for t in &targets {
                    fates.insert(t.entry, Fate::Failed(f.clone()));
                }
                return;
            }
        };
        let stored: HashMap<String, Option<Metadata>> =
            stored.into_iter().map(|r| (r.id, r.metadata)).collect();
        let model = self.embedder.model_id();
        let mut meta_updates: Vec<(ObjectId, String, Metadata)> = Vec::new();
        let mut to_embed: Vec<(Target, Option<Metadata>)> = Vec::new();
        for t in targets {
            let vid = t.doc.id.to_hex();
            let old = stored.get(&vid).cloned().flatten();
            let same_vector = old.as_ref().is_some_and(|m| {
                m.get("contentHash").and_then(|v| v.as_str()) == Some(t.doc.content_hash.as_str())
                    && m.get("model").and_then(|v| v.as_str()) == Some(model)
            });
            if same_vector {
                let old = old.unwrap_or_default();
                if metadata_equal(&old, &t.metadata) {
                    fates.insert(t.entry, Fate::Done(OutboxResult::Unchanged));
                } else {
                    meta_updates.push((t.entry, vid, with_removals(t.metadata, Some(&old))));
                }
            } else {
                to_embed.push((t, old));
            }
        }

        if !meta_updates.is_empty() {
            if self.still_ours(clock).await {
                self.write_metadata(coll, meta_updates, fates).await;
            } else {
                for u in &meta_updates {
                    fates.insert(u.0, Fate::Release);
                }
            }
        }
        if to_embed.is_empty() {
            return;
        }
        let embedded = self.embed_all(to_embed, fates).await;
        if embedded.is_empty() {
            return;
        }
        // Embedding can be slow: write only if the claims are still ours.
        if !self.still_ours(clock).await {
            for (t, _, _) in &embedded {
                fates.insert(t.entry, Fate::Release);
            }
            return;
        }
        self.write_vectors(coll, embedded, fates).await;
    }

    async fn write_metadata(
        &self,
        coll: &str,
        updates: Vec<(ObjectId, String, Metadata)>,
        fates: &mut HashMap<ObjectId, Fate>,
    ) {
        let ids: Vec<String> = updates.iter().map(|u| u.1.clone()).collect();
        let metas: Vec<Metadata> = updates.iter().map(|u| u.2.clone()).collect();
        let t = Instant::now();
        let r = self.chroma.update_metadata(coll, &ids, &metas).await;
        self.metrics
            .vector_write_seconds
            .with_label_values(&["update"])
            .observe(t.elapsed().as_secs_f64());
        match r {
            Ok(()) => {
                self.metadata_updates
                    .fetch_add(updates.len() as u64, Ordering::Relaxed);
                for u in &updates {
                    fates.insert(u.0, Fate::Done(OutboxResult::Indexed));
                }
            }
            Err(e) if !e.is_transient() && updates.len() > 1 => {
                // Isolate the record the server rejects.
                for u in updates {
                    let one = Box::pin(self.write_metadata(coll, vec![u], fates));
                    one.await;
                }
            }
            Err(e) => {
                let f = self.chroma_failure("chroma_write", &e).await;
                for u in &updates {
                    fates.insert(u.0, Fate::Failed(f.clone()));
                }
            }
        }
    }

    async fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let t = Instant::now();
        let r = self.embedder.embed(texts).await;
        self.metrics
            .embed_seconds
            .observe(t.elapsed().as_secs_f64());
        self.texts_embedded
            .fetch_add(texts.len() as u64, Ordering::Relaxed);
        let v = r?;
        if v.len() != texts.len() {
            return Err(EmbedError::Permanent(format!(
                "embedder returned {} vectors for {} texts",
                v.len(),
                texts.len()
            )));
        }
        let dim = self.embedder.dimension();
        if let Some(bad) = v.iter().find(|x| x.len() != dim) {
            return Err(EmbedError::Permanent(format!(
                "embedder returned a vector of dimension {} instead of {dim}",
                bad.len()
            )));
        }
        Ok(v)
    }

    /// Embeds first attempts as one call and retried documents one call each, so a document
    /// that keeps failing (even "transiently") never drags its batch along.
    async fn embed_all(
        &self,
        items: Vec<(Target, Option<Metadata>)>,
        fates: &mut HashMap<ObjectId, Fate>,
    ) -> Vec<(Target, Option<Metadata>, Vec<f32>)> {
        let (fresh, retried): (Vec<_>, Vec<_>) =
            items.into_iter().partition(|(t, _)| t.attempts == 0);
        let mut out = Vec::new();
        if !fresh.is_empty() {
            out.extend(self.embed_group(fresh, fates).await);
        }
        for one in retried {
            out.extend(self.embed_group(vec![one], fates).await);
        }
        out
    }

    /// Embeds a group in one call; when it fails permanently, each text alone, so that only
    /// the poisoned ones fail.
    async fn embed_group(
        &self,
        items: Vec<(Target, Option<Metadata>)>,
        fates: &mut HashMap<ObjectId, Fate>,
    ) -> Vec<(Target, Option<Metadata>, Vec<f32>)> {
        let texts: Vec<String> = items.iter().map(|(t, _)| t.doc.content.clone()).collect();
        match self.embed_texts(&texts).await {
            Ok(vecs) => items
                .into_iter()
                .zip(vecs)
                .map(|((t, o), v)| (t, o, v))
                .collect(),
            Err(e) if !e.is_transient() && items.len() > 1 => {
                tracing::warn!(error = %e, n = items.len(), "embedding batch failed permanently; retrying one by one");
                let mut out = Vec::new();
                for (t, o) in items {
                    match self.embed_texts(std::slice::from_ref(&t.doc.content)).await {
                        Ok(mut v) => out.push((t, o, v.remove(0))),
                        Err(e) => {
                            fates.insert(t.entry, Fate::Failed(Failure::embed(&e)));
                        }
                    }
                }
                out
            }
            Err(e) => {
                let f = Failure::embed(&e);
                for (t, _) in &items {
                    fates.insert(t.entry, Fate::Failed(f.clone()));
                }
                Vec::new()
            }
        }
    }

    async fn write_vectors(
        &self,
        coll: &str,
        items: Vec<(Target, Option<Metadata>, Vec<f32>)>,
        fates: &mut HashMap<ObjectId, Fate>,
    ) {
        let records: Vec<VectorRecord> = items
            .iter()
            .map(|(t, old, v)| VectorRecord {
                id: t.doc.id.to_hex(),
                embedding: v.clone(),
                metadata: with_removals(t.metadata.clone(), old.as_ref()),
            })
            .collect();
        let permit = self.vector_writes.acquire().await.expect("never closed");
        let now = self.vector_writes_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_vector_writes_in_flight
            .fetch_max(now, Ordering::Relaxed);
        let t0 = Instant::now();
        let r = self.chroma.upsert(coll, &records).await;
        self.vector_writes_in_flight.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
        self.metrics
            .vector_write_seconds
            .with_label_values(&["upsert"])
            .observe(t0.elapsed().as_secs_f64());
        match r {
            Ok(()) => {
                self.vectors_upserted
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                for (t, _, _) in &items {
                    fates.insert(t.entry, Fate::Done(OutboxResult::Indexed));
                }
            }
            Err(e) if !e.is_transient() && items.len() > 1 => {
                tracing::warn!(error = %e, n = items.len(), "upsert failed permanently; retrying record by record");
                for it in items {
                    Box::pin(self.write_vectors(coll, vec![it], fates)).await;
                }
            }
            Err(e) => {
                let f = self.chroma_failure("chroma_write", &e).await;
                for (t, _, _) in &items {
                    fates.insert(t.entry, Fate::Failed(f.clone()));
                }
            }
        }
        // Documents written this round get vectorId/indexedVersion in `finish`.
    }
}

fn clone_fate(f: &Fate) -> Fate {
    match f {
        Fate::Done(r) => Fate::Done(*r),
        Fate::Failed(x) => Fate::Failed(x.clone()),
        Fate::Release => Fate::Release,
    }
}
