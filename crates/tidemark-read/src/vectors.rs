//! The only module that talks to the vector index (today `tidemark_chroma::ChromaClient`; the
//! `VectorIndex` trait replaces it here and nowhere else). It answers one question: the `n`
//! nearest vectors to a query vector among those whose metadata matches a `where` filter,
//! with the few metadata fields the read side needs.

use crate::ReadError;
use serde_json::Value;
use tidemark_chroma::{ChromaClient, ChromaError, ChromaOptions, QueryHit};
use tidemark_core::config::ChromaConfig;
use tokio::sync::RwLock;

/// One nearest vector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VectorHit {
    /// The vector's id.
    pub id: String,
    /// Cosine similarity: 1 is the same direction.
    pub score: f32,
    /// The document the vector belongs to (several vectors per document once chunked).
    pub document_id: String,
    /// The document version and content hash the vector was made from.
    pub version: Option<i64>,
    pub content_hash: Option<String>,
}

/// The collection of one embedding model.
pub(crate) struct Vectors {
    client: ChromaClient,
    collection: String,
    /// The collection's id once looked up (it may not exist before the worker's first write).
    id: RwLock<Option<String>>,
}

fn vector_error(e: ChromaError) -> ReadError {
    ReadError::Vectors(e.to_string())
}

fn hit(h: QueryHit) -> VectorHit {
    let meta = h.metadata.unwrap_or_default();
    let text = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_string);
    VectorHit {
        score: 1.0 - h.distance,
        document_id: text("documentId").unwrap_or_else(|| h.id.clone()),
        version: meta.get("version").and_then(Value::as_i64),
        content_hash: text("contentHash"),
        id: h.id,
    }
}

impl Vectors {
    pub fn new(cfg: &ChromaConfig, model_id: &str) -> Result<Vectors, ReadError> {
        Vectors::of_collection(
            cfg,
            &tidemark_core::collection_name(&cfg.namespace, model_id),
        )
    }

    /// The vectors of the named collection (an index definition's).
    pub fn of_collection(cfg: &ChromaConfig, collection: &str) -> Result<Vectors, ReadError> {
        let client = ChromaClient::new(ChromaOptions::from_config(cfg)).map_err(vector_error)?;
        Ok(Vectors {
            client,
            collection: collection.to_string(),
            id: RwLock::new(None),
        })
    }

    pub fn collection_name(&self) -> &str {
        &self.collection
    }

    async fn collection_id(&self, refresh: bool) -> Result<Option<String>, ReadError> {
        if !refresh {
            if let Some(id) = self.id.read().await.clone() {
                return Ok(Some(id));
            }
        }
        let found = self
            .client
            .get_collection(&self.collection)
            .await
            .map_err(vector_error)?
            .map(|c| c.id);
        *self.id.write().await = found.clone();
        Ok(found)
    }

    /// The `n` nearest vectors matching `filter` (Chroma's `where`), nearest first; none when
    /// the collection does not exist yet.
    pub async fn query(
        &self,
        vector: &[f32],
        n: usize,
        filter: Option<&Value>,
    ) -> Result<Vec<VectorHit>, ReadError> {
        let Some(id) = self.collection_id(false).await? else {
            return Ok(Vec::new());
        };
        let hits = match self.client.query_where(&id, vector, n, filter).await {
            Ok(h) => h,
            // The collection may have been dropped and created again: look it up once more.
            Err(ChromaError::Permanent { .. }) => match self.collection_id(true).await? {
                Some(id) => self
                    .client
                    .query_where(&id, vector, n, filter)
                    .await
                    .map_err(vector_error)?,
                None => return Ok(Vec::new()),
            },
            Err(e) => return Err(vector_error(e)),
        };
        Ok(hits.into_iter().map(hit).collect())
    }
}
