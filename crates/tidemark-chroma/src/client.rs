//! The HTTP client proper: one method per Chroma v2 call, typed errors, request splitting.

use crate::split::{check_unique, encode_embedding, split_batches};
use crate::{
    ChromaError, ChromaOptions, Collection, Metadata, QueryHit, StoredRecord, VectorRecord,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// A Chroma v2 client bound to one tenant and database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChromaClient {
    pub(crate) http: reqwest::Client,
    pub(crate) root: String,
    pub(crate) base: String,
    opts: ChromaOptions,
}

#[derive(Deserialize)]
struct CollectionBody {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct GetBody {
    ids: Vec<String>,
    #[serde(default)]
    metadatas: Option<Vec<Option<Metadata>>>,
    #[serde(default)]
    embeddings: Option<Vec<Option<Vec<f32>>>>,
}

#[derive(Deserialize)]
struct QueryBody {
    ids: Vec<Vec<String>>,
    #[serde(default)]
    distances: Option<Vec<Vec<Option<f32>>>>,
    #[serde(default)]
    metadatas: Option<Vec<Vec<Option<Metadata>>>>,
}

/// Connection refused, reset, timeouts, truncated bodies: all worth a retry. Said in words,
/// with the server's origin (never the credentials of a URL) and where to look.
pub(crate) fn transport(e: reqwest::Error) -> ChromaError {
    let origin = e
        .url()
        .map(|u| {
            let host = u.host_str().unwrap_or("?");
            match u.port_or_known_default() {
                Some(p) => format!(" at {}://{host}:{p}", u.scheme()),
                None => format!(" at {}://{host}", u.scheme()),
            }
        })
        .unwrap_or_default();
    let why = tidemark_core::error_text::io_reason(&e).unwrap_or_else(|| {
        if e.is_timeout() {
            "timed out".into()
        } else if e.is_body() || e.is_decode() {
            "the answer was cut short or unreadable".into()
        } else {
            "request failed".into()
        }
    });
    ChromaError::Transient(format!(
        "cannot reach Chroma{origin} ({why}): is it running? check chroma.url (CHROMA_URL)"
    ))
}

impl ChromaClient {
    pub fn new(opts: ChromaOptions) -> Result<Self, ChromaError> {
        let root = opts.url.trim_end_matches('/').to_string();
        if !(root.starts_with("http://") || root.starts_with("https://")) {
            return Err(ChromaError::Invalid(format!(
                "chroma url `{root}` must start with http:// or https://"
            )));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &opts.auth_token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ChromaError::Invalid("auth token is not a valid header".into()))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(5)))
            .default_headers(headers)
            .build()
            .map_err(|e| ChromaError::Invalid(format!("http client: {e}")))?;
        let base = format!(
            "{root}/api/v2/tenants/{}/databases/{}",
            opts.tenant, opts.database
        );
        Ok(ChromaClient {
            http,
            root,
            base,
            opts,
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ChromaOptions {
        &self.opts
    }

    pub(crate) async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ChromaError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                let err = v.get("error")?.as_str().unwrap_or("").to_string();
                let msg = v.get("message")?.as_str().unwrap_or("").to_string();
                Some(if err.is_empty() {
                    msg
                } else {
                    format!("{err}: {msg}")
                })
            })
            .unwrap_or_else(|| text.chars().take(500).collect());
        let code = status.as_u16();
        if let (Some(retry_after), 429 | 503) = (retry_after, code) {
            return Err(ChromaError::Throttled {
                retry_after,
                message,
            });
        }
        if code == 429 || code == 408 || status.is_server_error() {
            Err(ChromaError::Transient(format!(
                "Chroma answered HTTP {code}: {message}"
            )))
        } else {
            Err(ChromaError::Permanent {
                status: code,
                message,
            })
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<reqwest::Response, ChromaError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        Self::check(resp).await
    }

    pub(crate) async fn post_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ChromaError> {
        self.post(path, body)
            .await?
            .json::<T>()
            .await
            .map_err(transport)
    }

    /// `GET /api/v2/heartbeat`: the server answers.
    pub async fn heartbeat(&self) -> Result<(), ChromaError> {
        let resp = self
            .http
            .get(format!("{}/api/v2/heartbeat", self.root))
            .send()
            .await
            .map_err(transport)?;
        Self::check(resp).await.map(|_| ())
    }

    /// Creates the collection (cosine distance) or returns the existing one.
    pub async fn get_or_create_collection(&self, name: &str) -> Result<Collection, ChromaError> {
        let body = json!({
            "name": name,
            "get_or_create": true,
            "configuration": {"hnsw": {"space": "cosine"}},
        });
        let c: CollectionBody = self.post_json("/collections", &body).await?;
        Ok(Collection {
            id: c.id,
            name: c.name,
        })
    }

    /// The collection named `name`, or `None` when there is none.
    pub async fn get_collection(&self, name: &str) -> Result<Option<Collection>, ChromaError> {
        let resp = self
            .http
            .get(format!("{}/collections/{name}", self.base))
            .send()
            .await
            .map_err(transport)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let c: CollectionBody = Self::check(resp).await?.json().await.map_err(transport)?;
        Ok(Some(Collection {
            id: c.id,
            name: c.name,
        }))
    }

    /// Deletes the collection named `name`; a missing collection is not an error.
    pub async fn delete_collection(&self, name: &str) -> Result<(), ChromaError> {
        let resp = self
            .http
            .delete(format!("{}/collections/{name}", self.base))
            .send()
            .await
            .map_err(transport)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Self::check(resp).await.map(|_| ())
    }

    /// Inserts or replaces `records` (base64 embeddings), in as many requests as the body and
    /// batch limits need. Duplicate ids are rejected before anything is sent.
    pub async fn upsert(
        &self,
        collection_id: &str,
        records: &[VectorRecord],
    ) -> Result<(), ChromaError> {
        check_unique(records.iter().map(|r| r.id.as_str()))?;
        let ranges = split_batches(
            records,
            self.opts.max_body_bytes,
            self.opts.max_batch_records,
        )?;
        for range in ranges {
            let part = &records[range];
            let body = json!({
                "ids": part.iter().map(|r| &r.id).collect::<Vec<_>>(),
                "embeddings": part.iter().map(|r| encode_embedding(&r.embedding)).collect::<Vec<_>>(),
                "metadatas": part.iter().map(|r| &r.metadata).collect::<Vec<_>>(),
            });
            self.post(&format!("/collections/{collection_id}/upsert"), &body)
                .await?;
        }
        Ok(())
    }

    /// Replaces the metadata of existing records (embeddings untouched).
    pub async fn update_metadata(
        &self,
        collection_id: &str,
        ids: &[String],
        metadatas: &[Metadata],
    ) -> Result<(), ChromaError> {
        if ids.len() != metadatas.len() {
            return Err(ChromaError::Invalid(format!(
                "{} ids but {} metadatas",
                ids.len(),
                metadatas.len()
            )));
        }
        check_unique(ids.iter().map(String::as_str))?;
        for (ids, metas) in ids
            .chunks(self.opts.max_batch_records)
            .zip(metadatas.chunks(self.opts.max_batch_records))
        {
            let body = json!({"ids": ids, "metadatas": metas});
            self.post(&format!("/collections/{collection_id}/update"), &body)
                .await?;
        }
        Ok(())
    }

    fn records(body: GetBody) -> Vec<StoredRecord> {
        let n = body.ids.len();
        let mut metas = body.metadatas.unwrap_or_default().into_iter();
        let mut embs = body.embeddings.unwrap_or_default().into_iter();
        let mut out = Vec::with_capacity(n);
        for id in body.ids {
            out.push(StoredRecord {
                id,
                metadata: metas.next().flatten(),
                embedding: embs.next().flatten(),
            });
        }
        out
    }

    /// The records among `ids` that exist, with metadata (and embeddings when asked).
    pub async fn get(
        &self,
        collection_id: &str,
        ids: &[String],
        with_embeddings: bool,
    ) -> Result<Vec<StoredRecord>, ChromaError> {
        let include: &[&str] = if with_embeddings {
            &["metadatas", "embeddings"]
        } else {
            &["metadatas"]
        };
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(self.opts.max_batch_records) {
            let body = json!({"ids": chunk, "include": include});
            let got: GetBody = self
                .post_json(&format!("/collections/{collection_id}/get"), &body)
                .await?;
            out.extend(Self::records(got));
        }
        Ok(out)
    }

    /// One page of all records (ids and metadatas), for scans.
    pub async fn get_page(
        &self,
        collection_id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, ChromaError> {
        let body = json!({"offset": offset, "limit": limit, "include": ["metadatas"]});
        let got: GetBody = self
            .post_json(&format!("/collections/{collection_id}/get"), &body)
            .await?;
        Ok(Self::records(got))
    }

    /// Deletes the records with these ids (absent ids are fine).
    pub async fn delete(&self, collection_id: &str, ids: &[String]) -> Result<(), ChromaError> {
        for chunk in ids.chunks(self.opts.max_batch_records) {
            if chunk.is_empty() {
                continue;
            }
            self.post(
                &format!("/collections/{collection_id}/delete"),
                &json!({"ids": chunk}),
            )
            .await?;
        }
        Ok(())
    }

    /// Number of records in the collection.
    pub async fn count(&self, collection_id: &str) -> Result<u64, ChromaError> {
        let resp = self
            .http
            .get(format!("{}/collections/{collection_id}/count", self.base))
            .send()
            .await
            .map_err(transport)?;
        Self::check(resp).await?.json().await.map_err(transport)
    }

    /// The records whose metadata matches `filter` (a Chroma `where`), metadata only.
    pub async fn get_where(
        &self,
        collection_id: &str,
        filter: &Value,
    ) -> Result<Vec<StoredRecord>, ChromaError> {
        let body = json!({"where": filter, "include": ["metadatas"]});
        let got: GetBody = self
            .post_json(&format!("/collections/{collection_id}/get"), &body)
            .await?;
        Ok(Self::records(got))
    }

    /// Deletes the records whose metadata matches `filter` (a Chroma `where`).
    pub async fn delete_where(
        &self,
        collection_id: &str,
        filter: &Value,
    ) -> Result<(), ChromaError> {
        self.post(
            &format!("/collections/{collection_id}/delete"),
            &json!({"where": filter}),
        )
        .await
        .map(|_| ())
    }

    /// The `k` nearest records to `embedding`, nearest first.
    pub async fn query(
        &self,
        collection_id: &str,
        embedding: &[f32],
        k: usize,
    ) -> Result<Vec<QueryHit>, ChromaError> {
        self.query_where(collection_id, embedding, k, None).await
    }

    /// The `k` nearest records to `embedding` among those matching `filter`, nearest first.
    pub async fn query_where(
        &self,
        collection_id: &str,
        embedding: &[f32],
        k: usize,
        filter: Option<&Value>,
    ) -> Result<Vec<QueryHit>, ChromaError> {
        let mut body = json!({
            "query_embeddings": [embedding],
            "n_results": k,
            "include": ["metadatas", "distances"],
        });
        if let Some(f) = filter {
            body["where"] = f.clone();
        }
        let got: QueryBody = self
            .post_json(&format!("/collections/{collection_id}/query"), &body)
            .await?;
        let ids = got.ids.into_iter().next().unwrap_or_default();
        let mut dists = got
            .distances
            .and_then(|d| d.into_iter().next())
            .unwrap_or_default()
            .into_iter();
        let mut metas = got
            .metadatas
            .and_then(|m| m.into_iter().next())
            .unwrap_or_default()
            .into_iter();
        Ok(ids
            .into_iter()
            .map(|id| QueryHit {
                id,
                distance: dists.next().flatten().unwrap_or(f32::NAN),
                metadata: metas.next().flatten(),
            })
            .collect())
    }
}
