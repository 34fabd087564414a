//! Feature-hashing embedder: deterministic, fast, and NOT semantic.
//!
//! Each lowercase alphanumeric token is hashed (FNV-1a, 64 bit) to a dimension and a sign; the
//! counts are L2-normalised. Texts sharing words get similar vectors, nothing more. It exists so
//! load tests and benchmarks measure the pipeline, not the model.

use crate::{EmbedError, Embedder};

/// A feature-hashing embedder of a fixed dimension; model id `hash-<dimension>`.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dimension: usize,
    model_id: String,
}

impl HashEmbedder {
    /// # Panics
    /// If `dimension` is zero (the configuration check rejects that earlier).
    pub fn new(dimension: usize) -> Self {
        assert!(dimension > 0, "hash embedder dimension must be at least 1");
        HashEmbedder {
            dimension,
            model_id: format!("hash-{dimension}"),
        }
    }

    /// Embeds one text synchronously.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dimension];
        for token in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
        {
            let h = fnv1a(token);
            let idx = (h % self.dimension as u64) as usize;
            let sign = if (h >> 63) & 1 == 1 { -1.0 } else { 1.0 };
            v[idx] += sign;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            // No token at all: a fixed unit vector keeps the output valid for Chroma.
            v[0] = 1.0;
        }
        v
    }
}

/// FNV-1a over the lowercase characters of a token.
fn fnv1a(token: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in token.chars().flat_map(char::to_lowercase) {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[async_trait::async_trait]
impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_normalised_and_sized() {
        let e = HashEmbedder::new(64);
        let a = e.embed_one("The quick brown fox");
        assert_eq!(a.len(), 64);
        assert_eq!(a, e.embed_one("the QUICK brown fox!"));
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(e.model_id(), "hash-64");
    }

    #[test]
    fn shared_words_are_closer_than_disjoint_ones() {
        let e = HashEmbedder::new(384);
        let a = e.embed_one("bread dough sticks to the table");
        let b = e.embed_one("sticky bread dough on a floured table");
        let c = e.embed_one("planets orbit distant stars");
        assert!(cos(&a, &b) > cos(&a, &c));
    }

    #[test]
    fn empty_text_still_gives_a_unit_vector() {
        let v = HashEmbedder::new(8).embed_one("  ... ");
        assert!((cos(&v, &v) - 1.0).abs() < 1e-6);
    }
}
