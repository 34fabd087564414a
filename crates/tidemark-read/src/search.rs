//! `search`: the nearest documents to a text or a vector, under a filter.
//!
//! 1. Read-your-writes: with `after`, wait until that write is indexed (bounded).
//! 2. Embed the text with the reader's embedder (or take the vector as given).
//! 3. Ask the vector index for candidates, passing the part of the filter Chroma evaluates
//!    exactly as `where` ([`crate::filter::translate::plan`]).
//! 4. Group candidates by `documentId` (a chunked document has several vectors) keeping the
//!    best score, hydrate them from MongoDB in one query, drop those whose document is gone,
//!    mark stale those whose vector is older than the document (version or content hash), and
//!    check the whole filter on the current document.
//! 5. When fewer than `k` survive and the index had more, fetch 4 times as many and repeat.

use crate::filter::{translate, Filter};
use crate::vectors::VectorHit;
use crate::{ReadError, Reader, WriteMark};
use bson::oid::ObjectId;
use futures::TryStreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tidemark_core::DocumentRecord;

/// Most candidates one search asks the vector index for (unless `k` itself is larger).
pub const MAX_CANDIDATES: usize = 2000;

/// What to search with.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Embedded with the reader's embedder.
    Text(String),
    /// Used as is; must have the embedder's dimension.
    Vector(Vec<f32>),
}

/// A search: query, number of documents, filter, and optionally a write to wait for.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub query: Query,
    pub k: usize,
    pub filter: Filter,
    /// Wait until this write is indexed before searching (read-your-writes) ...
    pub after: Option<WriteMark>,
    /// ... at most this long.
    pub wait: Duration,
    /// Send what Chroma can evaluate as `where` (default). Off, everything is filtered on the
    /// MongoDB side: the same answer, more candidates read.
    pub pushdown: bool,
}

impl SearchRequest {
    pub fn new(query: Query, k: usize) -> SearchRequest {
        SearchRequest {
            query,
            k,
            filter: Filter::all(),
            after: None,
            wait: Duration::from_secs(10),
            pushdown: true,
        }
    }

    pub fn text(text: impl Into<String>, k: usize) -> SearchRequest {
        SearchRequest::new(Query::Text(text.into()), k)
    }

    pub fn with_filter(mut self, filter: Filter) -> SearchRequest {
        self.filter = filter;
        self
    }

    /// Read-your-writes: wait (at most `wait`) until `mark` is indexed.
    pub fn after(mut self, mark: impl Into<WriteMark>, wait: Duration) -> SearchRequest {
        self.after = Some(mark.into());
        self.wait = wait;
        self
    }

    pub fn without_pushdown(mut self) -> SearchRequest {
        self.pushdown = false;
        self
    }
}

/// One document found.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The current document (newer than the vector when `stale`).
    pub document: DocumentRecord,
    /// Cosine similarity of the best vector of the document (1 = same direction).
    pub score: f32,
    /// The vector was made from an older version of the document.
    pub stale: bool,
    /// The document version the best vector was made from, if it says.
    pub vector_version: Option<i64>,
    /// How many of the candidates belonged to this document (chunks).
    pub vectors: usize,
}

/// The hits, best first, and how much work they took.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    /// Candidates read from the vector index in the last round.
    pub candidates: usize,
    /// Rounds of candidate fetching (more than 1 when the filter or missing documents
    /// thinned out the first round).
    pub rounds: u32,
}

fn first_fetch(k: usize, residual: bool) -> usize {
    if residual {
        (k * 5).max(50)
    } else {
        (k * 2).max(10)
    }
}

/// Candidates grouped by document, best first: (document id, best hit, count).
fn group(hits: Vec<VectorHit>) -> Vec<(String, VectorHit, usize)> {
    let mut out: Vec<(String, VectorHit, usize)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for h in hits {
        match at.get(&h.document_id) {
            Some(&i) => {
                out[i].2 += 1;
                if h.score > out[i].1.score {
                    out[i].1 = h;
                }
            }
            None => {
                at.insert(h.document_id.clone(), out.len());
                out.push((h.document_id.clone(), h, 1));
            }
        }
    }
    out.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    out
}

/// A vector is stale when it was made from an older version or other content.
fn is_stale(h: &VectorHit, d: &DocumentRecord) -> bool {
    h.version.is_none_or(|v| v < d.version) || h.content_hash.as_deref() != Some(&d.content_hash)
}

impl Reader {
    /// Runs a search (see the module documentation).
    pub async fn search(&self, req: &SearchRequest) -> Result<SearchResult, ReadError> {
        if req.k == 0 {
            return Err(ReadError::InvalidQuery("k must be at least 1".into()));
        }
        if let Some(mark) = &req.after {
            self.wait_indexed(mark, req.wait).await?;
        }
        let side = self.search_side()?;
        let (embedder, vectors) = (&side.embedder, side.vectors.as_ref());
        let vector = match &req.query {
            Query::Text(t) if t.trim().is_empty() => {
                return Err(ReadError::InvalidQuery("the query text is empty".into()))
            }
            Query::Text(t) => embedder
                .embed(std::slice::from_ref(t))
                .await?
                .pop()
                .ok_or_else(|| ReadError::Vectors("the embedder returned no vector".into()))?,
            Query::Vector(v) if v.len() != embedder.dimension() => {
                return Err(ReadError::InvalidQuery(format!(
                    "the vector has {} numbers but model `{}` makes {}",
                    v.len(),
                    embedder.model_id(),
                    embedder.dimension()
                )))
            }
            Query::Vector(v) => v.clone(),
        };
        let plan = if req.pushdown {
            translate::plan(&req.filter)
        } else {
            translate::plan_without_pushdown(&req.filter)
        };
        let max = MAX_CANDIDATES.max(req.k * 2);
        let mut fetch = first_fetch(req.k, plan.has_residual()).min(max);
        let mut rounds = 0;
        loop {
            rounds += 1;
            let hits = vectors.query(&vector, fetch, plan.chroma.as_ref()).await?;
            let exhausted = hits.len() < fetch;
            let candidates = hits.len();
            let mut found = self.hydrate(hits, &req.filter).await?;
            if found.len() >= req.k || exhausted || fetch >= max {
                found.truncate(req.k);
                return Ok(SearchResult {
                    hits: found,
                    candidates,
                    rounds,
                });
            }
            fetch = (fetch * 4).min(max);
        }
    }

    async fn hydrate(
        &self,
        hits: Vec<VectorHit>,
        filter: &Filter,
    ) -> Result<Vec<SearchHit>, ReadError> {
        let groups = group(hits);
        let ids: Vec<ObjectId> = groups
            .iter()
            .filter_map(|(id, _, _)| ObjectId::parse_str(id).ok())
            .collect();
        let mut docs: HashMap<String, DocumentRecord> = self
            .store
            .documents()
            .find(bson::doc! {"_id": {"$in": ids}})
            .await?
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .map(|d| (d.id.to_hex(), d))
            .collect();
        let mut out = Vec::with_capacity(groups.len());
        for (id, best, count) in groups {
            // Gone from MongoDB: a deleted document never comes back.
            let Some(document) = docs.remove(&id) else {
                continue;
            };
            if !filter.matches(&document) {
                continue;
            }
            out.push(SearchHit {
                stale: is_stale(&best, &document),
                score: best.score,
                vector_version: best.version,
                vectors: count,
                document,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, doc: &str, score: f32) -> VectorHit {
        VectorHit {
            id: id.into(),
            score,
            document_id: doc.into(),
            version: Some(1),
            content_hash: Some("h".into()),
        }
    }

    #[test]
    fn chunks_of_one_document_come_back_once_with_the_best_score() {
        let g = group(vec![
            hit("a#0", "a", 0.9),
            hit("b", "b", 0.8),
            hit("a#1", "a", 0.95),
            hit("a#2", "a", 0.1),
        ]);
        let summary: Vec<(&str, &str, f32, usize)> = g
            .iter()
            .map(|(d, h, n)| (d.as_str(), h.id.as_str(), h.score, *n))
            .collect();
        assert_eq!(summary, vec![("a", "a#1", 0.95, 3), ("b", "b", 0.8, 1)]);
    }

    #[test]
    fn staleness_by_version_or_hash() {
        let mut d = DocumentRecord {
            id: ObjectId::new(),
            content_id: "c".into(),
            doc_type: "t".into(),
            content: "x".into(),
            metadata: bson::Document::new(),
            timestamp: bson::DateTime::now(),
            version: 1,
            content_hash: "h".into(),
            vector_id: None,
            indexed_version: None,
        };
        let h = hit("v", "v", 1.0);
        assert!(!is_stale(&h, &d));
        d.version = 2;
        assert!(is_stale(&h, &d), "older version");
        d.version = 1;
        d.content_hash = "other".into();
        assert!(is_stale(&h, &d), "other content");
        d.content_hash = "h".into();
        assert!(
            is_stale(&VectorHit { version: None, ..h }, &d),
            "unknown version"
        );
    }

    #[test]
    fn first_round_over_fetches_when_the_filter_is_partly_local() {
        assert_eq!(first_fetch(5, false), 10);
        assert_eq!(first_fetch(20, false), 40);
        assert_eq!(first_fetch(5, true), 50);
        assert_eq!(first_fetch(30, true), 150);
    }
}
