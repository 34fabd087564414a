//! Naming rules: the Chroma collection per embedding model and the vector id per document.

use bson::oid::ObjectId;

/// Vector id in Chroma: the document's `_id` as 24 lowercase hex characters.
pub fn vector_id(document_id: &ObjectId) -> String {
    document_id.to_hex()
}

/// Vector id of chunk `chunk` of a document: `<_id hex>:<chunk>`.
pub fn chunk_vector_id(document_id: &ObjectId, chunk: usize) -> String {
    format!("{}:{chunk}", document_id.to_hex())
}

/// The document a vector id belongs to (a plain `_id` hex, or a chunk id).
pub fn document_of_vector(id: &str) -> Option<ObjectId> {
    ObjectId::parse_str(id.split(':').next()?).ok()
}

/// A model id reduced to `[a-z0-9-]`, e.g. `sentence-transformers/all-MiniLM-L6-v2` becomes
/// `sentence-transformers-all-minilm-l6-v2`. Runs of other characters become one `-`.
pub fn model_slug(model: &str) -> String {
    let mut out = String::with_capacity(model.len());
    let mut dash = false;
    for c in model.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The single naming rule for Chroma collections: `<namespace>__<model-slug>`.
/// One collection per embedding model, so vectors of different models never mix.
pub fn collection_name(namespace: &str, model: &str) -> String {
    format!("{namespace}__{}", model_slug(model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rules() {
        assert_eq!(
            model_slug("sentence-transformers/all-MiniLM-L6-v2"),
            "sentence-transformers-all-minilm-l6-v2"
        );
        assert_eq!(model_slug("  a//b__c  "), "a-b-c");
        assert_eq!(collection_name("docs", "hash-384"), "docs__hash-384");
    }

    #[test]
    fn chunk_ids_name_their_document() {
        let id = ObjectId::parse_str("65f0c0ffee00000000000001").unwrap();
        let c = chunk_vector_id(&id, 7);
        assert_eq!(c, "65f0c0ffee00000000000001:7");
        assert_eq!(document_of_vector(&c), Some(id));
        assert_eq!(document_of_vector(&vector_id(&id)), Some(id));
        assert_eq!(document_of_vector("legacy-42"), None);
    }

    #[test]
    fn vector_id_is_hex() {
        let id = ObjectId::parse_str("65f0c0ffee00000000000001").unwrap();
        assert_eq!(vector_id(&id), "65f0c0ffee00000000000001");
    }
}
