//! tidemark-read: the application's read side, over the same MongoDB and vector index the
//! worker keeps consistent.
//!
//! - [`Reader::get`], [`Reader::recent`], [`Reader::history`] (documents.rs): MongoDB only.
//! - [`Reader::search`] (search.rs): text or vector, `k`, a [`Filter`] on `type` and metadata
//!   (filter/: parsing, in-memory semantics, the split between Chroma's `where` and the
//!   MongoDB side); hits hydrated from MongoDB, deleted documents dropped, stale vectors
//!   marked, chunked documents once.
//! - [`Reader::wait_indexed`] (wait.rs): read-your-writes for a [`WriteMark`] (a put's result).
//! - vectors.rs: the only module that calls the vector index.
//! - [`http`]: the HTTP API served by `tidemark serve`.
//!
//! ```no_run
//! # async fn demo(cfg: tidemark_core::Config, store: tidemark_store::Store,
//! #   embedder: tidemark_embed::SharedEmbedder) -> Result<(), tidemark_read::ReadError> {
//! use tidemark_read::{Filter, Reader, SearchRequest};
//! let reader = Reader::new(&cfg, store.clone()).with_embedder(embedder)?;
//! let put = store.put(tidemark_store::NewDocument::new("faq-1", "faq", "Reset a password")).await?;
//! let filter = Filter::from_json(&serde_json::json!({"type": "faq"}))?;
//! let req = SearchRequest::text("forgot my password", 5)
//!     .with_filter(filter)
//!     .after(&put, std::time::Duration::from_secs(5));
//! for hit in reader.search(&req).await?.hits {
//!     println!("{} {:.3} stale={}", hit.document.content_id, hit.score, hit.stale);
//! }
//! # Ok(()) }
//! ```

mod documents;
mod error;
pub mod filter;
pub mod http;
pub mod json;
mod search;
mod vectors;
mod wait;

pub use documents::{HistoryEntry, READ_INDEXES};
pub use error::ReadError;
pub use filter::{Filter, FilterError};
pub use search::{Query, SearchHit, SearchRequest, SearchResult, MAX_CANDIDATES};
pub use wait::WriteMark;

use std::sync::Arc;
use tidemark_core::Config;
use tidemark_embed::SharedEmbedder;
use tidemark_store::Store;

/// The read API. Cheap to clone.
#[derive(Clone)]
pub struct Reader {
    store: Store,
    chroma: tidemark_core::config::ChromaConfig,
    search: Option<(SharedEmbedder, Arc<vectors::Vectors>)>,
}

impl Reader {
    /// A reader of MongoDB only (`get`, `recent`, `history`, `wait_indexed`); add an embedder
    /// with [`Reader::with_embedder`] to search.
    pub fn new(cfg: &Config, store: Store) -> Reader {
        Reader {
            store,
            chroma: cfg.chroma.clone(),
            search: None,
        }
    }

    /// Enables `search`: queries are embedded with `embedder`, and vectors are read from its
    /// model's collection `<chroma.namespace>__<model-slug>`.
    pub fn with_embedder(mut self, embedder: SharedEmbedder) -> Result<Reader, ReadError> {
        let vectors = vectors::Vectors::new(&self.chroma, embedder.model_id())?;
        self.search = Some((embedder, Arc::new(vectors)));
        Ok(self)
    }

    /// Enables `search` on an index definition's collection, with its embedder.
    pub fn with_index(
        mut self,
        embedder: SharedEmbedder,
        collection: &str,
    ) -> Result<Reader, ReadError> {
        let vectors = vectors::Vectors::of_collection(&self.chroma, collection)?;
        self.search = Some((embedder, Arc::new(vectors)));
        Ok(self)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The vector collection searched, when the reader can search.
    pub fn collection_name(&self) -> Option<&str> {
        self.search.as_ref().map(|(_, v)| v.collection_name())
    }

    pub(crate) fn search_side(&self) -> Result<(&SharedEmbedder, &vectors::Vectors), ReadError> {
        self.search
            .as_ref()
            .map(|(e, v)| (e, v.as_ref()))
            .ok_or(ReadError::NoEmbedder)
    }
}
