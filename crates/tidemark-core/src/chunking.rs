//! The `[chunking]` configuration and what it resolves to: whether documents are split, the
//! token budget of a chunk, the overlap, the embedding template, and the fingerprint recorded
//! on every vector made with these settings (so a change is detectable by `verify`).

use crate::chunk::ChunkSpec;
use crate::config::{ConfigError, EmbedderConfig, EmbedderKind};
use crate::template::{Template, DEFAULT_TEMPLATE};
use serde::{Deserialize, Serialize};

/// How documents become vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkMode {
    /// One vector per document; vector id = the document `_id` in hex.
    None,
    /// Token-bounded chunks; vector ids `<document _id hex>:<chunk number>`.
    Tokens,
}

/// `[chunking]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkingConfig {
    pub mode: ChunkMode,
    /// Tokens of one chunk, template included; 0 = the model's maximum input.
    pub max_tokens: usize,
    /// Tokens of a chunk repeated at the start of the next.
    pub overlap: usize,
    /// The text each vector embeds; fields `{content}`, `{type}`, `{contentId}`,
    /// `{metadata.<key>}`.
    pub template: String,
}

impl Default for ChunkingConfig {
    fn default() -> Self {
        ChunkingConfig {
            mode: ChunkMode::None,
            max_tokens: 0,
            overlap: 32,
            template: DEFAULT_TEMPLATE.to_string(),
        }
    }
}

/// The most tokens one input may have for a provider (the local model's `max_seq_length`,
/// the hashing embedder's notional window, OpenAI's embedding models' limit).
pub fn model_max_tokens(e: &EmbedderConfig) -> usize {
    match e.provider {
        EmbedderKind::Local => 256,
        EmbedderKind::Hash => 512,
        EmbedderKind::Openai => 8191,
    }
}

/// Special tokens a model adds around every input (`[CLS]` and `[SEP]` for BERT models).
const SPECIAL_TOKENS: usize = 2;

/// The resolved settings: what the worker applies and `verify` expects.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSettings {
    pub template: Template,
    /// None: one vector per document.
    pub chunks: Option<ChunkSpec>,
    /// Recorded as `chunking` in every vector's metadata.
    pub fingerprint: String,
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl ChunkingConfig {
    /// Checks the values against the embedder; each error names its key.
    pub fn validate(&self, embedder: &EmbedderConfig) -> Result<(), ConfigError> {
        self.resolve(embedder).map(|_| ())
    }

    /// The settings these keys stand for; None when nothing differs from one vector per
    /// document embedding its content (today's contract: no extra metadata keys).
    pub fn resolve(&self, embedder: &EmbedderConfig) -> Result<Option<TextSettings>, ConfigError> {
        let template =
            Template::parse(&self.template).map_err(|e| invalid("chunking.template", e))?;
        let limit = model_max_tokens(embedder);
        if self.max_tokens > limit {
            return Err(invalid(
                "chunking.max_tokens",
                format!("{} is more than the model takes ({limit})", self.max_tokens),
            ));
        }
        let max = if self.max_tokens == 0 { limit } else { self.max_tokens };
        let budget = max.saturating_sub(SPECIAL_TOKENS);
        if self.mode == ChunkMode::Tokens {
            if budget < 16 {
                return Err(invalid("chunking.max_tokens", "must be at least 18"));
            }
            if self.overlap >= budget / 2 {
                return Err(invalid(
                    "chunking.overlap",
                    format!("{} must be less than half of a chunk ({budget} tokens)", self.overlap),
                ));
            }
        }
        if self.mode == ChunkMode::None && template.is_identity() {
            return Ok(None);
        }
        let chunks = (self.mode == ChunkMode::Tokens).then_some(ChunkSpec {
            max_tokens: budget,
            overlap: self.overlap,
        });
        let fingerprint = match chunks {
            Some(c) => format!("tokens:{}:{}:{}", c.max_tokens, c.overlap, short_hash(&self.template)),
            None => format!("none:{}", short_hash(&self.template)),
        };
        Ok(Some(TextSettings {
            template,
            chunks,
            fingerprint,
        }))
    }
}

fn short_hash(s: &str) -> String {
    let h = crate::content_hash(s);
    let hex = h.rsplit(':').next().unwrap_or(&h);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> EmbedderConfig {
        EmbedderConfig::default()
    }

    #[test]
    fn the_default_is_todays_contract() {
        assert_eq!(ChunkingConfig::default().resolve(&local()).unwrap(), None);
    }

    #[test]
    fn tokens_mode_defaults_to_the_models_limit() {
        let c = ChunkingConfig {
            mode: ChunkMode::Tokens,
            ..Default::default()
        };
        let s = c.resolve(&local()).unwrap().unwrap();
        assert_eq!(s.chunks.unwrap().max_tokens, 254);
        assert_eq!(s.chunks.unwrap().overlap, 32);
        assert!(s.fingerprint.starts_with("tokens:254:32:"), "{}", s.fingerprint);
    }

    #[test]
    fn a_template_alone_is_recorded() {
        let c = ChunkingConfig {
            template: "{type}: {content}".into(),
            ..Default::default()
        };
        let s = c.resolve(&local()).unwrap().unwrap();
        assert!(s.chunks.is_none());
        assert!(s.fingerprint.starts_with("none:"));
        let other = ChunkingConfig {
            template: "{contentId}: {content}".into(),
            ..Default::default()
        };
        assert_ne!(other.resolve(&local()).unwrap().unwrap().fingerprint, s.fingerprint);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (ChunkingConfig { max_tokens: 300, ..Default::default() }, "chunking.max_tokens"),
            (
                ChunkingConfig { mode: ChunkMode::Tokens, overlap: 200, ..Default::default() },
                "chunking.overlap",
            ),
            (
                ChunkingConfig { mode: ChunkMode::Tokens, max_tokens: 10, ..Default::default() },
                "chunking.max_tokens",
            ),
            (ChunkingConfig { template: "{title}".into(), ..Default::default() }, "chunking.template"),
        ];
        for (c, key) in cases {
            let e = c.validate(&local()).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }
}
