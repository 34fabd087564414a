//! Calls for reading (and, in tests, building) a Chroma database that tidemark did not write:
//! databases, collections with their metadata and distance, records added with their
//! documents, and pages of records read back with documents and embeddings.
//!
//! `tidemark migrate` uses the read calls on a legacy store; it never writes there.

use crate::client::transport;
use crate::{ChromaClient, ChromaError, Collection, Metadata};
use serde::Deserialize;
use serde_json::{json, Value};

/// A collection as listed: its name, UUID, metadata and the distance its index uses.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionInfo {
    pub id: String,
    pub name: String,
    pub metadata: Metadata,
    /// `l2`, `cosine` or `ip` when the server reports it.
    pub space: Option<String>,
    /// The dimension of its vectors, when the server knows it (after the first add).
    pub dimension: Option<usize>,
}

/// A record with what a legacy store keeps beside its vector: the document text.
#[derive(Debug, Clone, PartialEq)]
pub struct FullRecord {
    pub id: String,
    pub document: Option<String>,
    pub metadata: Option<Metadata>,
    pub embedding: Option<Vec<f32>>,
}

#[derive(Deserialize)]
struct ListedCollection {
    id: String,
    name: String,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    configuration_json: Option<Value>,
    #[serde(default)]
    dimension: Option<usize>,
}

#[derive(Deserialize)]
struct FullBody {
    ids: Vec<String>,
    #[serde(default)]
    documents: Option<Vec<Option<String>>>,
    #[serde(default)]
    metadatas: Option<Vec<Option<Metadata>>>,
    #[serde(default)]
    embeddings: Option<Vec<Option<Vec<f32>>>>,
}

fn space_of(c: &ListedCollection) -> Option<String> {
    let from_config = c
        .configuration_json
        .as_ref()
        .and_then(|v| {
            v.pointer("/hnsw/space")
                .or_else(|| v.pointer("/spann/space"))
        })
        .and_then(Value::as_str);
    let from_meta = c
        .metadata
        .as_ref()
        .and_then(|m| m.get("hnsw:space"))
        .and_then(Value::as_str);
    from_config.or(from_meta).map(str::to_string)
}

impl ChromaClient {
    /// Creates the database `name` in this client's tenant; an existing one is fine.
    pub async fn create_database(&self, name: &str) -> Result<(), ChromaError> {
        let url = format!(
            "{}/api/v2/tenants/{}/databases",
            self.root,
            self.options().tenant
        );
        let resp = self
            .http
            .post(url)
            .json(&json!({"name": name}))
            .send()
            .await
            .map_err(transport)?;
        if resp.status() == reqwest::StatusCode::CONFLICT {
            return Ok(());
        }
        Self::check(resp).await.map(|_| ())
    }

    /// Deletes the database `name` of this client's tenant; a missing one is fine.
    pub async fn delete_database(&self, name: &str) -> Result<(), ChromaError> {
        let url = format!(
            "{}/api/v2/tenants/{}/databases/{name}",
            self.root,
            self.options().tenant
        );
        let resp = self.http.delete(url).send().await.map_err(transport)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Self::check(resp).await.map(|_| ())
    }

    /// Every collection of the database, with metadata and distance, in pages of 100.
    pub async fn list_collections(&self) -> Result<Vec<CollectionInfo>, ChromaError> {
        let mut out = Vec::new();
        loop {
            let url = format!("{}/collections?limit=100&offset={}", self.base, out.len());
            let resp = self.http.get(url).send().await.map_err(transport)?;
            let page: Vec<ListedCollection> =
                Self::check(resp).await?.json().await.map_err(transport)?;
            let n = page.len();
            out.extend(page.into_iter().map(|c| CollectionInfo {
                space: space_of(&c),
                id: c.id,
                name: c.name,
                metadata: c.metadata.unwrap_or_default(),
                dimension: c.dimension,
            }));
            if n < 100 {
                return Ok(out);
            }
        }
    }

    /// Creates a collection with a distance (`l2`, `cosine`, `ip`) and collection metadata, or
    /// returns the existing one of that name.
    pub async fn create_collection_with(
        &self,
        name: &str,
        space: &str,
        metadata: &Metadata,
    ) -> Result<Collection, ChromaError> {
        let mut body = json!({
            "name": name,
            "get_or_create": true,
            "configuration": {"hnsw": {"space": space}},
        });
        if !metadata.is_empty() {
            body["metadata"] = Value::Object(metadata.clone());
        }
        let c: ListedCollection = self.post_json("/collections", &body).await?;
        Ok(Collection {
            id: c.id,
            name: c.name,
        })
    }

    /// Adds records with their document texts (JSON embeddings, as legacy writers sent them).
    pub async fn add_with_documents(
        &self,
        collection_id: &str,
        records: &[FullRecord],
    ) -> Result<(), ChromaError> {
        for part in records.chunks(self.options().max_batch_records.max(1)) {
            let body = json!({
                "ids": part.iter().map(|r| &r.id).collect::<Vec<_>>(),
                "embeddings": part.iter().map(|r| r.embedding.clone().unwrap_or_default()).collect::<Vec<_>>(),
                "documents": part.iter().map(|r| &r.document).collect::<Vec<_>>(),
                "metadatas": part.iter().map(|r| r.metadata.clone().filter(|m| !m.is_empty())).collect::<Vec<_>>(),
            });
            self.post_json::<Value>(&format!("/collections/{collection_id}/add"), &body)
                .await?;
        }
        Ok(())
    }

    fn full_records(body: FullBody) -> Vec<FullRecord> {
        let mut docs = body.documents.unwrap_or_default().into_iter();
        let mut metas = body.metadatas.unwrap_or_default().into_iter();
        let mut embs = body.embeddings.unwrap_or_default().into_iter();
        body.ids
            .into_iter()
            .map(|id| FullRecord {
                id,
                document: docs.next().flatten(),
                metadata: metas.next().flatten(),
                embedding: embs.next().flatten(),
            })
            .collect()
    }

    fn include(embeddings: bool) -> Vec<&'static str> {
        let mut include = vec!["documents", "metadatas"];
        if embeddings {
            include.push("embeddings");
        }
        include
    }

    /// One page of records with documents and metadata (and embeddings when asked).
    pub async fn get_full_page(
        &self,
        collection_id: &str,
        offset: usize,
        limit: usize,
        with_embeddings: bool,
    ) -> Result<Vec<FullRecord>, ChromaError> {
        let body =
            json!({"offset": offset, "limit": limit, "include": Self::include(with_embeddings)});
        let got: FullBody = self
            .post_json(&format!("/collections/{collection_id}/get"), &body)
            .await?;
        Ok(Self::full_records(got))
    }

    /// The records among `ids` that exist, with documents and metadata (and embeddings).
    pub async fn get_full(
        &self,
        collection_id: &str,
        ids: &[String],
        with_embeddings: bool,
    ) -> Result<Vec<FullRecord>, ChromaError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(self.options().max_batch_records.max(1)) {
            let body = json!({"ids": chunk, "include": Self::include(with_embeddings)});
            let got: FullBody = self
                .post_json(&format!("/collections/{collection_id}/get"), &body)
                .await?;
            out.extend(Self::full_records(got));
        }
        Ok(out)
    }
}
