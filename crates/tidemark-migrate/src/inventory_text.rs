//! The inventory as text for a person, and the draft mapping file it suggests (TOML with
//! comments; `"?"` where the inventory could not decide, which validation rejects).

use super::{suggested, CollectionInventory, Inventory};
use crate::mapping::{SourceSection, TargetModel, UNDECIDED};
use std::fmt::Write;

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn role(r: &Option<String>) -> &str {
    r.as_deref().unwrap_or("-")
}

fn collection_text(out: &mut String, c: &CollectionInventory) {
    let _ = writeln!(out, "{} ({} records)", c.collection, c.records);
    let _ = writeln!(
        out,
        "  roles: id={} text={} time={} metadata={}",
        role(&c.roles.id),
        role(&c.roles.text),
        role(&c.roles.time),
        role(&c.roles.metadata)
    );
    let kinds: Vec<String> = c
        .time_kinds
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        out,
        "  time types: {}",
        if kinds.is_empty() {
            "-".into()
        } else {
            kinds.join(", ")
        }
    );
    let skips: Vec<String> = c.skipped.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        out,
        "  duplicates: {} ids ({} extra records); not migratable: {}",
        c.duplicate_ids,
        c.duplicate_records,
        if skips.is_empty() {
            "none".into()
        } else {
            skips.join(", ")
        }
    );
    match &c.chroma {
        Some(m) => {
            let _ = writeln!(
                out,
                "  chroma: {} (by {:?}), model {}, {} dimensions, distance {}",
                m.chroma,
                m.rule,
                c.model.as_deref().unwrap_or("unknown"),
                c.dimension.map_or("?".into(), |d| d.to_string()),
                c.space.as_deref().unwrap_or("?")
            );
        }
        None => {
            let _ = writeln!(out, "  chroma: no matching collection");
        }
    }
    if let Some(v) = &c.coverage {
        let _ = writeln!(
            out,
            "  vectors: {} in Chroma; {} records with a vector, {} missing, {} orphan vectors, {} text mismatches",
            v.vectors, v.with_vector, v.missing, v.orphans, v.text_mismatch
        );
    }
    for n in c.notes.iter().chain(&c.roles.undecided) {
        let _ = writeln!(out, "  note: {n}");
    }
}

pub(super) fn to_text(inv: &Inventory) -> String {
    let mut out = format!(
        "legacy database `{}`: {} collections, {} Chroma collections, {} aliases\n",
        inv.database,
        inv.collections.len(),
        inv.chroma_collections.len(),
        inv.aliases.len()
    );
    for c in &inv.collections {
        collection_text(&mut out, c);
    }
    if !inv.unmatched_chroma.is_empty() {
        let _ = writeln!(
            out,
            "Chroma collections no MongoDB collection matched: {}",
            inv.unmatched_chroma.join(", ")
        );
    }
    out
}

fn draft_vectors(out: &mut String, c: &CollectionInventory, target: &TargetModel) {
    let Some(m) = &c.chroma else {
        let _ = writeln!(
            out,
            "# no legacy Chroma collection matched: the worker embeds every document"
        );
        return;
    };
    let _ = writeln!(out, "chroma_collection = {}", q(&m.chroma));
    match (&c.model, c.dimension) {
        (Some(model), Some(dim)) => {
            let _ = writeln!(out, "vector_model = {}\nvector_dimension = {dim}", q(model));
            let same = *model == target.model && dim == target.dimension;
            if same {
                let _ = writeln!(
                    out,
                    "# made by tidemark's own model: vectors whose text matches are copied"
                );
            } else {
                let _ = writeln!(
                    out,
                    "# tidemark embeds with `{}` ({} dimensions): these vectors cannot be reused",
                    target.model, target.dimension
                );
            }
            let _ = writeln!(out, "reuse_vectors = {same}");
        }
        _ => {
            let _ = writeln!(out, "# model or dimension unknown: set vector_model and vector_dimension to reuse vectors");
            let _ = writeln!(out, "reuse_vectors = false");
        }
    }
}

fn draft_collection(out: &mut String, c: &CollectionInventory, target: &TargetModel) {
    let m = suggested(&c.collection, &c.roles);
    let _ = writeln!(out, "\n[collections.{}]", q(&c.collection));
    let _ = writeln!(
        out,
        "# {} records; {} duplicate ids",
        c.records, c.duplicate_ids
    );
    for n in c.notes.iter().chain(&c.roles.undecided) {
        let _ = writeln!(out, "# CHECK: {n}");
    }
    let _ = writeln!(out, "type = {}", q(&m.doc_type));
    let _ = writeln!(out, "id_field = {}", q(&m.id_field));
    if m.text_field == UNDECIDED {
        let _ = writeln!(
            out,
            "# CHECK: no text field detected; set it or skip = true"
        );
    }
    let _ = writeln!(out, "text_field = {}", q(&m.text_field));
    match &m.time_field {
        Some(t) => {
            let _ = writeln!(out, "time_field = {}", q(t));
        }
        None => {
            let _ = writeln!(
                out,
                "# no time field: documents get their legacy _id's creation time"
            );
        }
    }
    if let Some(md) = &m.metadata_field {
        let _ = writeln!(out, "metadata_field = {}", q(md));
    }
    draft_vectors(out, c, target);
}

/// The draft mapping of an inventory.
pub fn draft_mapping(
    inv: &Inventory,
    source: &SourceSection,
    migration: &str,
    target: &TargetModel,
) -> String {
    let mut out = String::from(
        "# Draft mapping written by `tidemark migrate inventory`. Check every `CHECK` line,\n\
         # replace every \"?\", then `tidemark migrate plan --mapping THIS_FILE`.\n\n[migration]\n",
    );
    let _ = writeln!(out, "id = {}\n\n[source]", q(migration));
    let _ = writeln!(out, "uri = {}", q(&source.uri));
    let _ = writeln!(out, "database = {}", q(&source.database));
    if let Some(u) = &source.chroma_url {
        let _ = writeln!(out, "chroma_url = {}", q(u));
        let _ = writeln!(out, "chroma_tenant = {}", q(&source.chroma_tenant));
        let _ = writeln!(out, "chroma_database = {}", q(&source.chroma_database));
    }
    for c in &inv.collections {
        draft_collection(&mut out, c, target);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Coverage;
    use crate::mapping::Mapping;
    use crate::naming::{ChromaMatch, MatchRule};
    use crate::roles::Roles;
    use std::collections::BTreeMap;

    fn inv(roles: Roles, model: Option<&str>) -> Inventory {
        Inventory {
            database: "database".into(),
            aliases: vec![],
            chroma_collections: vec!["duck_x".into()],
            unmatched_chroma: vec![],
            collections: vec![CollectionInventory {
                collection: "Duck_x".into(),
                records: 3,
                roles,
                time_kinds: BTreeMap::new(),
                duplicate_ids: 0,
                duplicate_records: 0,
                skipped: BTreeMap::new(),
                chroma: Some(ChromaMatch {
                    chroma: "duck_x".into(),
                    rule: MatchRule::SameName,
                    others: vec![],
                    alias: None,
                }),
                notes: vec!["a note".into()],
                coverage: Some(Coverage::default()),
                model: model.map(str::to_string),
                dimension: Some(16),
                space: Some("l2".into()),
            }],
        }
    }

    fn source() -> SourceSection {
        SourceSection {
            uri: "mongodb://h:1/".into(),
            database: "database".into(),
            chroma_url: Some("http://h:2".into()),
            chroma_tenant: "default_tenant".into(),
            chroma_database: "default_database".into(),
        }
    }

    fn target() -> TargetModel {
        TargetModel {
            model: "hash-16".into(),
            dimension: 16,
        }
    }

    fn roles() -> Roles {
        Roles {
            id: Some("id".into()),
            text: Some("text".into()),
            time: Some("timestamp".into()),
            metadata: Some("metadata".into()),
            undecided: vec![],
        }
    }

    #[test]
    fn draft_of_a_decided_collection_is_a_valid_mapping() {
        let text = draft_mapping(&inv(roles(), Some("hash-16")), &source(), "m-1", &target());
        let m = Mapping::parse(&text, "draft").unwrap();
        m.validate(&target()).unwrap();
        let c = &m.collections["Duck_x"];
        assert_eq!(c.doc_type, "x");
        assert!(c.reuse_vectors, "same model: reuse proposed\n{text}");
        assert!(text.contains("# CHECK: a note"), "{text}");
    }

    #[test]
    fn other_model_is_not_reused_and_undecided_text_is_rejected() {
        let text = draft_mapping(
            &inv(roles(), Some("nomic-embed-text")),
            &source(),
            "m-1",
            &target(),
        );
        let m = Mapping::parse(&text, "draft").unwrap();
        assert!(!m.collections["Duck_x"].reuse_vectors);
        let mut r = roles();
        r.text = None;
        let text = draft_mapping(&inv(r, None), &source(), "m-1", &target());
        let e = Mapping::parse(&text, "draft")
            .unwrap()
            .validate(&target())
            .unwrap_err();
        assert!(e.to_string().contains("text_field"), "{e}");
    }

    #[test]
    fn text_report_names_roles_and_vectors() {
        let t = to_text(&inv(roles(), Some("hash-16")));
        assert!(t.contains("Duck_x (3 records)"), "{t}");
        assert!(
            t.contains("id=id text=text time=timestamp metadata=metadata"),
            "{t}"
        );
        assert!(
            t.contains("model hash-16, 16 dimensions, distance l2"),
            "{t}"
        );
    }
}
