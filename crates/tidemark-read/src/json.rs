//! The JSON shapes of the read API's answers (shared by the HTTP API and the CLI).

use crate::{SearchHit, SearchResult};
use serde_json::{json, Value};
use tidemark_core::DocumentRecord;

/// A document as plain JSON: ids as hex strings, the timestamp as RFC 3339, metadata as
/// relaxed extended JSON (plain numbers and strings).
pub fn document_json(d: &DocumentRecord) -> Value {
    let mut v = json!({
        "_id": d.id.to_hex(),
        "contentId": d.content_id,
        "type": d.doc_type,
        "content": d.content,
        "metadata": bson::Bson::Document(d.metadata.clone()).into_relaxed_extjson(),
        "timestamp": d.timestamp.try_to_rfc3339_string().unwrap_or_default(),
        "version": d.version,
        "contentHash": d.content_hash,
    });
    if let Some(vid) = &d.vector_id {
        v["vectorId"] = json!(vid);
    }
    if let Some(iv) = d.indexed_version {
        v["indexedVersion"] = json!(iv);
    }
    v
}

/// One hit: contentId, score, whether the vector is stale, and the current document.
pub fn hit_json(h: &SearchHit) -> Value {
    json!({
        "contentId": h.document.content_id,
        "documentId": h.document.id.to_hex(),
        "score": h.score,
        "stale": h.stale,
        "vectorVersion": h.vector_version,
        "document": document_json(&h.document),
    })
}

/// A search result: the hits, best first, and how many candidates were read.
pub fn search_json(r: &SearchResult) -> Value {
    json!({
        "hits": r.hits.iter().map(hit_json).collect::<Vec<_>>(),
        "candidates": r.candidates,
        "rounds": r.rounds,
    })
}
