//! `tidemark migrate run` end to end against the real services: the draft mapping of the
//! inventory migrates the legacy fixture; legacy vectors of tidemark's own model are reused so
//! the worker embeds only the others; `tidemark verify` is clean and `migrate verify` accounts
//! for every record; a second run writes nothing; a catch-up run migrates exactly what the
//! legacy application added or changed; rollback refuses a document an application changed
//! since (unless --force) and returns the target to empty; the legacy side never changes; a
//! ledger of the earlier shape (a row per document) is counted by status and moved by a run.

use crate::migrate_support;

use bson::doc;
use futures::TryStreamExt;
use migrate_support::{inventory, planted, target_view, Legacy, Tidemark};
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::Ordering;
use tidemark_store::NewDocument;

fn run(tm: &Tidemark, mapping: &Path) -> Value {
    let (code, r) = tm.cli_json(&[
        "migrate",
        "run",
        "--mapping",
        mapping.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{r}");
    r
}

fn verify(tm: &Tidemark, mapping: &Path) -> (i32, Value) {
    tm.cli_json(&[
        "migrate",
        "verify",
        "--mapping",
        mapping.to_str().unwrap(),
        "--json",
    ])
}

async fn check_documents(tm: &Tidemark) {
    let t0 = tm.store.get("duck_transcripts:t-0").await.unwrap().unwrap();
    assert!(
        t0.content.ends_with("(again)"),
        "the newest duplicate wins: {}",
        t0.content
    );
    assert_eq!(
        t0.timestamp.timestamp_millis(),
        1_716_570_192_345 + 10_000_000
    );
    assert_eq!(t0.version, 1);
    for k in [
        "vectorWriteSuccess",
        "vectorWriteError",
        "vectorWriteTimestamp",
    ] {
        assert!(!t0.metadata.contains_key(k), "{k} kept: {}", t0.metadata);
    }
    let legacy = t0.metadata.get_document("legacy").unwrap();
    assert_eq!(legacy.get_str("migration").unwrap(), "m1");
    assert_eq!(legacy.get_str("collection").unwrap(), "duck_transcripts");
    assert_eq!(legacy.get_str("id").unwrap(), "t-0");
    let t11 = tm
        .store
        .get("duck_transcripts:t-11")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        t11.timestamp.timestamp_millis(),
        1_716_570_192_345 + 11 * 60_000,
        "python str(datetime) parsed"
    );
    assert_eq!(t11.doc_type, "transcripts");
    let raw = tm
        .store
        .get("discord_raw_messages:900007")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.metadata.get_str("author_name").unwrap(), "user2");
    for k in ["is_embedded", "has_meta_data", "embedding_status"] {
        assert!(!raw.metadata.contains_key(k), "{k} kept: {}", raw.metadata);
    }
    let card = tm.store.get("duck_kanban:card-1").await.unwrap().unwrap();
    assert_eq!(card.metadata.get_str("column").unwrap(), "todo");
    assert!(
        tm.store
            .get("duck_transcripts:img-0")
            .await
            .unwrap()
            .is_none(),
        "images are skipped"
    );
}

fn check_first_run(r: &Value) {
    let t = &r["totals"];
    assert_eq!(t["created"], planted::DOCUMENTS, "{r}");
    assert_eq!(t["updated"], 0);
    assert_eq!(t["unchanged"], 0);
    assert_eq!(t["merged"], planted::TRANSCRIPT_DUPS + planted::AGENT_DUPS);
    assert_eq!(t["vectors_reused"], planted::REUSABLE);
    assert_eq!(
        t["vectors_to_embed"],
        planted::DOCUMENTS - planted::REUSABLE
    );
}

fn check_account(v: &Value) {
    assert_eq!(v["unaccounted"], 0, "{v}");
    for c in v["collections"].as_array().unwrap() {
        let skipped: u64 = c["skipped"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x.as_u64().unwrap())
            .sum();
        let sum = c["migrated"].as_u64().unwrap() + c["merged"].as_u64().unwrap() + skipped;
        assert_eq!(sum, c["records"].as_u64().unwrap(), "{c}");
    }
    let t = v["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["collection"] == "duck_transcripts")
        .unwrap();
    assert_eq!(t["migrated"], planted::TRANSCRIPTS);
    assert_eq!(t["merged"], planted::TRANSCRIPT_DUPS);
    assert_eq!(t["skipped"]["image"], planted::IMAGES);
}

/// The legacy application keeps writing: one new record, one changed text.
async fn legacy_app_writes(legacy: &Legacy) {
    let now = bson::DateTime::now();
    legacy.db.collection::<bson::Document>("duck_transcripts")
        .insert_one(doc! {"id": "t-new-0", "text": "a transcript written after the first run", "timestamp": now, "metadata": {}})
        .await.unwrap();
    legacy
        .db
        .collection::<bson::Document>("duck_agent_messages")
        .update_one(
            doc! {"id": "am-3"},
            doc! {"$set": {"content": "agent message 3, edited later"}},
        )
        .await
        .unwrap();
}

async fn catch_up(tm: &Tidemark, legacy: &Legacy, path: &Path) {
    legacy_app_writes(legacy).await;
    let (code, v) = verify(tm, path);
    assert_eq!(
        code, 2,
        "new and changed records are not accounted for yet: {v}"
    );
    assert_eq!(v["unaccounted"], 2, "{v}");
    let r = run(tm, path);
    assert_eq!(r["totals"]["created"], 1, "{r}");
    assert_eq!(r["totals"]["updated"], 1, "{r}");
    assert_eq!(r["totals"]["unchanged"], planted::DOCUMENTS - 1);
    let am3 = tm
        .store
        .get("duck_agent_messages:am-3")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (am3.version, am3.content.as_str()),
        (2, "agent message 3, edited later")
    );
    tm.drain().await;
    let (code, v) = verify(tm, path);
    assert_eq!(code, 0, "{v}");
}

async fn rollback(tm: &Tidemark, path: &Path) {
    tm.store
        .put(NewDocument::new(
            "duck_kanban:card-1",
            "kanban",
            "edited by the application",
        ))
        .await
        .unwrap();
    let r = run(tm, path);
    assert_eq!(
        r["totals"]["conflicts"], 1,
        "a document the application rewrote is left alone: {r}"
    );
    let card = tm.store.get("duck_kanban:card-1").await.unwrap().unwrap();
    assert_eq!(
        (card.version, card.content.as_str()),
        (2, "edited by the application")
    );
    let (code, r) = tm.cli_json(&["migrate", "rollback", "--migration", "m1", "--json"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["refused"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["refused"][0]["content_id"], "duck_kanban:card-1");
    assert_eq!(r["documents_removed"], planted::DOCUMENTS, "{r}");
    assert_eq!(tm.count("documents").await, 1);
    let (code, r) = tm.cli_json(&[
        "migrate",
        "rollback",
        "--migration",
        "m1",
        "--force",
        "--json",
    ]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["documents_removed"], 1, "{r}");
    assert_eq!(tm.count("documents").await, 0);
    assert_eq!(tm.count("outbox").await, 0);
    assert_eq!(tm.count("migration_ledger").await, 0);
    assert_eq!(tm.vector_count().await, 0);
}

/// Rewrites the ledger in its earlier shape (one `migration_documents` row per document), as
/// a release before 2026-12-08 left it; returns the rows written.
async fn ledger_as_before(tm: &Tidemark) -> u64 {
    let db = tm.store.database();
    let batches: Vec<bson::Document> = db
        .collection::<bson::Document>("migration_ledger")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut rows = Vec::new();
    for b in &batches {
        for r in b.get_array("rows").unwrap() {
            let r = r.as_document().unwrap();
            rows.push(doc! {
                "_id": r.get_object_id("documentId").unwrap(),
                "migration": b.get_str("migration").unwrap(),
                "contentId": r.get_str("contentId").unwrap(),
                "version": r.get_i64("version").unwrap(),
                "collection": b.get_str("collection").unwrap(),
            });
        }
    }
    let n = rows.len() as u64;
    db.collection::<bson::Document>("migration_documents")
        .insert_many(rows)
        .await
        .unwrap();
    db.collection::<bson::Document>("migration_ledger")
        .delete_many(doc! {})
        .await
        .unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reuse_verify_rerun_catch_up_rollback() {
    let legacy = Legacy::build().await;
    let tm = Tidemark::new("mig_run").await;
    let (path, _) = inventory(&tm, &legacy);
    let before = legacy.digest().await;

    let report_file = path.with_file_name(format!("{}-report.json", tm.cfg.mongodb.database));
    let (code, r) = tm.cli_json(&[
        "migrate",
        "run",
        "--mapping",
        path.to_str().unwrap(),
        "--json",
        "--report",
        report_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{r}");
    check_first_run(&r);
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(kept["run_id"], r["run_id"]);
    assert_eq!(tm.count("documents").await, planted::DOCUMENTS);
    assert_eq!(tm.count("outbox").await, planted::DOCUMENTS);
    assert_eq!(
        tm.vector_count().await,
        planted::REUSABLE,
        "reused vectors are copied at once"
    );
    check_documents(&tm).await;

    tm.drain().await;
    assert_eq!(
        tm.embedder.texts.load(Ordering::SeqCst),
        planted::DOCUMENTS - planted::REUSABLE,
        "the worker embeds only what was not reused"
    );
    assert_eq!(tm.vector_count().await, planted::DOCUMENTS);
    let (code, v) = tm.cli_json(&["verify", "--json"]);
    assert_eq!(code, 0, "tidemark verify: {v}");
    let (code, v) = verify(&tm, &path);
    assert_eq!(code, 0, "{v}");
    check_account(&v);

    let view = target_view(&tm).await;
    let again = run(&tm, &path);
    assert_eq!(again["totals"]["created"], 0, "{again}");
    assert_eq!(again["totals"]["updated"], 0, "{again}");
    assert_eq!(again["totals"]["unchanged"], planted::DOCUMENTS);
    assert_eq!(
        tm.count("outbox").await,
        planted::DOCUMENTS,
        "a second run writes nothing"
    );
    assert_eq!(target_view(&tm).await, view);
    let (code, s) = tm.cli_json(&["migrate", "status", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(s["documents"]["m1"], planted::DOCUMENTS, "{s}");
    assert!(
        tm.count("migration_ledger").await < planted::DOCUMENTS / 2,
        "one ledger document per written batch"
    );
    assert_eq!(legacy.digest().await, before, "the legacy side changed");

    // A ledger of the earlier shape is counted as it is, and moved by the next run; the
    // catch-up's updated document then replaces its moved row (rollback below refuses only
    // the document the application changed, so no stale row is left).
    assert_eq!(ledger_as_before(&tm).await, planted::DOCUMENTS);
    let (_, s) = tm.cli_json(&["migrate", "status", "--json"]);
    assert_eq!(s["documents"]["m1"], planted::DOCUMENTS, "{s}");
    catch_up(&tm, &legacy, &path).await;
    assert_eq!(tm.count("migration_documents").await, 0, "rows moved");
    let (_, s) = tm.cli_json(&["migrate", "status", "--json"]);
    assert_eq!(s["documents"]["m1"], planted::DOCUMENTS + 1, "{s}");
    let legacy_now = legacy.digest().await;
    rollback(&tm, &path).await;
    assert_eq!(
        legacy.digest().await,
        legacy_now,
        "rollback touched the legacy side"
    );
    legacy.cleanup().await;
    tm.cleanup().await;
}
