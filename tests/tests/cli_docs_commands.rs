//! `tidemark put`, `get` and `delete` through the real binary: content from an argument, a
//! file and stdin; metadata; `--wait` timing out with exit 3 when no worker runs; exit 4 for
//! a missing document; invalid input rejected with nothing written.

use crate::cli_docs_support;

use cli_docs_support::{new_db, tidemark};
use serde_json::Value;
use tidemark_core::content_hash;

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test]
async fn put_get_delete_round_trip() {
    let (db, store) = new_db("cli_docs").await;

    let r = tidemark(
        &db,
        &[
            "put",
            "a",
            "hello there",
            "--type",
            "note",
            "--metadata",
            r#"{"lang":"en","n":{"x":[1,2]}}"#,
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = json(&r.stdout);
    assert_eq!(out["version"], 1);
    assert_eq!(out["contentHash"], content_hash("hello there"));

    let file = std::env::temp_dir().join(format!("{db}.txt"));
    std::fs::write(&file, "from a file").unwrap();
    let r = tidemark(&db, &["put", "a", "--file", file.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r.stdout)["version"], 2);
    std::fs::remove_file(&file).unwrap();

    let r = tidemark(&db, &["put", "b", "-t", "note"], Some("from stdin"));
    assert_eq!(r.code, 0, "{}", r.stderr);

    let r = tidemark(&db, &["get", "a"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = json(&r.stdout);
    assert_eq!(got["content"], "from a file");
    assert_eq!(got["type"], "text", "--type defaults to text");
    assert_eq!(got["version"], 2);
    assert_eq!(got["contentId"], "a");
    assert_eq!(got["_id"], out["documentId"]);
    let r = tidemark(&db, &["get", "b"], None);
    let b = json(&r.stdout);
    assert_eq!(
        (b["content"].as_str(), b["type"].as_str()),
        (Some("from stdin"), Some("note"))
    );
    // What the CLI wrote is the contract's shape.
    let stored = store.get("b").await.unwrap().unwrap();
    assert_eq!(stored.content_hash, content_hash("from stdin"));

    let r = tidemark(&db, &["delete", "a"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r.stdout)["version"], 3);
    let r = tidemark(&db, &["get", "a"], None);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("no document"), "{}", r.stderr);
    assert_eq!(tidemark(&db, &["delete", "a"], None).code, 4);
    assert_eq!(
        tidemark(&db, &["delete", "a", "--missing-ok"], None).code,
        0
    );

    let entries = store.outbox().count_documents(bson::doc! {}).await.unwrap();
    assert_eq!(entries, 4, "put a, put a, put b, delete a");
    store.database().drop().await.unwrap();
}

#[tokio::test]
async fn invalid_input_is_rejected_and_nothing_written() {
    let (db, store) = new_db("cli_bad").await;
    let cases: &[(&[&str], &str)] = &[
        (&["put", "a", "x", "--metadata", "[1,2]"], "metadata"),
        (
            &["put", "a", "x", "--metadata", "{not json"],
            "--metadata is not valid JSON",
        ),
        (
            &["put", "a", "x", "--metadata", r#"{"a.b":1}"#],
            "metadata.a.b",
        ),
        (&["put", "a", ""], "content"),
        (&["put", "a", "x", "--type", ""], "type"),
        (&["put", "", "x"], "contentId"),
    ];
    for (args, needle) in cases {
        let r = tidemark(&db, args, None);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
    let r = tidemark(&db, &["put", "a"], None);
    assert_ne!(r.code, 0, "no content anywhere must fail");
    let docs = store
        .documents()
        .count_documents(bson::doc! {})
        .await
        .unwrap();
    let entries = store.outbox().count_documents(bson::doc! {}).await.unwrap();
    assert_eq!((docs, entries), (0, 0));
    store.database().drop().await.unwrap();
}

#[tokio::test]
async fn put_wait_without_worker_exits_3_and_document_is_committed() {
    let (db, store) = new_db("cli_wait").await;
    let t = std::time::Instant::now();
    let r = tidemark(&db, &["put", "w", "pending text", "--wait", "1s"], None);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(t.elapsed() >= std::time::Duration::from_secs(1));
    assert!(
        r.stderr.contains("IS committed") && r.stderr.contains("still pending"),
        "{}",
        r.stderr
    );
    let doc = store.get("w").await.unwrap().expect("committed");
    assert!(r.stderr.contains(&doc.id.to_hex()), "{}", r.stderr);
    store.database().drop().await.unwrap();
}
