//! Every validation rule of tidemark-store returns `StoreError::Validation` naming the field,
//! and a rejected call leaves both collections exactly as they were.

use crate::store_support;

use serde_json::json;
use store_support::{all_documents, all_entries, drop_db, fresh_store};
use tidemark_store::{NewDocument, StoreError};

fn doc(cid: &str, ty: &str, content: &str) -> NewDocument {
    NewDocument::new(cid, ty, content)
}

#[tokio::test]
async fn every_rule_rejects_without_writing() {
    let (store, cfg) = fresh_store("st_valid").await;
    // Existing data, so "untouched" is checked against something, including an update target.
    store
        .put(doc("keep", "t", "kept").with_metadata(json!({"a": 1})))
        .await
        .unwrap();
    let docs_before = all_documents(&store).await;
    let entries_before = all_entries(&store).await;

    let limits = &cfg.limits;
    let deep = (0..=limits.max_metadata_depth).fold(json!(1), |inner, _| json!({ "k": inner }));
    let cases: Vec<(&str, NewDocument, &str)> = vec![
        ("empty contentId", doc("", "t", "c"), "contentId"),
        (
            "long contentId",
            doc(&"x".repeat(limits.max_content_id_len + 1), "t", "c"),
            "contentId",
        ),
        ("empty type", doc("keep", "", "c"), "type"),
        ("empty content", doc("keep", "t", ""), "content"),
        (
            "big content",
            doc("keep", "t", &"x".repeat(limits.max_content_bytes + 1)),
            "content",
        ),
        (
            "metadata array",
            doc("keep", "t", "c").with_metadata(json!([1, 2])),
            "metadata",
        ),
        (
            "metadata string",
            doc("keep", "t", "c").with_metadata(json!("s")),
            "metadata",
        ),
        (
            "$ key",
            doc("keep", "t", "c").with_metadata(json!({"$where": "1"})),
            "metadata.$where",
        ),
        (
            "nested $ key",
            doc("keep", "t", "c").with_metadata(json!({"a": {"$gt": 1}})),
            "metadata.a.$gt",
        ),
        (
            "dotted key",
            doc("keep", "t", "c").with_metadata(json!({"a.b": 1})),
            "metadata.a.b",
        ),
        (
            "too deep",
            doc("keep", "t", "c").with_metadata(deep),
            "metadata.k.k.k.k.k.k.k.k",
        ),
    ];
    for (what, d, field) in cases {
        match store.put(d.clone()).await {
            Err(StoreError::Validation { field: f, reason }) => {
                assert_eq!(f, field, "{what}: wrong field (reason: {reason})");
                assert!(!reason.is_empty());
            }
            other => panic!("{what}: expected a validation error, got {other:?}"),
        }
        // The same document inside a batch rejects the whole batch.
        match store.put_many(vec![doc("fresh", "t", "fine"), d]).await {
            Err(StoreError::Validation { field: f, .. }) => {
                assert_eq!(f, format!("[1].{field}"), "{what}")
            }
            other => panic!("{what} in a batch: expected a validation error, got {other:?}"),
        }
        assert_eq!(
            all_documents(&store).await,
            docs_before,
            "{what}: documents changed"
        );
        assert_eq!(
            all_entries(&store).await,
            entries_before,
            "{what}: outbox changed"
        );
    }
    // Limits are inclusive: exactly at the limits is accepted.
    let at_limit = (0..limits.max_metadata_depth).fold(json!(1), |inner, _| json!({ "k": inner }));
    store
        .put(
            doc(
                &"y".repeat(limits.max_content_id_len),
                "t",
                &"z".repeat(limits.max_content_bytes),
            )
            .with_metadata(at_limit),
        )
        .await
        .unwrap();
    // get and delete check the contentId too.
    assert!(matches!(
        store.get("").await,
        Err(StoreError::Validation { .. })
    ));
    assert!(matches!(
        store.delete("").await,
        Err(StoreError::Validation { .. })
    ));
    drop_db(&store).await;
}
