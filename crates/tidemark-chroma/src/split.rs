//! Pure helpers of the upsert path: base64 encoding of embeddings and splitting a batch of
//! records into requests that stay below the body-size and record-count limits.

use crate::{ChromaError, VectorRecord};
use base64::Engine;
use std::ops::Range;

/// Little-endian f32 bytes, base64 (standard alphabet, padded): Chroma's compact embedding form.
pub fn encode_embedding(v: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Bytes a record adds to an upsert body (id, base64 embedding, metadata JSON, separators).
pub(crate) fn record_body_bytes(r: &VectorRecord) -> usize {
    let b64 = (r.embedding.len() * 4).div_ceil(3) * 4;
    let meta = serde_json::to_string(&r.metadata).map_or(0, |s| s.len());
    // quotes, commas, and JSON escaping slack for the id
    r.id.len() * 2 + 4 + b64 + 3 + meta + 1
}

/// Overhead of an upsert body without records (keys, brackets).
const BODY_OVERHEAD: usize = 128;

/// Splits `records` into consecutive ranges, each a request of at most `max_records` records
/// whose body stays under `max_body_bytes`. A single record larger than the limit is an error.
pub fn split_batches(
    records: &[VectorRecord],
    max_body_bytes: usize,
    max_records: usize,
) -> Result<Vec<Range<usize>>, ChromaError> {
    let max_records = max_records.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = BODY_OVERHEAD;
    for (i, r) in records.iter().enumerate() {
        let n = record_body_bytes(r);
        if BODY_OVERHEAD + n > max_body_bytes {
            return Err(ChromaError::Invalid(format!(
                "record {} needs about {} bytes, more than the body limit of {} bytes",
                r.id,
                BODY_OVERHEAD + n,
                max_body_bytes
            )));
        }
        if i > start && (size + n > max_body_bytes || i - start >= max_records) {
            out.push(start..i);
            start = i;
            size = BODY_OVERHEAD;
        }
        size += n;
    }
    if start < records.len() {
        out.push(start..records.len());
    }
    Ok(out)
}

/// Rejects a call whose ids repeat (Chroma would silently keep one of them).
pub(crate) fn check_unique<'a>(ids: impl Iterator<Item = &'a str>) -> Result<(), ChromaError> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(ChromaError::Invalid(format!(
                "duplicate id `{id}` in one request"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, dim: usize) -> VectorRecord {
        VectorRecord {
            id: id.into(),
            embedding: vec![0.5; dim],
            metadata: Default::default(),
        }
    }

    #[test]
    fn base64_is_little_endian_f32() {
        // 1.0f32 = 0x3f800000 -> bytes 00 00 80 3f
        assert_eq!(encode_embedding(&[1.0]), "AACAPw==");
        assert_eq!(encode_embedding(&[]), "");
    }

    #[test]
    fn splits_by_size_and_count() {
        let recs: Vec<_> = (0..10).map(|i| rec(&format!("id{i}"), 100)).collect();
        let one = record_body_bytes(&recs[0]);
        let all = split_batches(&recs, 1 << 20, 1000).unwrap();
        assert_eq!(all, vec![0..10]);
        let by_count = split_batches(&recs, 1 << 20, 4).unwrap();
        assert_eq!(by_count, vec![0..4, 4..8, 8..10]);
        let by_size = split_batches(&recs, BODY_OVERHEAD + 3 * one, 1000).unwrap();
        assert_eq!(by_size, vec![0..3, 3..6, 6..9, 9..10]);
        for r in by_size {
            let bytes: usize = recs[r].iter().map(record_body_bytes).sum();
            assert!(BODY_OVERHEAD + bytes <= BODY_OVERHEAD + 3 * one);
        }
    }

    #[test]
    fn oversized_record_is_an_error() {
        let err = split_batches(&[rec("big", 1000)], 200, 10).unwrap_err();
        assert!(matches!(err, ChromaError::Invalid(_)), "{err}");
    }

    #[test]
    fn duplicates_are_named() {
        let err = check_unique(["a", "b", "a"].into_iter()).unwrap_err();
        assert!(err.to_string().contains("`a`"));
        assert!(check_unique(["a", "b"].into_iter()).is_ok());
    }
}
