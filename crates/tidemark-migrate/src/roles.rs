//! Field-role detection: from statistics of a collection's top-level fields, which field is the
//! record id, the text, the time and the metadata object. What cannot be decided is said so,
//! for a person to settle in the mapping file.

use bson::{Bson, Document};
use serde::Serialize;
use std::collections::BTreeMap;

/// Text field candidates, in order of preference (kanban cards use `title`).
pub const TEXT_FIELDS: &[&str] = &["text", "content", "title"];
/// Time field candidates, in order of preference.
pub const TIME_FIELDS: &[&str] = &["timestamp", "createdAt", "created_at", "updatedAt"];
/// The legacy id field.
pub const ID_FIELD: &str = "id";
/// The legacy metadata object.
pub const METADATA_FIELD: &str = "metadata";

/// What was seen of one top-level field.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FieldStat {
    pub present: u64,
    pub strings: u64,
    pub numbers: u64,
    pub dates: u64,
    pub objects: u64,
    /// Total length of the string values, for the average.
    pub string_bytes: u64,
}

/// Statistics of the top-level fields of the records seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FieldStats {
    pub records: u64,
    pub fields: BTreeMap<String, FieldStat>,
}

impl FieldStats {
    /// Counts one record.
    pub fn observe(&mut self, doc: &Document) {
        self.records += 1;
        for (k, v) in doc {
            if k == "_id" {
                continue;
            }
            let s = self.fields.entry(k.clone()).or_default();
            if matches!(v, Bson::Null) {
                continue;
            }
            s.present += 1;
            match v {
                Bson::String(t) => {
                    s.strings += 1;
                    s.string_bytes += t.len() as u64;
                }
                Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => s.numbers += 1,
                Bson::DateTime(_) => s.dates += 1,
                Bson::Document(_) => s.objects += 1,
                _ => {}
            }
        }
    }

    fn get(&self, name: &str) -> Option<&FieldStat> {
        self.fields.get(name)
    }

    /// More than half of the records have the field (not null).
    fn mostly(&self, name: &str, count: impl Fn(&FieldStat) -> u64) -> bool {
        self.get(name)
            .is_some_and(|s| count(s) * 2 > self.records && self.records > 0)
    }
}

/// The detected roles. `None` for a role means none was found; `undecided` says why a person
/// should look.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Roles {
    pub id: Option<String>,
    pub text: Option<String>,
    pub time: Option<String>,
    pub metadata: Option<String>,
    pub undecided: Vec<String>,
}

fn detect_text(stats: &FieldStats, roles: &mut Roles) {
    let known: Vec<&str> = TEXT_FIELDS
        .iter()
        .copied()
        .filter(|f| stats.mostly(f, |s| s.strings))
        .collect();
    if let Some(first) = known.first() {
        roles.text = Some(first.to_string());
        if known.len() > 1 {
            roles.undecided.push(format!(
                "several text fields fit ({}); `{first}` chosen",
                known.join(", ")
            ));
        }
        return;
    }
    // No known name: the string field with the longest values, for a person to confirm.
    let best = stats
        .fields
        .iter()
        .filter(|(k, s)| k.as_str() != ID_FIELD && s.strings * 2 > stats.records)
        .max_by_key(|(_, s)| s.string_bytes / s.strings.max(1));
    match best {
        Some((k, _)) => {
            roles.text = Some(k.clone());
            roles.undecided.push(format!(
                "no field named {} holds text; `{k}` (longest strings) is a guess",
                TEXT_FIELDS.join("/")
            ));
        }
        None => roles
            .undecided
            .push("no text field found: set text_field".to_string()),
    }
}

fn detect_time(stats: &FieldStats, roles: &mut Roles) {
    let present: Vec<&str> = TIME_FIELDS
        .iter()
        .copied()
        .filter(|f| stats.mostly(f, |s| s.present))
        .collect();
    if let Some(first) = present.first() {
        roles.time = Some(first.to_string());
        if present.len() > 1 {
            roles.undecided.push(format!(
                "several time fields ({}); `{first}` chosen",
                present.join(", ")
            ));
        }
    } else if let Some(f) = TIME_FIELDS.iter().find(|f| stats.get(f).is_some()) {
        roles.time = Some(f.to_string());
        roles.undecided.push(format!(
            "time field `{f}` is present in only some records (the others get their _id's time)"
        ));
    }
}

/// Detects the roles from the statistics.
pub fn detect(stats: &FieldStats) -> Roles {
    let mut roles = Roles::default();
    if stats.mostly(ID_FIELD, |s| s.strings + s.numbers) {
        roles.id = Some(ID_FIELD.to_string());
    } else {
        roles
            .undecided
            .push("no `id` field in most records: set id_field".to_string());
    }
    detect_text(stats, &mut roles);
    detect_time(stats, &mut roles);
    if stats.mostly(METADATA_FIELD, |s| s.objects) {
        roles.metadata = Some(METADATA_FIELD.to_string());
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn stats(docs: &[Document]) -> FieldStats {
        let mut s = FieldStats::default();
        for d in docs {
            s.observe(d);
        }
        s
    }

    #[test]
    fn classic_record() {
        let docs = vec![
            doc! {"id": "a", "text": "hello world", "timestamp": 1_i64, "metadata": {"k": 1}},
            doc! {"id": "b", "text": "more", "timestamp": "2024-01-01", "metadata": {}},
        ];
        let r = detect(&stats(&docs));
        assert_eq!(r.id.as_deref(), Some("id"));
        assert_eq!(r.text.as_deref(), Some("text"));
        assert_eq!(r.time.as_deref(), Some("timestamp"));
        assert_eq!(r.metadata.as_deref(), Some("metadata"));
        assert!(r.undecided.is_empty(), "{:?}", r.undecided);
    }

    #[test]
    fn raw_chat_shape_numeric_id_content_created_at() {
        let docs = vec![
            doc! {"id": 1_i64, "content": "hi", "created_at": "2024-05-24 17:03:12", "author_name": "x"},
            doc! {"id": 2_i64, "content": "yo", "created_at": "2024-05-24 17:04:12", "author_name": "y"},
        ];
        let r = detect(&stats(&docs));
        assert_eq!(r.id.as_deref(), Some("id"));
        assert_eq!(r.text.as_deref(), Some("content"));
        assert_eq!(r.time.as_deref(), Some("created_at"));
        assert_eq!(r.metadata, None);
    }

    #[test]
    fn kanban_cards_title_no_time() {
        let docs = vec![
            doc! {"id": "c1", "title": "Fix login", "column": "todo", "link": "http://x"},
            doc! {"id": "c2", "title": "Ship it", "column": "done", "link": "http://y"},
        ];
        let r = detect(&stats(&docs));
        assert_eq!(r.text.as_deref(), Some("title"));
        assert_eq!(r.time, None);
        assert!(r.undecided.is_empty());
    }

    #[test]
    fn several_candidates_are_flagged() {
        let docs = vec![
            doc! {"id": "a", "text": "t", "content": "c", "createdAt": 1_i64, "updatedAt": 2_i64},
        ];
        let r = detect(&stats(&docs));
        assert_eq!(r.text.as_deref(), Some("text"));
        assert_eq!(r.time.as_deref(), Some("createdAt"));
        assert_eq!(r.undecided.len(), 2, "{:?}", r.undecided);
    }

    #[test]
    fn unknown_text_field_is_a_guess_and_missing_id_is_said() {
        let docs = vec![
            doc! {"key": "a", "body": "a long body of text", "tag": "x"},
            doc! {"key": "b", "body": "another long body", "tag": "y"},
        ];
        let r = detect(&stats(&docs));
        assert_eq!(r.id, None);
        assert_eq!(r.text.as_deref(), Some("body"));
        assert!(r.undecided.iter().any(|u| u.contains("id_field")));
        assert!(r.undecided.iter().any(|u| u.contains("guess")));
    }

    #[test]
    fn text_mostly_not_string_is_not_text() {
        let docs = vec![
            doc! {"id": "a", "text": 1, "content": "real"},
            doc! {"id": "b", "text": 2, "content": "text"},
        ];
        let r = detect(&stats(&docs));
        assert_eq!(r.text.as_deref(), Some("content"));
    }

    #[test]
    fn time_in_some_records_only() {
        let docs = vec![
            doc! {"id": "a", "text": "x", "timestamp": 1_i64},
            doc! {"id": "b", "text": "y"},
            doc! {"id": "c", "text": "z"},
        ];
        let r = detect(&stats(&docs));
        assert_eq!(r.time.as_deref(), Some("timestamp"));
        assert!(r.undecided[0].contains("only some"));
    }
}
