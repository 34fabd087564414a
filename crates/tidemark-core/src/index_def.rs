//! Index definitions: what one vector index is made of (embedder, chunking, template, Chroma
//! collection) and where it stands (`building`, `active`, `retired`). They live in MongoDB
//! (`indexes`, see `tidemark_store::indexes`); exactly one is active and search reads it. A new
//! definition is built beside the active one (the worker writes every change to each live
//! index), verified, activated in one step; the previous one stays live, so activating it back
//! is instant, until it is dropped.
//!
//! This module is pure: the shape of a definition, its construction from a configuration, and
//! the comparison that tells a worker its configuration disagrees with the active index.

use crate::chunking::ChunkingConfig;
use crate::config::{local_model_id, Config, EmbedderConfig, EmbedderKind, LocalEngine};
use serde::{Deserialize, Serialize};

/// The MongoDB collection of index definitions.
pub const COLL_INDEXES: &str = "indexes";

/// Where an index stands. Every state but `dropped` receives the worker's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexState {
    Building,
    Active,
    Retired,
}

impl IndexState {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexState::Building => "building",
            IndexState::Active => "active",
            IndexState::Retired => "retired",
        }
    }
}

/// The embedder of an index: what decides its vectors (not where secrets or limits come from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEmbedder {
    pub provider: EmbedderKind,
    /// The model id (collection name part, `model` metadata of every vector).
    pub model: String,
    pub dimension: usize,
    /// The endpoint of an OpenAI-compatible provider (empty for the others).
    #[serde(default)]
    pub base_url: String,
}

/// One index definition, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexDef {
    #[serde(rename = "_id")]
    pub name: String,
    pub state: IndexState,
    pub embedder: IndexEmbedder,
    pub chunking: ChunkingConfig,
    /// The Chroma collection.
    pub collection: String,
    pub created_at: bson::DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<bson::DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<bson::DateTime>,
    /// The build's backfill run (its checkpoint holds the progress) and whether it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_run: Option<String>,
    #[serde(default)]
    pub build_complete: bool,
}

/// Valid index names: what a Chroma collection name part can hold, short.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

impl IndexDef {
    /// The definition a configuration describes, named `name`, in `state`. The first index of
    /// an install keeps the collection the worker has always written
    /// (`<namespace>__<model-slug>`); later ones get `<namespace>__<model-slug>__<name>`.
    pub fn from_config(cfg: &Config, name: &str, state: IndexState, first: bool) -> IndexDef {
        let model = cfg.embedder.model_id();
        let base = crate::collection_name(&cfg.chroma.namespace, &model);
        IndexDef {
            name: name.to_string(),
            state,
            embedder: IndexEmbedder {
                provider: cfg.embedder.provider,
                model,
                dimension: cfg.embedder.dimension,
                base_url: if cfg.embedder.provider == EmbedderKind::Openai {
                    cfg.embedder.base_url.clone()
                } else {
                    String::new()
                },
            },
            chunking: cfg.chunking.clone(),
            collection: if first {
                base
            } else {
                format!("{base}__{name}")
            },
            created_at: bson::DateTime::now(),
            activated_at: (state == IndexState::Active).then(bson::DateTime::now),
            retired_at: None,
            build_run: None,
            build_complete: first,
        }
    }

    /// The embedder configuration of this index: `base` (secrets, limits, model folder,
    /// timeouts) with this index's provider, model, dimension and endpoint.
    pub fn embedder_config(&self, base: &EmbedderConfig) -> EmbedderConfig {
        let mut e = base.clone();
        e.provider = self.embedder.provider;
        e.dimension = self.embedder.dimension;
        if self.embedder.provider == EmbedderKind::Openai {
            e.model = self.embedder.model.clone();
            e.base_url = self.embedder.base_url.clone();
        }
        if self.embedder.provider == EmbedderKind::Local {
            // The model id says whether the index holds int8 or fp32 vectors; an fp32 index
            // keeps the base's fp32 engine (ONNX Runtime or candle: the same vectors).
            let int8 = local_model_id(LocalEngine::OnnxInt8);
            e.engine = match (self.embedder.model == int8, base.engine) {
                (true, _) => LocalEngine::OnnxInt8,
                (false, LocalEngine::OnnxInt8) => LocalEngine::Onnx,
                (false, engine) => engine,
            };
        }
        e
    }

    /// A configuration for this index: `base` with its embedder and chunking (for building
    /// the worker's lanes, verify and search of this index).
    pub fn config(&self, base: &Config) -> Config {
        let mut c = base.clone();
        c.embedder = self.embedder_config(&base.embedder);
        c.chunking = self.chunking.clone();
        c
    }

    /// What differs between this definition and a configuration, in words (empty: they
    /// agree). The collection is not compared: it follows from the name.
    pub fn differences(&self, cfg: &Config) -> Vec<String> {
        let other = IndexDef::from_config(cfg, &self.name, self.state, false);
        let mut out = Vec::new();
        let (a, b) = (&self.embedder, &other.embedder);
        if a.provider != b.provider || a.model != b.model {
            out.push(format!("embedder `{}` vs `{}`", a.model, b.model));
        }
        if a.dimension != b.dimension {
            out.push(format!("dimension {} vs {}", a.dimension, b.dimension));
        }
        if a.base_url != b.base_url {
            out.push(format!("base_url `{}` vs `{}`", a.base_url, b.base_url));
        }
        let (x, y) = (&self.chunking, &other.chunking);
        if x.mode != y.mode || x.max_tokens != y.max_tokens || x.overlap != y.overlap {
            out.push(format!(
                "chunking {:?}/{}/{} vs {:?}/{}/{}",
                x.mode, x.max_tokens, x.overlap, y.mode, y.max_tokens, y.overlap
            ));
        }
        if x.template != y.template {
            out.push(format!("template `{}` vs `{}`", x.template, y.template));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::ChunkMode;

    fn hash_config(dim: usize) -> Config {
        let mut c = Config::default();
        c.embedder.provider = EmbedderKind::Hash;
        c.embedder.dimension = dim;
        c.chroma.namespace = "ns".into();
        c
    }

    #[test]
    fn the_first_index_keeps_the_collection_the_worker_always_wrote() {
        let c = hash_config(64);
        let first = IndexDef::from_config(&c, "main", IndexState::Active, true);
        assert_eq!(first.collection, "ns__hash-64");
        assert!(first.build_complete && first.activated_at.is_some());
        let next = IndexDef::from_config(&c, "v2", IndexState::Building, false);
        assert_eq!(next.collection, "ns__hash-64__v2");
        assert!(!next.build_complete && next.activated_at.is_none());
    }

    #[test]
    fn differences_name_what_disagrees() {
        let def = IndexDef::from_config(&hash_config(64), "main", IndexState::Active, true);
        assert!(def.differences(&hash_config(64)).is_empty());
        let d = def.differences(&hash_config(32));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("`hash-64` vs `hash-32`"), "{d:?}");
        let mut chunked = hash_config(64);
        chunked.chunking.mode = ChunkMode::Tokens;
        chunked.chunking.template = "{type}: {content}".into();
        let d = def.differences(&chunked);
        assert!(d.iter().any(|x| x.starts_with("chunking")), "{d:?}");
        assert!(d.iter().any(|x| x.starts_with("template")), "{d:?}");
    }

    #[test]
    fn embedder_config_keeps_secrets_and_limits_of_the_base() {
        let mut base = hash_config(64);
        base.embedder.api_key_env = "MY_KEY".into();
        base.embedder.max_tokens_per_minute = 1000;
        let mut other = base.clone();
        other.embedder.provider = EmbedderKind::Openai;
        other.embedder.model = "text-embedding-3-small".into();
        other.embedder.base_url = "https://api.example".into();
        other.embedder.dimension = 1536;
        let def = IndexDef::from_config(&other, "oa", IndexState::Building, false);
        let e = def.embedder_config(&base.embedder);
        assert_eq!(e.provider, EmbedderKind::Openai);
        assert_eq!(
            (e.model.as_str(), e.dimension),
            ("text-embedding-3-small", 1536)
        );
        assert_eq!(e.api_key_env, "MY_KEY");
        assert_eq!(e.max_tokens_per_minute, 1000);
        assert_eq!(e.model_id(), def.embedder.model);
    }

    #[test]
    fn a_local_index_runs_the_engine_of_its_vectors() {
        let mut base = hash_config(384);
        base.embedder.provider = EmbedderKind::Local;
        let engines = [
            LocalEngine::Onnx,
            LocalEngine::OnnxInt8,
            LocalEngine::Candle,
        ];
        // (engine the index was created with, engine of the worker's config) -> engine used.
        let table = [
            (LocalEngine::Onnx, LocalEngine::Candle, LocalEngine::Candle),
            (LocalEngine::Onnx, LocalEngine::OnnxInt8, LocalEngine::Onnx),
            (LocalEngine::Candle, LocalEngine::Onnx, LocalEngine::Onnx),
            (
                LocalEngine::OnnxInt8,
                LocalEngine::Onnx,
                LocalEngine::OnnxInt8,
            ),
            (
                LocalEngine::OnnxInt8,
                LocalEngine::Candle,
                LocalEngine::OnnxInt8,
            ),
        ];
        for (made, worker, used) in table {
            let mut made_cfg = base.clone();
            made_cfg.embedder.engine = made;
            let def = IndexDef::from_config(&made_cfg, "v", IndexState::Active, true);
            let mut w = base.embedder.clone();
            w.engine = worker;
            let e = def.embedder_config(&w);
            assert_eq!(e.engine, used, "made {made:?}, worker {worker:?}");
            assert_eq!(e.model_id(), def.embedder.model);
        }
        for engine in engines {
            let mut c = base.clone();
            c.embedder.engine = engine;
            assert_eq!(c.embedder.model_id(), local_model_id(engine));
        }
    }

    #[test]
    fn names_are_short_and_plain() {
        for ok in ["main", "v2", "minilm-chunked_2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-x", "a b", "x/y", &"n".repeat(41)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn definitions_round_trip_through_bson() {
        let def = IndexDef::from_config(&hash_config(64), "main", IndexState::Active, true);
        let doc = bson::to_document(&def).unwrap();
        assert_eq!(doc.get_str("_id").unwrap(), "main");
        assert_eq!(doc.get_str("state").unwrap(), "active");
        let back: IndexDef = bson::from_document(doc).unwrap();
        assert_eq!(back, def);
    }
}
