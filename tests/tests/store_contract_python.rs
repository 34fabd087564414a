//! The Python example of docs/CONTRACT.md (docs/examples/write_outbox.py) really works: run
//! with the project's venv against the replica set, what it writes parses as the Rust contract
//! types with the right BSON types, its hash equals `content_hash`, and its versions interleave
//! correctly with writes of the Rust library (update, delete, re-put).

use crate::store_support;

use bson::{doc, Bson, Document};
use serde_json::Value;
use std::process::Command;
use store_support::{all_entries, drop_db, fresh_store};
use tidemark_core::{content_hash, Op, OutboxStatus, SCHEMA_VERSION};
use tidemark_e2e::{mongodb_uri, repo_root};
use tidemark_store::NewDocument;

fn python(db: &str, args: &[&str]) -> Value {
    let py = repo_root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/services up",
        py.display()
    );
    let out = Command::new(py)
        .arg(repo_root().join("docs/examples/write_outbox.py"))
        .args(args)
        .env("MONGODB_URI", mongodb_uri())
        .env("TIDEMARK_MONGODB_DATABASE", db)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "write_outbox.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

#[tokio::test]
async fn python_example_writes_the_contract_shapes() {
    let (store, cfg) = fresh_store("st_py").await;
    let db = &cfg.mongodb.database;
    let content = "héllo wörld ✓";
    let r = python(
        db,
        &[
            "put",
            "py-1",
            "note",
            content,
            r#"{"lang":"de","tags":["a"],"n":{"x":1}}"#,
        ],
    );
    assert_eq!(r["version"], 1);

    // Typed reads: the collections deserialize as DocumentRecord / OutboxEntry.
    let d = store.get("py-1").await.unwrap().expect("document written");
    assert_eq!(d.id.to_hex(), r["documentId"].as_str().unwrap());
    assert_eq!(
        (d.doc_type.as_str(), d.content.as_str(), d.version),
        ("note", content, 1)
    );
    assert_eq!(
        d.content_hash,
        content_hash(content),
        "Python and Rust hash the same way"
    );
    assert_eq!(
        d.metadata.get_document("n").unwrap().get_i32("x").unwrap(),
        1
    );
    let entries = all_entries(&store).await;
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.id.to_hex(), r["outboxId"].as_str().unwrap());
    assert_eq!(
        (e.document_id, e.op, e.version, e.status),
        (d.id, Op::Upsert, 1, OutboxStatus::Pending)
    );
    assert_eq!((e.schema_version, e.attempts), (SCHEMA_VERSION, 0));
    assert_eq!(e.content_hash, d.content_hash);

    // Exact BSON types, as a reader in another language would see them.
    let raw_doc = store
        .database()
        .collection::<Document>("documents")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(raw_doc.get("version"), Some(Bson::Int64(1))));
    assert!(matches!(raw_doc.get("timestamp"), Some(Bson::DateTime(_))));
    let raw_entry = store
        .database()
        .collection::<Document>("outbox")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(raw_entry.get("version"), Some(Bson::Int64(1))));
    assert!(matches!(raw_entry.get("attempts"), Some(Bson::Int32(0))));
    assert!(matches!(
        raw_entry.get("schemaVersion"),
        Some(Bson::Int32(1))
    ));
    assert!(matches!(
        raw_entry.get("nextAttemptAt"),
        Some(Bson::DateTime(_))
    ));
    assert!(matches!(
        raw_entry.get("createdAt"),
        Some(Bson::DateTime(_))
    ));

    // Python and Rust writers follow one version sequence, across delete and re-put.
    assert_eq!(python(db, &["put", "py-1", "note", "second"])["version"], 2);
    let rust = store
        .put(NewDocument::new("py-1", "note", "third"))
        .await
        .unwrap();
    assert_eq!((rust.version, rust.document_id), (3, d.id));
    let del = python(db, &["delete", "py-1"]);
    assert_eq!(del["version"], 4);
    assert!(store.get("py-1").await.unwrap().is_none());
    let again = store
        .put(NewDocument::new("py-1", "note", "fourth"))
        .await
        .unwrap();
    assert_eq!(again.version, 5);
    assert_ne!(
        again.document_id, d.id,
        "a new incarnation gets a fresh _id"
    );
    let py_again = python(db, &["put", "py-1", "note", "fifth"]);
    assert_eq!(py_again["version"], 6);
    assert_eq!(
        py_again["documentId"].as_str().unwrap(),
        again.document_id.to_hex()
    );

    let entries = all_entries(&store).await;
    let seq: Vec<(i64, Op)> = entries.iter().map(|e| (e.version, e.op)).collect();
    assert_eq!(
        seq,
        vec![
            (1, Op::Upsert),
            (2, Op::Upsert),
            (3, Op::Upsert),
            (4, Op::Delete),
            (5, Op::Upsert),
            (6, Op::Upsert)
        ]
    );
    assert_eq!(entries[3].document_id, d.id);
    assert_eq!(entries[3].content_hash, content_hash("third"));
    drop_db(&store).await;
}

/// The shorter snippet shown inline in docs/CONTRACT.md runs too (extracted from the page).
#[tokio::test]
async fn contract_page_python_snippet_runs() {
    let (store, cfg) = fresh_store("st_pysnip").await;
    let page = std::fs::read_to_string(repo_root().join("docs/CONTRACT.md")).unwrap();
    let start = page.find("```python\n").expect("a python block") + "```python\n".len();
    let end = start + page[start..].find("```").unwrap();
    let snippet = page[start..end]
        .replace(
            "mongodb://127.0.0.1:27018/?replicaSet=secantus",
            &mongodb_uri(),
        )
        .replace(
            r#"client["tidemark"]"#,
            &format!(r#"client["{}"]"#, cfg.mongodb.database),
        );
    assert!(
        snippet.contains(&cfg.mongodb.database),
        "snippet uses the test database"
    );
    let script = std::env::temp_dir().join(format!("{}.py", cfg.mongodb.database));
    std::fs::write(&script, snippet + "\nprint(version)\n").unwrap();
    for expected in ["1", "2"] {
        let out = Command::new(repo_root().join(".venv/bin/python"))
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
    }
    std::fs::remove_file(&script).unwrap();
    let d = store.get("faq-1").await.unwrap().unwrap();
    assert_eq!(d.version, 2);
    assert_eq!(d.metadata.get_str("lang").unwrap(), "en");
    let entries = all_entries(&store).await;
    assert_eq!(
        entries.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    drop_db(&store).await;
}
