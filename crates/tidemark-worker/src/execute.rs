//! The executor: carries a plan's writes out against the embedder and the [`VectorIndex`],
//! and says how each write ended. It decides nothing about entries; the planner did.
//!
//! Isolation: first attempts are embedded in one call and retried documents one call each, so
//! a document that keeps failing never drags its batch along; a batch the embedder or the index
//! rejects permanently is retried item by item, so only the poisoned ones fail. Vector upserts
//! across the batches in flight and the indexes written are bounded by `worker.vector_writes`
//! (see `slots`).

use crate::metrics::Metrics;
use crate::plan::{Delete, Embed, Failure, Outcome, Stored};
use crate::slots::WriteSlots;
use bson::oid::ObjectId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tidemark_core::index::{MetadataWrite, VectorIndex, VectorWrite};
use tidemark_core::OutboxResult;
use tidemark_embed::{EmbedError, SharedEmbedder};

/// Counters of work done by this worker process.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub texts_embedded: AtomicU64,
    pub vectors_upserted: AtomicU64,
    pub metadata_updates: AtomicU64,
    pub batches: AtomicU64,
    pub max_vector_writes_in_flight: AtomicU64,
}

/// Outcomes by entry, combined as parts of an entry finish.
pub(crate) type Outcomes = HashMap<ObjectId, Outcome>;

/// Records `o` for `entry`, combined with what the entry already has.
pub(crate) fn settle(outcomes: &mut Outcomes, entry: ObjectId, o: Outcome) {
    let merged = match outcomes.remove(&entry) {
        Some(prev) => prev.combine(o),
        None => o,
    };
    outcomes.insert(entry, merged);
}

/// Counts tokens with the embedder's own tokenizer (or its provider's approximation).
pub(crate) struct EmbedderCounter(pub SharedEmbedder);

impl tidemark_core::chunk::TokenCounter for EmbedderCounter {
    fn count(&self, text: &str) -> usize {
        self.0.count_tokens(text)
    }
}

/// Everything writing needs: the index, the embedder, metrics and counters.
pub(crate) struct Executor {
    pub index: Arc<dyn VectorIndex>,
    pub embedder: SharedEmbedder,
    pub metrics: Metrics,
    pub stats: Arc<Stats>,
    /// Vector upserts in flight at once, across the batches in flight and every index written
    /// (shared by the lanes; live writes go before an index build's).
    pub vector_writes: Arc<WriteSlots>,
}

impl Executor {
    /// The stored vectors of these (document, vector id) pairs, keyed for the planner; with
    /// `by_document`, every stored vector of those documents (chunks beyond the new count too).
    pub async fn stored(
        &self,
        ids: &[(ObjectId, String)],
        by_document: bool,
    ) -> Result<Stored, tidemark_core::IndexError> {
        if ids.is_empty() {
            return Ok(Stored::default());
        }
        let found = if by_document {
            let mut docs: Vec<String> = ids.iter().map(|(d, _)| d.to_hex()).collect();
            docs.dedup();
            self.index.fetch_by_document(&docs).await?
        } else {
            let vids: Vec<String> = ids.iter().map(|(_, v)| v.clone()).collect();
            self.index.fetch(&vids).await?
        };
        let doc_of: HashMap<&str, ObjectId> = ids.iter().map(|(d, v)| (v.as_str(), *d)).collect();
        let mut s = Stored::default();
        for v in found {
            let d = match doc_of.get(v.id.as_str()) {
                Some(d) => Some(*d),
                None => tidemark_core::ids::document_of_vector(&v.id),
            };
            if let Some(d) = d {
                s.of_document.entry(d).or_default().push(v.id.clone());
            }
            s.by_id.insert(v.id, v.metadata);
        }
        Ok(s)
    }

    /// Deletes the vectors of documents that are gone.
    pub async fn delete(&self, deletes: &[Delete], out: &mut Outcomes) {
        let (by_doc, by_id): (Vec<&Delete>, Vec<&Delete>) =
            deletes.iter().partition(|d| d.by_document);
        let ids: Vec<String> = by_id.iter().flat_map(|d| d.ids.clone()).collect();
        let docs: Vec<String> = by_doc.iter().map(|d| d.document_id.to_hex()).collect();
        let t = Instant::now();
        let mut r = self.index.delete(&ids).await;
        if r.is_ok() && !docs.is_empty() {
            r = self.index.delete_by_document(&docs).await;
        }
        self.observe_write("delete", t);
        let o = match r {
            Ok(()) => Outcome::Done(OutboxResult::Deleted),
            Err(e) => Outcome::Failed(Failure::index("chroma_write", &e)),
        };
        for d in deletes {
            settle(out, d.entry, o.clone());
        }
    }

    /// Removes stored vectors no piece has any more (a document that shrank).
    pub async fn remove(&self, removals: &[(ObjectId, String)], out: &mut Outcomes) {
        let ids: Vec<String> = removals.iter().map(|(_, id)| id.clone()).collect();
        let t = Instant::now();
        let r = self.index.delete(&ids).await;
        self.observe_write("delete", t);
        if let Err(e) = r {
            let f = Outcome::Failed(Failure::index("chroma_write", &e));
            for (entry, _) in removals {
                settle(out, *entry, f.clone());
            }
        }
    }

    /// Writes new metadata for vectors whose content is current.
    pub async fn update(&self, updates: Vec<(ObjectId, MetadataWrite)>, out: &mut Outcomes) {
        let writes: Vec<MetadataWrite> = updates.iter().map(|(_, w)| w.clone()).collect();
        let t = Instant::now();
        let r = self.index.update_metadata(&writes).await;
        self.observe_write("update", t);
        match r {
            Ok(()) => {
                self.stats
                    .metadata_updates
                    .fetch_add(updates.len() as u64, Ordering::Relaxed);
            }
            Err(e) if !e.is_transient() && updates.len() > 1 => {
                // Isolate the record the store rejects.
                for u in updates {
                    Box::pin(self.update(vec![u], out)).await;
                }
            }
            Err(e) => {
                let f = Outcome::Failed(Failure::index("chroma_write", &e));
                for (entry, _) in &updates {
                    settle(out, *entry, f.clone());
                }
            }
        }
    }

    /// Embeds the texts of `embeds`; returns those embedded, with their vectors filled in.
    pub async fn embed(&self, embeds: Vec<Embed>, out: &mut Outcomes) -> Vec<Embed> {
        let (fresh, retried): (Vec<_>, Vec<_>) = embeds.into_iter().partition(|e| e.attempts == 0);
        let mut ready = Vec::new();
        if !fresh.is_empty() {
            ready.extend(self.embed_group(fresh, out).await);
        }
        for one in retried {
            ready.extend(self.embed_group(vec![one], out).await);
        }
        ready
    }

    /// Embeds a group in one call; when it fails permanently, each text alone.
    async fn embed_group(&self, mut group: Vec<Embed>, out: &mut Outcomes) -> Vec<Embed> {
        let texts: Vec<String> = group.iter().map(|e| e.text.clone()).collect();
        match self.embed_texts(&texts).await {
            Ok(vecs) => {
                for (e, v) in group.iter_mut().zip(vecs) {
                    e.write.embedding = v;
                }
                group
            }
            Err(e) if !e.is_transient() && group.len() > 1 => {
                tracing::warn!(error = %e, n = group.len(), "embedding batch failed permanently; retrying one by one");
                let mut ready = Vec::new();
                for mut one in group {
                    match self.embed_texts(std::slice::from_ref(&one.text)).await {
                        Ok(mut v) => {
                            one.write.embedding = v.remove(0);
                            ready.push(one);
                        }
                        Err(e) => settle(out, one.entry, Outcome::Failed(Failure::embed(&e))),
                    }
                }
                ready
            }
            Err(e) => {
                let f = Outcome::Failed(Failure::embed(&e));
                for one in &group {
                    settle(out, one.entry, f.clone());
                }
                Vec::new()
            }
        }
    }

    async fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let t = Instant::now();
        let r = self.embedder.embed(texts).await;
        self.metrics
            .embed_seconds
            .observe(t.elapsed().as_secs_f64());
        self.stats
            .texts_embedded
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

    /// Upserts embedded vectors; a permanent rejection of several is retried one by one.
    /// `live`: they carry an application's write (not only an index build's), so they take
    /// the next free write slot before any build upsert.
    pub async fn upsert(&self, items: Vec<Embed>, live: bool, out: &mut Outcomes) {
        let writes: Vec<VectorWrite> = items.iter().map(|e| e.write.clone()).collect();
        let permit = self.vector_writes.acquire(live).await;
        // Writes in flight now, this one included: the slots taken.
        let held = self.vector_writes.in_use();
        self.stats
            .max_vector_writes_in_flight
            .fetch_max(held as u64, Ordering::Relaxed);
        let t = Instant::now();
        let r = self.index.upsert(&writes).await;
        drop(permit);
        self.observe_write("upsert", t);
        match r {
            Ok(()) => {
                self.stats
                    .vectors_upserted
                    .fetch_add(writes.len() as u64, Ordering::Relaxed);
            }
            Err(e) if !e.is_transient() && items.len() > 1 => {
                tracing::warn!(error = %e, n = items.len(), "upsert failed permanently; retrying record by record");
                for it in items {
                    Box::pin(self.upsert(vec![it], live, out)).await;
                }
            }
            Err(e) => {
                let f = Outcome::Failed(Failure::index("chroma_write", &e));
                for it in &items {
                    settle(out, it.entry, f.clone());
                }
            }
        }
    }

    /// Counts documents whose stored vectors were read before indexing, and new documents
    /// whose read was skipped.
    pub fn count_reads(&self, read: usize, skipped: usize) {
        let c = &self.metrics.stored_reads_total;
        c.with_label_values(&["read"]).inc_by(read as u64);
        c.with_label_values(&["skipped"]).inc_by(skipped as u64);
    }

    fn observe_write(&self, op: &str, since: Instant) {
        self.metrics
            .vector_write_seconds
            .with_label_values(&[op])
            .observe(since.elapsed().as_secs_f64());
    }
}
