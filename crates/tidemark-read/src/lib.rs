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

use std::sync::{Arc, RwLock};
use tidemark_core::Config;
use tidemark_embed::SharedEmbedder;
use tidemark_store::Store;

/// The read API. Cheap to clone; clones share the search side, so
/// [`Reader::follow_active_index`] on one switches every clone.
#[derive(Clone)]
pub struct Reader {
    store: Store,
    chroma: tidemark_core::config::ChromaConfig,
    search: Arc<RwLock<Option<SearchSide>>>,
}

/// What a search needs: the query embedder and the collection it reads.
#[derive(Clone)]
pub(crate) struct SearchSide {
    pub embedder: SharedEmbedder,
    pub vectors: Arc<vectors::Vectors>,
}

impl Reader {
    /// A reader of MongoDB only (`get`, `recent`, `history`, `wait_indexed`); add an embedder
    /// with [`Reader::with_embedder`] to search.
    pub fn new(cfg: &Config, store: Store) -> Reader {
        Reader {
            store,
            chroma: cfg.chroma.clone(),
            search: Arc::new(RwLock::new(None)),
        }
    }

    /// Enables `search`: queries are embedded with `embedder`, and vectors are read from its
    /// model's collection `<chroma.namespace>__<model-slug>`.
    pub fn with_embedder(self, embedder: SharedEmbedder) -> Result<Reader, ReadError> {
        let vectors = vectors::Vectors::new(&self.chroma, embedder.model_id())?;
        self.set_search(embedder, vectors);
        Ok(self)
    }

    /// Enables `search` on an index definition's collection, with its embedder.
    pub fn with_index(
        self,
        embedder: SharedEmbedder,
        collection: &str,
    ) -> Result<Reader, ReadError> {
        let vectors = vectors::Vectors::of_collection(&self.chroma, collection)?;
        self.set_search(embedder, vectors);
        Ok(self)
    }

    fn set_search(&self, embedder: SharedEmbedder, vectors: vectors::Vectors) {
        *self.search.write().expect("search lock") = Some(SearchSide {
            embedder,
            vectors: Arc::new(vectors),
        });
    }

    /// Makes `search` read the active index definition when it is another collection than the
    /// one searched now (after `tidemark index activate`): loads that index's embedder (from
    /// `cfg.embedder` with the definition's provider, model and dimension) and switches every
    /// clone of this reader at once. Returns the collection switched to, if any.
    pub async fn follow_active_index(&self, cfg: &Config) -> Result<Option<String>, ReadError> {
        let Some(def) = tidemark_store::indexes::Indexes::new(self.store.database())
            .active()
            .await?
        else {
            return Ok(None);
        };
        if self.collection_name().as_deref() == Some(def.collection.as_str()) {
            return Ok(None);
        }
        let ecfg = def.embedder_config(&cfg.embedder);
        let embedder = tokio::task::spawn_blocking(move || tidemark_embed::from_config(&ecfg))
            .await
            .map_err(|e| ReadError::Vectors(format!("loading the embedder panicked: {e}")))??;
        let vectors = vectors::Vectors::of_collection(&self.chroma, &def.collection)?;
        self.set_search(embedder, vectors);
        Ok(Some(def.collection))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The vector collection searched, when the reader can search.
    pub fn collection_name(&self) -> Option<String> {
        self.search
            .read()
            .expect("search lock")
            .as_ref()
            .map(|s| s.vectors.collection_name().to_string())
    }

    pub(crate) fn search_side(&self) -> Result<SearchSide, ReadError> {
        self.search
            .read()
            .expect("search lock")
            .clone()
            .ok_or(ReadError::NoEmbedder)
    }
}
