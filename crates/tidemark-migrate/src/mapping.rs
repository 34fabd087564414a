//! The mapping file (TOML): which legacy collections become which tidemark documents. One
//! `[collections.<name>]` section per MongoDB collection; the inventory writes a draft, with
//! `"?"` where it could not decide (validation rejects `"?"`, so a person must settle it).
//!
//! ```toml
//! [migration]
//! id = "dual-store-1"
//! [source]
//! uri = "mongodb://127.0.0.1:27017/?replicaSet=rs0"
//! database = "database"
//! chroma_url = "http://127.0.0.1:8000"
//! [collections.duck_transcripts]
//! type = "transcript"
//! text_field = "text"
//! time_field = "timestamp"
//! chroma_collection = "duck_transcripts"
//! vector_model = "nomic-embed-text"
//! vector_dimension = 768
//! reuse_vectors = false
//! ```

use crate::MigrateError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Marks a value the inventory could not decide.
pub const UNDECIDED: &str = "?";

/// Metadata keys (and top-level fields) of the legacy write-status bookkeeping, meaningless
/// after migration: dropped unless the mapping sets `drop_fields` itself.
pub const DEFAULT_DROP_FIELDS: &[&str] = &[
    "vectorWriteSuccess",
    "vectorWriteError",
    "vectorWriteTimestamp",
    "is_embedded",
    "has_meta_data",
    "embedding_status",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub migration: MigrationSection,
    pub source: SourceSection,
    #[serde(default)]
    pub collections: BTreeMap<String, CollectionMapping>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSection {
    /// Names the migration; stored in every document it writes (`metadata.legacy.migration`),
    /// so rollback removes exactly what it created.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// MongoDB URI of the legacy database (read only; never written).
    pub uri: String,
    pub database: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chroma_url: Option<String>,
    #[serde(default = "default_tenant")]
    pub chroma_tenant: String,
    #[serde(default = "default_database")]
    pub chroma_database: String,
}

fn default_tenant() -> String {
    "default_tenant".into()
}
fn default_database() -> String {
    "default_database".into()
}
fn default_id_field() -> String {
    crate::roles::ID_FIELD.into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionMapping {
    /// Leave the whole collection out (its records are accounted as skipped).
    #[serde(default)]
    pub skip: bool,
    /// The tidemark document `type`.
    #[serde(rename = "type", default)]
    pub doc_type: String,
    #[serde(default = "default_id_field")]
    pub id_field: String,
    #[serde(default)]
    pub text_field: String,
    /// Without one, a document's time is its legacy `_id`'s creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_field: Option<String>,
    /// Copy the record's other top-level fields into the metadata.
    #[serde(default = "yes")]
    pub extra_fields: bool,
    /// Keys dropped from the metadata (default: the legacy write-status flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_fields: Option<Vec<String>>,
    /// The legacy Chroma collection holding this collection's vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chroma_collection: Option<String>,
    /// The model that made the legacy vectors, as tidemark names it (e.g. `hash-16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_dimension: Option<usize>,
    /// Copy legacy vectors whose text equals the record's instead of embedding again. Needs
    /// `vector_model` and `vector_dimension` equal to tidemark's embedder.
    #[serde(default)]
    pub reuse_vectors: bool,
}

impl CollectionMapping {
    /// The metadata keys to drop.
    pub fn drop_list(&self) -> Vec<String> {
        match &self.drop_fields {
            Some(v) => v.clone(),
            None => DEFAULT_DROP_FIELDS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// tidemark's embedder, against which vector reuse is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetModel {
    pub model: String,
    pub dimension: usize,
}

fn bad(collection: &str, key: &str, reason: impl std::fmt::Display) -> MigrateError {
    MigrateError::Mapping(format!("[collections.{collection}] {key}: {reason}"))
}

fn valid_migration_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Mapping {
    /// Parses a mapping file's text; `what` names it in errors.
    pub fn parse(text: &str, what: &str) -> Result<Mapping, MigrateError> {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            MigrateError::Mapping(format!("{what} is not a valid mapping file: {msg}"))
        })
    }

    /// Checks what can be checked without the source: ids, required keys, undecided values,
    /// and that vector reuse names tidemark's own model and dimension.
    pub fn validate(&self, target: &TargetModel) -> Result<(), MigrateError> {
        if !valid_migration_id(&self.migration.id) {
            return Err(MigrateError::Mapping(format!(
                "[migration] id: `{}` must be 1-64 characters of letters, digits, `-`, `_`, `.`",
                self.migration.id
            )));
        }
        if self.source.uri.trim().is_empty() || self.source.database.trim().is_empty() {
            return Err(MigrateError::Mapping(
                "[source] uri and database must be set".into(),
            ));
        }
        if self.collections.is_empty() {
            return Err(MigrateError::Mapping(
                "no [collections.<name>] section: nothing to migrate".into(),
            ));
        }
        for (name, c) in &self.collections {
            if !c.skip {
                validate_collection(name, c, target, self.source.chroma_url.is_some())?;
            }
        }
        Ok(())
    }
}

fn validate_collection(
    name: &str,
    c: &CollectionMapping,
    target: &TargetModel,
    has_chroma: bool,
) -> Result<(), MigrateError> {
    let fields = [
        ("type", Some(c.doc_type.as_str())),
        ("id_field", Some(c.id_field.as_str())),
        ("text_field", Some(c.text_field.as_str())),
        ("time_field", c.time_field.as_deref()),
        ("metadata_field", c.metadata_field.as_deref()),
    ];
    for (key, value) in fields {
        match value {
            Some(UNDECIDED) => {
                return Err(bad(
                    name,
                    key,
                    "is `?`: the inventory could not decide; set it (or skip = true)",
                ))
            }
            Some(v) if v.trim().is_empty() => return Err(bad(name, key, "must be set")),
            _ => {}
        }
    }
    if !c.reuse_vectors {
        return Ok(());
    }
    let Some(chroma) = c.chroma_collection.as_deref().filter(|s| *s != UNDECIDED) else {
        return Err(bad(name, "reuse_vectors", "needs chroma_collection"));
    };
    if !has_chroma {
        return Err(bad(name, "reuse_vectors", "needs [source] chroma_url"));
    }
    match (&c.vector_model, c.vector_dimension) {
        (Some(m), Some(d)) if *m == target.model && d == target.dimension => Ok(()),
        (Some(m), Some(d)) => Err(bad(
            name,
            "reuse_vectors",
            format!(
                "legacy collection `{chroma}` was made by `{m}` ({d} dimensions) but tidemark embeds with `{}` ({} dimensions): vectors of another model cannot be reused (set reuse_vectors = false)",
                target.model, target.dimension
            ),
        )),
        _ => Err(bad(
            name,
            "reuse_vectors",
            "needs vector_model and vector_dimension (the model that made the legacy vectors)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[migration]
id = "m-1"
[source]
uri = "mongodb://127.0.0.1:1/"
database = "database"
chroma_url = "http://127.0.0.1:2"
[collections.duck_transcripts]
type = "transcript"
text_field = "text"
time_field = "timestamp"
metadata_field = "metadata"
chroma_collection = "duck_transcripts"
vector_model = "hash-16"
vector_dimension = 16
reuse_vectors = true
[collections.duck_kanban]
type = "card"
text_field = "title"
[collections.junk]
skip = true
"#;

    fn target() -> TargetModel {
        TargetModel {
            model: "hash-16".into(),
            dimension: 16,
        }
    }

    fn err(text: &str) -> String {
        let m = Mapping::parse(text, "m.toml").unwrap();
        m.validate(&target()).unwrap_err().to_string()
    }

    #[test]
    fn good_mapping_parses_with_defaults() {
        let m = Mapping::parse(GOOD, "m.toml").unwrap();
        m.validate(&target()).unwrap();
        let k = &m.collections["duck_kanban"];
        assert_eq!(k.id_field, "id");
        assert!(k.extra_fields);
        assert_eq!(k.drop_list().len(), DEFAULT_DROP_FIELDS.len());
        assert_eq!(m.source.chroma_database, "default_database");
        assert!(m.collections["junk"].skip);
    }

    #[test]
    fn round_trips_through_toml() {
        let m = Mapping::parse(GOOD, "m.toml").unwrap();
        let back = Mapping::parse(&toml::to_string(&m).unwrap(), "again").unwrap();
        assert_eq!(m, back);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Mapping::parse(&GOOD.replace("text_field = \"title\"", "txt = 1"), "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.toml") && e.contains("txt"), "{e}");
    }

    #[test]
    fn undecided_values_are_rejected_naming_collection_and_key() {
        let e = err(&GOOD.replace("text_field = \"title\"", "text_field = \"?\""));
        assert!(
            e.contains("duck_kanban") && e.contains("text_field") && e.contains("`?`"),
            "{e}"
        );
    }

    #[test]
    fn missing_type_is_rejected() {
        let e = err(&GOOD.replace("type = \"card\"\n", ""));
        assert!(e.contains("duck_kanban") && e.contains("type"), "{e}");
    }

    #[test]
    fn reuse_needs_the_same_model_and_dimension() {
        let e = err(&GOOD.replace(
            "vector_model = \"hash-16\"",
            "vector_model = \"nomic-embed-text\"",
        ));
        assert!(
            e.contains("nomic-embed-text") && e.contains("hash-16"),
            "{e}"
        );
        let e = err(&GOOD.replace("vector_dimension = 16", "vector_dimension = 768"));
        assert!(e.contains("768") && e.contains("reuse_vectors"), "{e}");
        let e = err(&GOOD.replace("vector_dimension = 16\n", ""));
        assert!(e.contains("vector_dimension"), "{e}");
        let e = err(&GOOD.replace("chroma_url = \"http://127.0.0.1:2\"\n", ""));
        assert!(e.contains("chroma_url"), "{e}");
    }

    #[test]
    fn migration_id_rules() {
        let e = err(&GOOD.replace("id = \"m-1\"", "id = \"has space\""));
        assert!(e.contains("[migration] id"), "{e}");
        assert!(valid_migration_id("dual-store_2026.1"));
        assert!(!valid_migration_id(""));
    }

    #[test]
    fn no_collections_is_an_error() {
        let text = GOOD.split("[collections.duck_transcripts]").next().unwrap();
        assert!(err(text).contains("nothing to migrate"));
    }
}
