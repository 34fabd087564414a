//! Content hashing: the `contentHash` field that lets the worker skip re-embedding unchanged text.

use sha2::{Digest, Sha256};

/// Prefix naming the algorithm, so that a future change of hash is detectable in stored data.
pub const HASH_PREFIX: &str = "sha256:";

/// Hash of a document's content, as stored in `documents.contentHash`, the outbox entry and the
/// vector's metadata. Only the content is hashed: a metadata-only change keeps the hash, so the
/// worker can update the vector's metadata without embedding again.
pub fn content_hash(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!("{HASH_PREFIX}{}", hex::encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        assert_eq!(
            content_hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn differs_on_any_change() {
        assert_ne!(content_hash("hello"), content_hash("hello "));
    }
}
