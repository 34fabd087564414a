//! verify and repair against the real services: drift is created on purpose behind the system's
//! back (vectors deleted and changed through Chroma's HTTP API, orphan vectors added, a document
//! inserted without its outbox entry, indexedVersion removed) and verify must report exactly
//! those contentIds, in the right category, while pending work is only "in flight". Repair plus
//! a worker run must end with verify clean.

use crate::ops_support;

use bson::doc;
use ops_support::{ids_of, sorted, unit, OpsEnv};
use serde_json::json;
use tidemark_ops::verify::{verify, RepairOptions, VerifyOptions};
use tidemark_ops::NoProgress;
use tidemark_store::NewDocument;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_exactly_the_drift_and_repair_plus_worker_cleans_it() {
    let env = OpsEnv::new("ops_verify").await;
    env.put_docs("d", "note", 10).await;
    env.drain().await;
    // Orphans land between two waves of real vectors, so the scan meets them mid-collection.
    let (g1, g2) = (
        bson::oid::ObjectId::new().to_hex(),
        bson::oid::ObjectId::new().to_hex(),
    );
    env.chroma_http(
        "upsert",
        json!({
            "ids": [g1, g2, "not-an-object-id"],
            "embeddings": [unit(1.0), unit(0.5), unit(0.25)],
            "metadatas": [{"contentId": "ghost-1"}, {"contentId": "ghost-2"}, {"contentId": "ghost-3"}],
        }),
    )
    .await;
    let docs: Vec<NewDocument> = (10..20)
        .map(|i| NewDocument::new(format!("d-{i}"), "note", format!("d text number {i}")))
        .collect();
    env.store.put_many(docs).await.unwrap();
    env.drain().await;

    let clean_before = verify(&env.ops, &VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(clean_before.counts.documents, 20);
    assert_eq!(
        clean_before.counts.orphans, 3,
        "only the ghosts: {clean_before:?}"
    );
    assert_eq!(
        clean_before.counts.missing + clean_before.counts.stale + clean_before.counts.behind,
        0
    );

    // Missing: two vectors deleted straight through Chroma.
    let (id1, id2) = (env.doc_id("d-1").await, env.doc_id("d-12").await);
    env.chroma_http("delete", json!({"ids": [id1, id2]})).await;
    // Stale: a changed contentHash, and a changed version.
    let id3 = env.doc_id("d-3").await;
    let id14 = env.doc_id("d-14").await;
    env.chroma_http(
        "update",
        json!({"ids": [id3, id14], "metadatas": [{"contentHash": "sha256:bogus"}, {"version": 99}]}),
    )
    .await;
    // Missing: a document written without the outbox.
    let text = "written behind the outbox's back";
    env.store
        .database()
        .collection::<bson::Document>("documents")
        .insert_one(doc! {
            "_id": bson::oid::ObjectId::new(), "contentId": "rogue-1", "type": "note", "content": text,
            "metadata": {}, "timestamp": bson::DateTime::now(), "version": 1_i64,
            "contentHash": tidemark_core::content_hash(text),
        })
        .await
        .unwrap();
    // Behind: the vector is right but indexedVersion was lost.
    env.store
        .database()
        .collection::<bson::Document>("documents")
        .update_one(
            doc! {"contentId": "d-5"},
            doc! {"$unset": {"indexedVersion": ""}},
        )
        .await
        .unwrap();
    // In flight (not drift): a new document and an update, both pending.
    env.put_docs("fresh", "note", 1).await;
    env.store
        .put(NewDocument::new("d-6", "note", "d-6 has changed"))
        .await
        .unwrap();

    let (code, r) = env.cli_json(&["verify", "--json", "--batch-size", "4"]);
    assert_eq!(code, 2, "drift must exit 2: {r}");
    assert_eq!(
        ids_of(&r, "missing", "contentId"),
        sorted(&["d-1", "d-12", "rogue-1"])
    );
    assert_eq!(ids_of(&r, "stale", "contentId"), sorted(&["d-14", "d-3"]));
    assert_eq!(ids_of(&r, "behind", "contentId"), sorted(&["d-5"]));
    assert_eq!(
        ids_of(&r, "orphans", "contentId"),
        sorted(&["ghost-1", "ghost-2", "ghost-3"])
    );
    assert_eq!(
        ids_of(&r, "inFlight", "contentId"),
        sorted(&["d-6", "fresh-0"])
    );
    let stale3 = r["stale"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["contentId"] == "d-3")
        .unwrap();
    assert!(
        stale3["differences"][0]
            .as_str()
            .unwrap()
            .starts_with("contentHash"),
        "{stale3}"
    );
    let c = &r["counts"];
    assert_eq!(
        (c["documents"].as_u64(), c["vectors"].as_u64()),
        (Some(22), Some(21)),
        "{c}"
    );

    // Dry run: reports what it would do, changes nothing, exits like verify.
    let outbox_before = env.entries(doc! {}).await.len();
    let (code, dry) = env.cli_json(&["repair", "--dry-run", "--json", "--batch-size", "4"]);
    assert_eq!(code, 2, "{dry}");
    assert_eq!(
        dry["repair"],
        json!({"dryRun": true, "enqueued": 6, "orphansDeleted": 3})
    );
    assert_eq!(env.entries(doc! {}).await.len(), outbox_before);
    let cid = env.collection_id().await;
    assert_eq!(env.chroma.count(&cid).await.unwrap(), 21);

    // Repair, small pages so orphan deletions happen mid-scan, then a worker run.
    let (code, rep) = env.cli_json(&["verify", "--repair", "--json", "--batch-size", "4"]);
    assert_eq!(code, 0, "{rep}");
    assert_eq!(
        rep["repair"],
        json!({"dryRun": false, "enqueued": 6, "orphansDeleted": 3})
    );
    assert_eq!(env.entries(doc! {}).await.len(), outbox_before + 6);
    env.drain().await;

    let after = verify(
        &env.ops,
        &VerifyOptions {
            batch_size: 3,
            ..Default::default()
        },
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(!after.has_drift(), "{after:#?}");
    assert_eq!(after.counts.in_flight, 0, "{after:#?}");
    assert_eq!((after.counts.documents, after.counts.vectors), (22, 22));
    let got = env
        .chroma
        .get(&cid, std::slice::from_ref(&id3), false)
        .await
        .unwrap();
    let d3 = env.store.get("d-3").await.unwrap().unwrap();
    assert_eq!(
        got[0].metadata.as_ref().unwrap()["contentHash"],
        json!(d3.content_hash)
    );
    let (code, out, _) = env.cli(&["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("consistent"), "{out}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_without_a_collection_lists_all_missing_up_to_the_limit() {
    let env = OpsEnv::new("ops_verify_nocoll").await;
    let docs = env
        .store
        .database()
        .collection::<bson::Document>("documents");
    for i in 0..5 {
        let text = format!("bypass {i}");
        docs.insert_one(doc! {
            "contentId": format!("b-{i}"), "type": "t", "content": &text, "metadata": {},
            "timestamp": bson::DateTime::now(), "version": 1_i64,
            "contentHash": tidemark_core::content_hash(&text),
        })
        .await
        .unwrap();
    }
    let opts = VerifyOptions {
        batch_size: 2,
        list_limit: 2,
        repair: None,
    };
    let r = verify(&env.ops, &opts, &NoProgress).await.unwrap();
    assert!(!r.collection_exists);
    assert_eq!(r.counts.missing, 5);
    assert_eq!(r.missing.len(), 2);
    assert!(r.truncated && r.has_drift());

    // Repair enqueues them; the worker creates the collection and indexes them.
    let opts = VerifyOptions {
        repair: Some(RepairOptions { dry_run: false }),
        ..opts
    };
    let r = verify(&env.ops, &opts, &NoProgress).await.unwrap();
    assert_eq!(r.repair.unwrap().enqueued, 5);
    let report = env.drain().await;
    assert_eq!(report.indexed, 5);
    let r = verify(&env.ops, &VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert!(r.collection_exists && !r.has_drift(), "{r:#?}");
    assert_eq!(r.counts.vectors, 5);
    env.cleanup().await;
}
