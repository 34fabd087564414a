//! [`ChromaIndex`]: the [`VectorIndex`] implementation for one Chroma collection.
//!
//! Chroma's own habits stay in here, behind the trait's plain semantics:
//! - metadata is *merged* on upsert and update, and a `null` value removes a key, so a write
//!   adds explicit nulls for the keys of the previously read metadata that the new one lacks;
//! - record calls take the collection's UUID, looked up once and cached; a 404 means the
//!   collection was deleted behind our back: the cached id is forgotten and the call reports a
//!   transient error, so the next attempt finds (or recreates) it;
//! - scans page by offset; bodies above the server's cap are split by the client.

use crate::{ChromaClient, ChromaError, QueryHit, StoredRecord, VectorRecord};
use async_trait::async_trait;
use serde_json::{json, Value};
use tidemark_core::index::{
    Hit, IndexError, MetadataWrite, ScanCursor, ScanPage, StoredVector, VectorIndex, VectorWrite,
};
use tidemark_core::vector_meta::{keys, Metadata};
use tokio::sync::Mutex;

/// One Chroma collection as a [`VectorIndex`]. Cheap to share behind an `Arc`.
pub struct ChromaIndex {
    client: ChromaClient,
    name: String,
    id: Mutex<Option<String>>,
}

impl From<ChromaError> for IndexError {
    fn from(e: ChromaError) -> IndexError {
        match e {
            ChromaError::Transient(_) => IndexError::Transient(e.to_string()),
            ChromaError::Throttled { retry_after, .. } => IndexError::Throttled {
                retry_after,
                message: e.to_string(),
            },
            ChromaError::Permanent { .. } | ChromaError::Invalid(_) => {
                IndexError::Rejected(e.to_string())
            }
        }
    }
}

/// Adds explicit nulls for keys of `previous` that `desired` no longer has.
fn with_removals(desired: &Metadata, previous: Option<&Metadata>) -> Metadata {
    let mut out = desired.clone();
    if let Some(p) = previous {
        for k in p.keys() {
            if !out.contains_key(k) {
                out.insert(k.clone(), Value::Null);
            }
        }
    }
    out
}

fn stored(r: StoredRecord) -> StoredVector {
    StoredVector {
        id: r.id,
        metadata: r.metadata.unwrap_or_default(),
        embedding: r.embedding,
    }
}

fn by_documents(document_ids: &[String]) -> Value {
    json!({ keys::DOCUMENT_ID: {"$in": document_ids} })
}

impl ChromaIndex {
    /// The collection `name` reached through `client`; nothing is contacted yet.
    pub fn new(client: ChromaClient, name: impl Into<String>) -> ChromaIndex {
        ChromaIndex {
            client,
            name: name.into(),
            id: Mutex::new(None),
        }
    }

    /// The client this index talks through.
    pub fn client(&self) -> &ChromaClient {
        &self.client
    }

    /// The collection's UUID: cached, else looked up (`create`: created when absent).
    async fn id(&self, create: bool) -> Result<Option<String>, ChromaError> {
        let mut g = self.id.lock().await;
        if let Some(id) = g.as_ref() {
            return Ok(Some(id.clone()));
        }
        let found = if create {
            Some(self.client.get_or_create_collection(&self.name).await?)
        } else {
            self.client.get_collection(&self.name).await?
        };
        *g = found.as_ref().map(|c| c.id.clone());
        Ok(found.map(|c| c.id))
    }

    /// Maps an error of a record call; a 404 forgets the collection id and is transient.
    async fn record_error(&self, e: ChromaError) -> IndexError {
        if let ChromaError::Permanent { status: 404, .. } = e {
            *self.id.lock().await = None;
            return IndexError::Transient(e.to_string());
        }
        e.into()
    }

    async fn writable(&self) -> Result<String, IndexError> {
        Ok(self.id(true).await?.expect("created"))
    }
}

#[async_trait]
impl VectorIndex for ChromaIndex {
    fn name(&self) -> &str {
        &self.name
    }

    async fn ensure(&self) -> Result<String, IndexError> {
        self.writable().await
    }

    async fn exists(&self) -> Result<bool, IndexError> {
        Ok(self.id(false).await?.is_some())
    }

    async fn fetch(&self, ids: &[String]) -> Result<Vec<StoredVector>, IndexError> {
        let Some(cid) = self.id(false).await? else {
            return Ok(Vec::new());
        };
        match self.client.get(&cid, ids, false).await {
            Ok(rs) => Ok(rs.into_iter().map(stored).collect()),
            Err(e) => Err(self.record_error(e).await),
        }
    }

    async fn fetch_by_document(
        &self,
        document_ids: &[String],
    ) -> Result<Vec<StoredVector>, IndexError> {
        let Some(cid) = self.id(false).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for part in document_ids.chunks(1000) {
            match self.client.get_where(&cid, &by_documents(part)).await {
                Ok(rs) => out.extend(rs.into_iter().map(stored)),
                Err(e) => return Err(self.record_error(e).await),
            }
        }
        Ok(out)
    }

    async fn upsert(&self, vectors: &[VectorWrite]) -> Result<(), IndexError> {
        let cid = self.writable().await?;
        let records: Vec<VectorRecord> = vectors
            .iter()
            .map(|v| VectorRecord {
                id: v.id.clone(),
                embedding: v.embedding.clone(),
                metadata: with_removals(&v.metadata, v.previous.as_ref()),
            })
            .collect();
        match self.client.upsert(&cid, &records).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.record_error(e).await),
        }
    }

    async fn update_metadata(&self, updates: &[MetadataWrite]) -> Result<(), IndexError> {
        let cid = self.writable().await?;
        let ids: Vec<String> = updates.iter().map(|u| u.id.clone()).collect();
        let metas: Vec<Metadata> = updates
            .iter()
            .map(|u| with_removals(&u.metadata, u.previous.as_ref()))
            .collect();
        match self.client.update_metadata(&cid, &ids, &metas).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.record_error(e).await),
        }
    }

    async fn delete(&self, ids: &[String]) -> Result<(), IndexError> {
        if ids.is_empty() {
            return Ok(());
        }
        let cid = self.writable().await?;
        match self.client.delete(&cid, ids).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.record_error(e).await),
        }
    }

    async fn delete_by_document(&self, document_ids: &[String]) -> Result<(), IndexError> {
        let Some(cid) = self.id(false).await? else {
            return Ok(());
        };
        for part in document_ids.chunks(1000) {
            if let Err(e) = self.client.delete_where(&cid, &by_documents(part)).await {
                return Err(self.record_error(e).await);
            }
        }
        Ok(())
    }

    async fn scan(&self, from: ScanCursor, limit: usize) -> Result<ScanPage, IndexError> {
        let Some(cid) = self.id(false).await? else {
            return Ok(ScanPage {
                vectors: Vec::new(),
                next: None,
            });
        };
        let offset = from.0 as usize;
        let page = match self.client.get_page(&cid, offset, limit).await {
            Ok(p) => p,
            Err(e) => return Err(self.record_error(e).await),
        };
        let next = (page.len() == limit && limit > 0).then(|| ScanCursor((offset + limit) as u64));
        Ok(ScanPage {
            vectors: page.into_iter().map(stored).collect(),
            next,
        })
    }

    async fn count(&self) -> Result<u64, IndexError> {
        let Some(cid) = self.id(false).await? else {
            return Ok(0);
        };
        match self.client.count(&cid).await {
            Ok(n) => Ok(n),
            Err(e) => Err(self.record_error(e).await),
        }
    }

    async fn query(
        &self,
        embedding: &[f32],
        k: usize,
        filter: Option<&Value>,
    ) -> Result<Vec<Hit>, IndexError> {
        let Some(cid) = self.id(false).await? else {
            return Ok(Vec::new());
        };
        match self.client.query_where(&cid, embedding, k, filter).await {
            Ok(hits) => Ok(hits
                .into_iter()
                .map(|h: QueryHit| Hit {
                    id: h.id,
                    distance: h.distance,
                    metadata: h.metadata.unwrap_or_default(),
                })
                .collect()),
            Err(e) => Err(self.record_error(e).await),
        }
    }

    async fn drop_index(&self) -> Result<(), IndexError> {
        *self.id.lock().await = None;
        Ok(self.client.delete_collection(&self.name).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: Value) -> Metadata {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn removed_keys_become_nulls() {
        let desired = meta(json!({"a": 1, "b": "x"}));
        let previous = meta(json!({"a": 0, "gone": true}));
        let out = with_removals(&desired, Some(&previous));
        assert_eq!(out, meta(json!({"a": 1, "b": "x", "gone": null})));
        assert_eq!(with_removals(&desired, None), desired);
    }

    #[test]
    fn errors_keep_their_retry_class() {
        let t: IndexError = ChromaError::Transient("down".into()).into();
        assert!(t.is_transient());
        let p: IndexError = ChromaError::Permanent {
            status: 400,
            message: "dimension".into(),
        }
        .into();
        assert!(!p.is_transient());
        assert!(p.to_string().contains("dimension"));
        let th: IndexError = ChromaError::Throttled {
            retry_after: std::time::Duration::from_secs(3),
            message: "slow down".into(),
        }
        .into();
        assert_eq!(th.retry_after(), Some(std::time::Duration::from_secs(3)));
    }
}
