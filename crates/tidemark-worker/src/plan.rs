//! The planner: pure decisions, no I/O. Given the claimed entries and the current documents,
//! [`decide`] says how each entry ends or what it needs (delete the document's vectors, or
//! index it); given the index targets and the vectors stored for them, [`compare`] says what to
//! write (embed + upsert, metadata update, removal) and which targets are already current.
//!
//! A document becomes one or more [`Piece`]s, the vectors it should have; [`Shape`] makes them.
//! With chunking off a document is one piece whose id is the document `_id` in hex; a chunker
//! makes more pieces, and everything downstream already works per piece.
//!
//! Rules (the invariants): the newest entry per document is the primary, older ones are
//! `superseded` (the primary then covers their indexes too, see `OutboxEntry::indexes`); an
//! entry older than its document is `superseded` (except an index build's, which writes the
//! document as it is now), one newer than its document waits (retry); a missing document means
//! its vectors are deleted; a content hash that does not
//! match the content is a permanent error; a vector with the same content hash and model is not
//! embedded again, and only its metadata is updated if that differs.

use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tidemark_core::chunk::{self, ChunkSpec, TokenCounter};
use tidemark_core::chunking::TextSettings;
use tidemark_core::index::{IndexError, MetadataWrite, VectorWrite};
use tidemark_core::vector_meta::{keys, meta_str, metadata_equal, vector_metadata, Metadata};
use tidemark_core::{content_hash, DocumentRecord, Op, OutboxEntry, OutboxResult, SCHEMA_VERSION};
use tidemark_embed::EmbedError;

use bson::oid::ObjectId;

/// Why an entry did not finish, and whether trying again can help.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub error: String,
    pub permanent: bool,
    pub retry_after: Option<Duration>,
    /// Where it failed: `validate`, `mongo`, `embed`, `chroma_read`, `chroma_write`.
    pub stage: &'static str,
}

impl Failure {
    pub fn permanent(stage: &'static str, error: String) -> Self {
        Failure {
            error,
            permanent: true,
            retry_after: None,
            stage,
        }
    }

    pub fn transient(stage: &'static str, error: String) -> Self {
        Failure {
            permanent: false,
            ..Failure::permanent(stage, error)
        }
    }

    pub fn index(stage: &'static str, e: &IndexError) -> Self {
        Failure {
            error: e.to_string(),
            permanent: !e.is_transient(),
            retry_after: e.retry_after(),
            stage,
        }
    }

    pub fn embed(e: &EmbedError) -> Self {
        Failure {
            error: e.to_string(),
            permanent: !e.is_transient(),
            retry_after: None,
            stage: "embed",
        }
    }
}

/// How an entry ends this round.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Done(OutboxResult),
    Failed(Failure),
    /// Handed back without counting an attempt (the claims were lost, or shutdown).
    Release,
}

impl Outcome {
    /// The outcome of an entry whose parts ended as `self` and `other`: a failure wins over a
    /// release, a release over success (the entry is done only when every part is).
    pub fn combine(self, other: Outcome) -> Outcome {
        match (self, other) {
            (f @ Outcome::Failed(_), _) | (_, f @ Outcome::Failed(_)) => f,
            (Outcome::Release, _) | (_, Outcome::Release) => Outcome::Release,
            (a, _) => a,
        }
    }
}

/// One vector a document should have.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Piece {
    pub id: String,
    /// The text to embed.
    pub text: String,
    /// The hash of the text: a stored vector with this hash (and model) needs no embedding.
    pub hash: String,
    /// The metadata key the hash is stored under (`contentHash` when the text is the content).
    pub hash_key: &'static str,
    pub metadata: Metadata,
}

/// How documents become pieces: the model (recorded in every vector) and, when configured,
/// the template and chunking (`text`).
#[derive(Clone)]
pub(crate) struct Shape {
    pub model: String,
    pub text: Option<TextSettings>,
    /// Counts tokens for chunking (the embedder's own tokenizer where it has one).
    pub counter: Arc<dyn TokenCounter>,
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shape")
            .field("model", &self.model)
            .field("text", &self.text)
            .finish()
    }
}

fn char_offset(text: &str, byte: usize) -> i64 {
    text[..byte].chars().count() as i64
}

impl Shape {
    /// One vector per document, embedding its content (no template, no chunking).
    #[cfg(test)]
    pub fn plain(model: &str) -> Shape {
        Shape {
            model: model.to_string(),
            text: None,
            counter: Arc::new(chunk::ApproxCounter),
        }
    }

    /// True when documents are split: vectors are found by their `documentId`.
    pub fn chunked(&self) -> bool {
        self.text.as_ref().is_some_and(|t| t.chunks.is_some())
    }

    /// The vectors `doc` should have.
    pub fn pieces(&self, doc: &DocumentRecord) -> Vec<Piece> {
        let base = vector_metadata(doc, &self.model);
        let Some(t) = &self.text else {
            return vec![Piece {
                id: tidemark_core::vector_id(&doc.id),
                text: doc.content.clone(),
                hash: doc.content_hash.clone(),
                hash_key: keys::CONTENT_HASH,
                metadata: base,
            }];
        };
        let chunks = match t.chunks {
            Some(spec) => {
                // The template's own text is repeated in every chunk: it comes off the budget.
                let overhead = self.counter.count(&t.template.render(doc, ""));
                let spec = ChunkSpec {
                    max_tokens: spec.max_tokens.saturating_sub(overhead).max(16),
                    overlap: spec.overlap,
                };
                chunk::split(&doc.content, &spec, self.counter.as_ref())
            }
            None => vec![chunk::Chunk {
                index: 0,
                start: 0,
                end: doc.content.len(),
                text: doc.content.clone(),
            }],
        };
        let n = chunks.len() as i64;
        chunks
            .into_iter()
            .map(|c| {
                let text = t.template.render(doc, &c.text);
                let hash = content_hash(&text);
                let mut m = base.clone();
                m.insert(keys::TEXT_HASH.into(), json!(hash));
                m.insert(keys::CHUNKING.into(), json!(t.fingerprint));
                let id = if t.chunks.is_some() {
                    m.insert(keys::CHUNK.into(), json!(c.index));
                    m.insert(keys::CHUNKS.into(), json!(n));
                    m.insert(
                        keys::SPAN_START.into(),
                        json!(char_offset(&doc.content, c.start)),
                    );
                    m.insert(
                        keys::SPAN_END.into(),
                        json!(char_offset(&doc.content, c.end)),
                    );
                    tidemark_core::ids::chunk_vector_id(&doc.id, c.index)
                } else {
                    tidemark_core::vector_id(&doc.id)
                };
                Piece {
                    id,
                    text,
                    hash,
                    hash_key: keys::TEXT_HASH,
                    metadata: m,
                }
            })
            .collect()
    }

    /// The ids of the vectors of a document that is gone (chunked: found by `documentId`).
    pub fn vector_ids_of(&self, document_id: &ObjectId) -> Vec<String> {
        vec![tidemark_core::vector_id(document_id)]
    }
}

/// A document gone from MongoDB: its vectors are removed (by id, or every vector whose
/// `documentId` is the document's when it was chunked).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delete {
    pub entry: ObjectId,
    pub document_id: ObjectId,
    pub ids: Vec<String>,
    pub by_document: bool,
}

/// A document to (re)index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub entry: ObjectId,
    /// Failed attempts so far: retried documents are embedded alone.
    pub attempts: i32,
    pub document_id: ObjectId,
    pub pieces: Vec<Piece>,
    /// The entry says its transaction created the document and this is its first delivery:
    /// nothing stored to read.
    pub new_document: bool,
}

/// What [`decide`] found: entries already settled, deletes, and documents to index.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Decided {
    pub outcomes: Vec<(ObjectId, Outcome)>,
    pub deletes: Vec<Delete>,
    pub targets: Vec<Target>,
}

/// The current documents of a batch, by `_id`: parsed, or why a row violates the contract.
pub(crate) type Documents = HashMap<ObjectId, Result<DocumentRecord, String>>;

/// The newest entry per document (by version, then `_id`); the rest are superseded, and
/// entries of an unknown schema version fail permanently.
pub(crate) fn coalesce(entries: Vec<OutboxEntry>) -> (Vec<OutboxEntry>, Vec<(ObjectId, Outcome)>) {
    let mut outcomes = Vec::new();
    let mut primary: HashMap<ObjectId, OutboxEntry> = HashMap::new();
    for e in entries {
        if e.schema_version > SCHEMA_VERSION {
            let msg = format!(
                "unsupported schemaVersion {} (this worker understands up to {SCHEMA_VERSION})",
                e.schema_version
            );
            outcomes.push((e.id, Outcome::Failed(Failure::permanent("validate", msg))));
            continue;
        }
        // The entry kept covers the indexes of those it supersedes.
        match primary.get_mut(&e.document_id) {
            Some(p) if (p.version, p.id) >= (e.version, e.id) => {
                p.cover(&e);
                outcomes.push((e.id, Outcome::Done(OutboxResult::Superseded)));
            }
            _ => {
                let mut e = e;
                if let Some(old) = primary.remove(&e.document_id) {
                    e.cover(&old);
                    outcomes.push((old.id, Outcome::Done(OutboxResult::Superseded)));
                }
                primary.insert(e.document_id, e);
            }
        }
    }
    let mut primary: Vec<OutboxEntry> = primary.into_values().collect();
    primary.sort_by_key(|e| e.id);
    (primary, outcomes)
}

/// The primary entries that carry an application's write (for every index, after coalescing),
/// not only an index build's: their upserts take the next free write slot before a build's.
pub(crate) fn live_entries(primary: &[OutboxEntry]) -> HashSet<ObjectId> {
    primary
        .iter()
        .filter(|e| e.indexes.is_empty())
        .map(|e| e.id)
        .collect()
}

/// Decides each primary entry against its current document (see the module rules).
pub(crate) fn decide(primary: Vec<OutboxEntry>, mut docs: Documents, shape: &Shape) -> Decided {
    let mut out = Decided::default();
    for e in primary {
        let doc = match docs.remove(&e.document_id) {
            None => {
                out.deletes.push(Delete {
                    entry: e.id,
                    document_id: e.document_id,
                    ids: shape.vector_ids_of(&e.document_id),
                    by_document: shape.chunked(),
                });
                continue;
            }
            Some(Err(msg)) => {
                out.outcomes
                    .push((e.id, Outcome::Failed(Failure::permanent("validate", msg))));
                continue;
            }
            Some(Ok(d)) => d,
        };
        // A build's entry asks for the document as it is now: a live change made after the
        // build read it may have been left to it (see `tidemark_core::build_cursor`).
        if doc.version > e.version && !e.is_build() {
            out.outcomes
                .push((e.id, Outcome::Done(OutboxResult::Superseded)));
            continue;
        }
        if doc.version < e.version {
            let msg = format!(
                "document version {} is older than the entry's version {} ({:?})",
                doc.version, e.version, e.op
            );
            out.outcomes
                .push((e.id, Outcome::Failed(Failure::transient("mongo", msg))));
            continue;
        }
        if e.op == Op::Delete {
            tracing::warn!(document = %e.document_id, "delete entry but the document exists at the same version; indexing the document");
        }
        let actual = content_hash(&doc.content);
        if actual != doc.content_hash {
            let msg = format!(
                "document contentHash {} does not match its content ({actual})",
                doc.content_hash
            );
            out.outcomes
                .push((e.id, Outcome::Failed(Failure::permanent("validate", msg))));
            continue;
        }
        out.targets.push(Target {
            entry: e.id,
            attempts: e.attempts,
            document_id: e.document_id,
            pieces: shape.pieces(&doc),
            new_document: e.nothing_stored(),
        });
    }
    out
}

/// The vectors stored for a batch's targets.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Stored {
    /// Metadata by vector id.
    pub by_id: HashMap<String, Metadata>,
    /// Every stored vector id of each document (to remove those no piece has any more).
    pub of_document: HashMap<ObjectId, Vec<String>>,
}

/// A vector to embed and write for `entry` (the embedding is filled in after embedding).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Embed {
    pub entry: ObjectId,
    pub attempts: i32,
    pub text: String,
    pub write: VectorWrite,
}

/// What [`compare`] found: targets already current, and the writes for the others.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Writes {
    pub outcomes: Vec<(ObjectId, Outcome)>,
    pub updates: Vec<(ObjectId, MetadataWrite)>,
    pub embeds: Vec<Embed>,
    pub removals: Vec<(ObjectId, String)>,
    /// Entries with at least one write: done (indexed) once every write is acknowledged.
    pub writing: Vec<ObjectId>,
}

/// Compares each target's pieces with the stored vectors (see the module rules).
pub(crate) fn compare(targets: Vec<Target>, stored: &Stored, model: &str) -> Writes {
    let mut out = Writes::default();
    for t in targets {
        let mut wrote = false;
        for p in &t.pieces {
            let old = stored.by_id.get(&p.id);
            let same_vector = old.is_some_and(|m| {
                meta_str(m, p.hash_key) == Some(p.hash.as_str())
                    && meta_str(m, keys::MODEL) == Some(model)
            });
            if !same_vector {
                out.embeds.push(Embed {
                    entry: t.entry,
                    attempts: t.attempts,
                    text: p.text.clone(),
                    write: VectorWrite {
                        id: p.id.clone(),
                        embedding: Vec::new(),
                        metadata: p.metadata.clone(),
                        previous: old.cloned(),
                    },
                });
                wrote = true;
            } else if !metadata_equal(old.expect("same vector"), &p.metadata) {
                let write = MetadataWrite {
                    id: p.id.clone(),
                    metadata: p.metadata.clone(),
                    previous: old.cloned(),
                };
                out.updates.push((t.entry, write));
                wrote = true;
            }
        }
        for id in stored.of_document.get(&t.document_id).into_iter().flatten() {
            if !t.pieces.iter().any(|p| &p.id == id) {
                out.removals.push((t.entry, id.clone()));
                wrote = true;
            }
        }
        if wrote {
            out.writing.push(t.entry);
        } else {
            out.outcomes
                .push((t.entry, Outcome::Done(OutboxResult::Unchanged)));
        }
    }
    out
}

/// Most text bytes embedded and upserted at once. A batch of long documents (many chunks) is
/// written in groups, so what one batch holds (texts, vectors, request bodies) stays bounded
/// by bytes and by count, whatever the documents' length.
pub(crate) const GROUP_BYTES: usize = 256 * 1024;
/// Most texts in one group (bounds the vectors held: this many times the dimension).
pub(crate) const GROUP_TEXTS: usize = 256;

/// Splits `embeds` in order into groups of at most `max_texts` texts and `max_bytes` text
/// bytes (a single text larger than `max_bytes` is a group of its own).
pub(crate) fn groups(embeds: Vec<Embed>, max_bytes: usize, max_texts: usize) -> Vec<Vec<Embed>> {
    let mut out: Vec<Vec<Embed>> = Vec::new();
    let mut current: Vec<Embed> = Vec::new();
    let mut bytes = 0;
    for e in embeds {
        let full = current.len() >= max_texts.max(1) || bytes + e.text.len() > max_bytes;
        if full && !current.is_empty() {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += e.text.len();
        current.push(e);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
