//! Unit tests of the record normalisation and metadata cleaning.

use super::*;
use bson::doc;
use serde_json::json;

fn mapping(text: &str, time: Option<&str>, meta: Option<&str>) -> CollectionMapping {
    CollectionMapping {
        skip: false,
        doc_type: "note".into(),
        id_field: "id".into(),
        text_field: text.into(),
        time_field: time.map(str::to_string),
        metadata_field: meta.map(str::to_string),
        extra_fields: true,
        drop_fields: None,
        chroma_collection: None,
        vector_model: None,
        vector_dimension: None,
        reuse_vectors: false,
    }
}

fn run(record: Document, m: &CollectionMapping) -> Result<Candidate, Skipped> {
    let limits = Limits::default();
    normalise(
        &record,
        &Context {
            collection: "duck_x",
            migration: "m1",
            mapping: m,
            limits: &limits,
        },
    )
}

#[test]
fn classic_record_becomes_a_document() {
    let oid = ObjectId::new();
    let m = mapping("text", Some("timestamp"), Some("metadata"));
    let c = run(
        doc! {"_id": oid, "id": "a1", "text": "hello", "timestamp": "2024-05-24 17:03:12.345000+00:00",
              "metadata": {"lang": "en", "vectorWriteSuccess": true, "vectorWriteError": "x",
                           "vectorWriteTimestamp": 5_i64, "timestamp": 1_716_570_192_345_i64}},
        &m,
    )
    .unwrap();
    assert_eq!(c.doc.content_id, "duck_x:a1");
    assert_eq!(c.doc.doc_type, "note");
    assert_eq!(c.doc.content, "hello");
    assert_eq!(c.time.timestamp_millis(), 1_716_570_192_345);
    assert_eq!(c.doc.timestamp, Some(c.time));
    assert_eq!(c.time_kind, TimeKind::PythonStr);
    assert_eq!(
        c.doc.metadata,
        json!({"lang": "en", "timestamp": 1_716_570_192_345_i64, "legacy": {
            "collection": "duck_x", "id": "a1", "_id": oid.to_hex(), "migration": "m1",
            "timeField": "timestamp", "time": "2024-05-24 17:03:12.345000+00:00"}})
    );
}

#[test]
fn raw_chat_shape_flags_dropped_and_fields_kept() {
    let m = mapping("content", Some("created_at"), None);
    let c = run(
        doc! {"_id": ObjectId::new(), "id": 42_i64, "content": "hi all", "created_at": "2024-05-24 17:03:12",
              "author_name": "ann", "channel_name": "general", "embedding_status": {"2024-05-24": "done"},
              "is_embedded": true, "has_meta_data": false},
        &m,
    )
    .unwrap();
    assert_eq!(c.id, "42");
    assert_eq!(c.doc.content_id, "duck_x:42");
    let md = c.doc.metadata.as_object().unwrap();
    assert_eq!(md["author_name"], "ann");
    assert_eq!(md["channel_name"], "general");
    for k in [
        "embedding_status",
        "is_embedded",
        "has_meta_data",
        "content",
        "created_at",
        "id",
    ] {
        assert!(!md.contains_key(k), "{k} kept: {md:?}");
    }
}

#[test]
fn cards_without_time_use_the_object_id_time() {
    let oid = ObjectId::new();
    let m = mapping("title", None, None);
    let c = run(
        doc! {"_id": oid, "id": "c1", "title": "Fix it", "column": "todo", "link": "http://x/1"},
        &m,
    )
    .unwrap();
    assert_eq!(c.time, oid.timestamp());
    assert_eq!(c.time_kind, TimeKind::Missing);
    let md = c.doc.metadata.as_object().unwrap();
    assert_eq!(md["column"], "todo");
    assert!(!md["legacy"].as_object().unwrap().contains_key("timeField"));
}

#[test]
fn skip_reasons() {
    let m = mapping("text", Some("timestamp"), Some("metadata"));
    let reason = |d: Document| run(d, &m).unwrap_err().reason;
    assert_eq!(
        reason(
            doc! {"_id": ObjectId::new(), "id": "i", "text": "http://img/1.png", "metadata": {"type": "image"}}
        ),
        SkipReason::Image
    );
    assert_eq!(
        reason(doc! {"_id": ObjectId::new(), "id": "i", "text": "  "}),
        SkipReason::EmptyText
    );
    assert_eq!(
        reason(doc! {"_id": ObjectId::new(), "id": "i"}),
        SkipReason::EmptyText
    );
    assert_eq!(
        reason(doc! {"_id": ObjectId::new(), "id": "i", "text": 5}),
        SkipReason::EmptyText
    );
    assert_eq!(
        reason(doc! {"_id": ObjectId::new(), "text": "t"}),
        SkipReason::NoId
    );
    assert_eq!(
        reason(doc! {"_id": ObjectId::new(), "id": "", "text": "t"}),
        SkipReason::NoId
    );
    let bad = run(
        doc! {"_id": ObjectId::new(), "id": "i", "text": "t", "timestamp": "soon"},
        &m,
    )
    .unwrap_err();
    assert_eq!(bad.reason, SkipReason::BadTime);
    assert!(bad.detail.unwrap().contains("soon"));
    let long = "x".repeat(600);
    let inv = run(doc! {"_id": ObjectId::new(), "id": long, "text": "t"}, &m).unwrap_err();
    assert_eq!(inv.reason, SkipReason::Invalid);
    assert!(inv.detail.unwrap().contains("contentId"));
    let mut skipped = m.clone();
    skipped.skip = true;
    assert_eq!(
        run(
            doc! {"_id": ObjectId::new(), "id": "i", "text": "t"},
            &skipped
        )
        .unwrap_err()
        .reason,
        SkipReason::CollectionSkipped
    );
}

#[test]
fn metadata_keys_and_values_made_safe() {
    let m = mapping("text", None, Some("metadata"));
    let oid = ObjectId::new();
    let when = DateTime::from_millis(1_716_570_192_345);
    let c = run(
        doc! {"_id": ObjectId::new(), "id": "i", "text": "t", "metadata": {
        "a.b": 1, "$weird": 2, "when": when, "ref": oid, "nested": {"x.y": [1, {"k": null}]},
        "gone": null, "legacy": "own"}},
        &m,
    )
    .unwrap();
    let md = c.doc.metadata.as_object().unwrap();
    assert_eq!(md["a_b"], 1);
    assert_eq!(md["_weird"], 2);
    assert_eq!(md["when"], "2024-05-24T17:03:12.345Z");
    assert_eq!(md["ref"], oid.to_hex());
    assert_eq!(md["nested"], json!({"x_y": [1, {"k": null}]}));
    assert!(!md.contains_key("gone"));
    assert_eq!(md[LEGACY_RENAMED], "own");
    assert_eq!(md[LEGACY_KEY]["id"], "i");
}

#[test]
fn custom_drop_list_and_no_extra_fields() {
    let mut m = mapping("text", None, Some("metadata"));
    m.drop_fields = Some(vec!["secret".into()]);
    m.extra_fields = false;
    let c = run(
        doc! {"_id": ObjectId::new(), "id": "i", "text": "t", "top": 1,
        "metadata": {"secret": 1, "vectorWriteSuccess": true}},
        &m,
    )
    .unwrap();
    let md = c.doc.metadata.as_object().unwrap();
    assert!(!md.contains_key("secret") && !md.contains_key("top"));
    assert_eq!(
        md["vectorWriteSuccess"], true,
        "only the listed keys are dropped"
    );
}

#[test]
fn ids_of_every_type() {
    assert_eq!(
        id_string(Some(&Bson::String(" a ".into()))).as_deref(),
        Some("a")
    );
    assert_eq!(id_string(Some(&Bson::Int32(7))).as_deref(), Some("7"));
    assert_eq!(
        id_string(Some(&Bson::Int64(1 << 40))).as_deref(),
        Some("1099511627776")
    );
    assert_eq!(id_string(Some(&Bson::Double(12.0))).as_deref(), Some("12"));
    assert_eq!(id_string(Some(&Bson::Double(1.5))), None);
    assert_eq!(id_string(Some(&Bson::Null)), None);
    assert_eq!(id_string(None), None);
    assert_eq!(safe_key(""), "_");
    assert_eq!(safe_key("$a.b"), "_a_b");
}
