//! all-MiniLM-L6-v2 in process: the Hugging Face tokenizer plus one of two engines, read from a
//! model folder (tokenizer.json, config.json, 1_Pooling/config.json and, optionally,
//! sentence_bert_config.json): ONNX Runtime on model.onnx / model_int8.onnx ([`crate::onnx`],
//! the default), or candle's BERT on model.safetensors. Mean pooling over the attention mask and
//! L2 normalisation, as sentence-transformers does. Nothing is downloaded: a missing file is a
//! clear error.
//!
//! A call's texts are tokenized once, sorted by length and run in forward passes of up to
//! [`MAX_BATCH`] texts each padded only to the longest of its pass, so a short text never pays
//! for a long one's padding (masked positions do not change a vector); the vectors come back
//! in the callers' order.

use crate::{EmbedError, Embedder};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use tidemark_core::config::LocalEngine;
use tidemark_core::config::{local_model_id, EmbedderConfig};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

/// Model id of the fp32 engines (used in the Chroma collection name); the int8 engine's is
/// [`local_model_id`]`(OnnxInt8)`.
pub const MODEL_ID: &str = "all-MiniLM-L6-v2";
/// Texts per forward pass.
pub const MAX_BATCH: usize = 32;

pub use crate::metrics::TRUNCATED_TEXTS;

/// The local sentence embedder (clones share the model).
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
}

/// What runs the forward passes.
enum Model {
    Candle(Box<BertModel>, Device),
    Onnx(crate::onnx::OnnxModel),
}

struct Inner {
    model: Model,
    /// The hidden size: every vector's length.
    dimension: usize,
    model_id: &'static str,
    /// Truncates at `max_len`; pads nothing (each forward pass pads to its own longest).
    tokenizer: Tokenizer,
    pad_id: u32,
    /// The same tokenizer without truncation or padding, for counting tokens (chunking).
    counter: Tokenizer,
    max_len: usize,
}

fn file(dir: &Path, name: &str) -> Result<PathBuf, EmbedError> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(EmbedError::Config(format!(
            "model folder {} has no {name} (run `scripts/services up` to fetch all-MiniLM-L6-v2, or set embedder.model_dir)",
            dir.display()
        )))
    }
}

fn cfg_err(what: &str, e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Config(format!("{what}: {e}"))
}

impl LocalEmbedder {
    /// Loads the configured engine: `embedder.engine` on `embedder.model_dir`, with
    /// `embedder.onnx_runtime` for the ONNX engines.
    pub fn from_config(cfg: &EmbedderConfig) -> Result<Self, EmbedError> {
        Self::load(&cfg.model_dir, cfg.engine, &cfg.onnx_runtime)
    }

    /// Loads the model from `model_dir` with `engine` (`runtime` is the ONNX Runtime library;
    /// candle ignores it). Fails with `EmbedError::Config` naming a missing or unreadable
    /// file, or a pooling mode other than mean pooling.
    pub fn load(model_dir: &Path, engine: LocalEngine, runtime: &Path) -> Result<Self, EmbedError> {
        let config_text = std::fs::read_to_string(file(model_dir, "config.json")?)
            .map_err(|e| cfg_err("config.json", e))?;
        let config: BertConfig =
            serde_json::from_str(&config_text).map_err(|e| cfg_err("config.json", e))?;
        let pooling: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(file(model_dir, "1_Pooling/config.json")?)
                .map_err(|e| cfg_err("1_Pooling/config.json", e))?,
        )
        .map_err(|e| cfg_err("1_Pooling/config.json", e))?;
        if pooling["pooling_mode_mean_tokens"] != serde_json::Value::Bool(true) {
            return Err(EmbedError::Config(
                "1_Pooling/config.json: only mean pooling is supported".into(),
            ));
        }
        // sentence-transformers truncates at max_seq_length (256 for this model), not at the
        // tokenizer file's own setting.
        let max_len = std::fs::read_to_string(model_dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["max_seq_length"].as_u64())
            .map(|n| n as usize)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);

        let mut tokenizer = Tokenizer::from_file(file(model_dir, "tokenizer.json")?)
            .map_err(|e| cfg_err("tokenizer.json", e))?;
        let mut counter = tokenizer.clone();
        counter.with_padding(None);
        counter
            .with_truncation(None)
            .map_err(|e| cfg_err("tokenizer truncation", e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| cfg_err("tokenizer truncation", e))?;
        tokenizer.with_padding(None);
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);

        let model = match engine {
            LocalEngine::Candle => load_candle(model_dir, &config)?,
            LocalEngine::Onnx | LocalEngine::OnnxInt8 => {
                let name = if engine == LocalEngine::Onnx {
                    "model.onnx"
                } else {
                    "model_int8.onnx"
                };
                let graph = model_dir.join(name);
                Model::Onnx(crate::onnx::OnnxModel::load(
                    runtime,
                    &graph,
                    config.hidden_size,
                )?)
            }
        };
        Ok(LocalEmbedder {
            inner: Arc::new(Inner {
                model,
                dimension: config.hidden_size,
                model_id: local_model_id(engine),
                tokenizer,
                pad_id,
                counter,
                max_len,
            }),
        })
    }

    /// Embeds texts synchronously (CPU-bound; call from a blocking thread), in passes formed
    /// by length.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_in(texts, PassOrder::ByLength)
    }

    /// Like [`LocalEmbedder::embed_blocking`], with the passes formed in `order`
    /// ([`PassOrder::AsGiven`] is how the embedder worked before sorting; the benchmark
    /// compares the two). The vectors are the same either way.
    pub fn embed_in(
        &self,
        texts: &[String],
        order: PassOrder,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self.inner.encode(texts)?;
        let mut idx: Vec<usize> = (0..encodings.len()).collect();
        if order == PassOrder::ByLength {
            idx.sort_by_key(|&i| encodings[i].get_ids().len());
        }
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); encodings.len()];
        for pass in idx.chunks(MAX_BATCH) {
            let batch: Vec<&Encoding> = pass.iter().map(|&i| &encodings[i]).collect();
            for (&i, v) in pass.iter().zip(self.inner.forward(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

fn load_candle(model_dir: &Path, config: &BertConfig) -> Result<Model, EmbedError> {
    let device = Device::Cpu;
    let weights = file(model_dir, "model.safetensors")?;
    // SAFETY: the file is memory-mapped read-only; it must not be modified while loaded,
    // which holds for a model folder.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &device) }
        .map_err(|e| cfg_err("model.safetensors", e))?;
    let model = BertModel::load(vb, config).map_err(|e| cfg_err("model.safetensors", e))?;
    Ok(Model::Candle(Box::new(model), device))
}

/// How a call's texts are grouped into forward passes of up to [`MAX_BATCH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassOrder {
    /// Sorted by token count, so each pass pads little (the default).
    ByLength,
    /// In the order given.
    AsGiven,
}

impl Inner {
    /// Tokenizes (truncating at `max_len`, counting what was cut), without padding.
    fn encode(&self, texts: &[String]) -> Result<Vec<Encoding>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Permanent(format!("tokenizer: {e}")))?;
        let truncated = encodings
            .iter()
            .filter(|e| !e.get_overflowing().is_empty())
            .count();
        if truncated > 0 {
            TRUNCATED_TEXTS.inc_by(truncated as u64);
            tracing::debug!(
                truncated,
                max_tokens = self.max_len,
                "texts truncated at the model's maximum sequence length"
            );
        }
        Ok(encodings)
    }

    /// One forward pass, the texts padded to the longest of them.
    fn forward(&self, encodings: &[&Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let n = encodings.len();
        let len = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0);
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in encodings {
            let pad = len - e.get_ids().len();
            ids.extend_from_slice(e.get_ids());
            ids.extend(std::iter::repeat_n(self.pad_id, pad));
            mask.extend_from_slice(e.get_attention_mask());
            mask.extend(std::iter::repeat_n(0u32, pad));
        }
        let hidden = match &self.model {
            Model::Candle(bert, device) => candle_forward(bert, device, ids, &mask, n, len)?,
            Model::Onnx(onnx) => {
                let ids = ids.into_iter().map(i64::from).collect();
                let wide = mask.iter().map(|&m| i64::from(m)).collect();
                onnx.forward(ids, wide, n, len)?
            }
        };
        Ok(mean_pool(&hidden, &mask, len, self.dimension))
    }
}

/// candle's forward pass: the last hidden state, (n, len, dim) row-major.
fn candle_forward(
    bert: &BertModel,
    device: &Device,
    ids: Vec<u32>,
    mask: &[u32],
    n: usize,
    len: usize,
) -> Result<Vec<f32>, EmbedError> {
    let model_err = |e: candle_core::Error| EmbedError::Permanent(format!("model: {e}"));
    let ids = Tensor::from_vec(ids, (n, len), device).map_err(model_err)?;
    let mask = Tensor::from_slice(mask, (n, len), device).map_err(model_err)?;
    let type_ids = ids.zeros_like().map_err(model_err)?;
    bert.forward(&ids, &type_ids, Some(&mask))
        .and_then(|h| h.flatten_all())
        .and_then(|h| h.to_vec1::<f32>())
        .map_err(model_err)
}

/// Mean of each text's hidden states over its unmasked positions, L2-normalised (as
/// sentence-transformers' Pooling + Normalize). `hidden` is (texts, len, dim) row-major.
fn mean_pool(hidden: &[f32], mask: &[u32], len: usize, dim: usize) -> Vec<Vec<f32>> {
    hidden
        .chunks(len * dim)
        .zip(mask.chunks(len))
        .map(|(rows, m)| {
            let mut v = vec![0f32; dim];
            let mut count = 0f32;
            for (row, &keep) in rows.chunks(dim).zip(m) {
                if keep != 0 {
                    count += 1.0;
                    v.iter_mut().zip(row).for_each(|(a, b)| *a += b);
                }
            }
            let count = count.max(1e-9);
            v.iter_mut().for_each(|a| *a /= count);
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|a| *a /= norm);
            v
        })
        .collect()
}

#[async_trait::async_trait]
impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        self.inner.model_id
    }

    fn dimension(&self) -> usize {
        self.inner.dimension
    }

    /// The model's own WordPiece count, without `[CLS]`/`[SEP]`.
    fn count_tokens(&self, text: &str) -> usize {
        match self.inner.counter.encode(text, false) {
            Ok(e) => e.get_ids().len(),
            Err(_) => tidemark_core::chunk::TokenCounter::count(
                &tidemark_core::chunk::ApproxCounter,
                text,
            ),
        }
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let this = self.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || this.embed_blocking(&texts))
            .await
            .map_err(|e| EmbedError::Transient(format!("embedding task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::mean_pool;

    #[test]
    fn pooling_ignores_masked_positions_and_normalises() {
        // Two texts of 3 positions, dim 2; the second has one padded position holding junk.
        let hidden = [
            1.0, 0.0, 3.0, 0.0, 2.0, 0.0, //
            0.0, 2.0, 0.0, 4.0, 100.0, 100.0,
        ];
        let mask = [1, 1, 1, 1, 1, 0];
        let v = mean_pool(&hidden, &mask, 3, 2);
        assert_eq!(v, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }

    #[test]
    fn pooling_of_unequal_components_keeps_their_ratio() {
        let hidden = [3.0, 4.0, 3.0, 4.0];
        let v = mean_pool(&hidden, &[1, 1], 2, 2);
        assert!((v[0][0] - 0.6).abs() < 1e-6 && (v[0][1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn a_text_with_nothing_unmasked_is_a_zero_vector_not_a_nan() {
        let v = mean_pool(&[5.0, 5.0], &[0], 1, 2);
        assert_eq!(v, vec![vec![0.0, 0.0]]);
    }
}
