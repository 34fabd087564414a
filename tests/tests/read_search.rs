//! The read API (tidemark-read) against the real services, indexed by the worker with the
//! hashing test embedder: every filter gives the same documents through Chroma's `where` and
//! through the MongoDB side (and through `recent`), a deleted document never comes back, a
//! stale vector is marked and the newer document returned, chunked documents come back once,
//! read-your-writes sees a document put a moment before, and `history` lists every version.

use crate::read_support;
use crate::worker_support;

use read_support::{background_worker, reader, stop, Env};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tidemark_chroma::VectorRecord;
use tidemark_read::{Filter, ReadError, SearchRequest};
use tidemark_store::NewDocument;

const N: usize = 40;

/// The corpus: types, languages, ints, floats, nested keys, date strings, arrays, booleans,
/// and a key only some documents have.
fn corpus() -> Vec<NewDocument> {
    (0..N)
        .map(|i| {
            let lang = ["en", "fr", "de", "en"][i % 4];
            let mut meta = json!({
                "lang": lang,
                "year": 2015 + (i % 10) as i64,
                "score": i as f64 / 10.0,
                "tier": (i % 3) as i64,
                "ok": i % 2 == 0,
                "a": {"b": format!("x{}", i % 4)},
                "day": format!("2024-{:02}-01", 1 + i % 12),
                "tags": [format!("t{}", i % 3)],
            });
            if i % 5 == 0 {
                meta["extra"] = json!("yes");
            }
            let t = ["faq", "note", "guide"][i % 3];
            let text = format!("doc{i} about topic{} words{}", i % 5, i % 7);
            NewDocument::new(format!("d{i:02}"), t, text).with_metadata(meta)
        })
        .collect()
}

fn ids(i: impl Fn(usize) -> bool) -> BTreeSet<String> {
    (0..N)
        .filter(|&n| i(n))
        .map(|n| format!("d{n:02}"))
        .collect()
}

/// (filter, the documents it must select, computed without the filter code).
fn cases() -> Vec<(Value, BTreeSet<String>)> {
    let lang = |i: usize| ["en", "fr", "de", "en"][i % 4];
    let year = |i: usize| 2015 + (i % 10);
    let day = |i: usize| 1 + i % 12;
    vec![
        (json!({"type": "faq"}), ids(|i| i % 3 == 0)),
        (json!({"lang": "fr"}), ids(|i| lang(i) == "fr")),
        (
            json!({"year": {"$gte": 2018, "$lt": 2021}}),
            ids(|i| (2018..2021).contains(&year(i))),
        ),
        (
            json!({"score": {"$gt": 1.5, "$lte": 3.0}}),
            ids(|i| i > 15 && i <= 30),
        ),
        (json!({"year": 2019.0}), ids(|i| year(i) == 2019)),
        (json!({"a.b": "x2"}), ids(|i| i % 4 == 2)),
        (
            json!({"day": {"$gte": "2024-03-01", "$lt": "2024-07-01"}}),
            ids(|i| (3..7).contains(&day(i))),
        ),
        (json!({"tier": {"$in": [0, 2]}}), ids(|i| i % 3 != 1)),
        (json!({"lang": {"$nin": ["en"]}}), ids(|i| lang(i) != "en")),
        (json!({"extra": {"$ne": "yes"}}), ids(|i| i % 5 != 0)),
        (json!({"ok": true}), ids(|i| i % 2 == 0)),
        (
            json!({"lang": {"$in": ["fr", 1]}}),
            ids(|i| lang(i) == "fr"),
        ),
        (json!({"tier": {"$in": []}}), BTreeSet::new()),
        (json!({"tags": "[\"t1\"]"}), ids(|i| i % 3 == 1)),
        (
            json!({"type": "note", "year": {"$gte": 2017}, "$and": [{"day": {"$lt": "2024-09-01"}}, {"ok": false}]}),
            ids(|i| i % 3 == 1 && year(i) >= 2017 && day(i) < 9 && i % 2 == 1),
        ),
    ]
}

async fn indexed_env(prefix: &str) -> Env {
    let env = Env::new(prefix).await;
    env.store.put_many(corpus()).await.unwrap();
    let r = env.worker().drain().await.unwrap();
    assert_eq!(r.indexed as usize, N, "{r:?}");
    env
}

fn found(r: &tidemark_read::SearchResult) -> BTreeSet<String> {
    r.hits
        .iter()
        .map(|h| h.document.content_id.clone())
        .collect()
}

#[tokio::test]
async fn filters_give_the_same_documents_through_chroma_and_through_mongodb() {
    let env = indexed_env("rd_filters").await;
    let reader = reader(&env);
    for (filter, want) in cases() {
        let f = Filter::from_json(&filter).unwrap();
        let req = SearchRequest::text("topic1 words3", N).with_filter(f.clone());
        let pushed = reader.search(&req).await.unwrap();
        let local = reader
            .search(&req.clone().without_pushdown())
            .await
            .unwrap();
        assert_eq!(found(&pushed), want, "through Chroma: {filter}");
        assert_eq!(found(&local), want, "through MongoDB: {filter}");
        let scores = |r: &tidemark_read::SearchResult| -> Vec<(String, String)> {
            let mut v: Vec<_> = r
                .hits
                .iter()
                .map(|h| (h.document.content_id.clone(), format!("{:.5}", h.score)))
                .collect();
            v.sort();
            v
        };
        assert_eq!(scores(&pushed), scores(&local), "{filter}");
        assert!(pushed.hits.iter().all(|h| !h.stale));
        let recent: BTreeSet<String> = reader
            .recent(&f, N)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.content_id)
            .collect();
        assert_eq!(recent, want, "recent: {filter}");
    }
    // The pushed-down filter is evaluated by Chroma: it hands over only the matching vectors.
    let req = SearchRequest::text("topic1", N)
        .with_filter(Filter::from_json(&json!({"type": "faq"})).unwrap());
    let pushed = reader.search(&req).await.unwrap();
    assert_eq!(pushed.candidates, 14, "{pushed:?}");
    let local = reader
        .search(&req.clone().without_pushdown())
        .await
        .unwrap();
    assert_eq!(local.candidates, N);
    // Top-k with a filter: k hits, best first.
    let top = reader
        .search(&SearchRequest::text("doc7 about topic2 words0", 3))
        .await
        .unwrap();
    assert_eq!(top.hits.len(), 3);
    assert_eq!(top.hits[0].document.content_id, "d07");
    assert!(top.hits.windows(2).all(|w| w[0].score >= w[1].score));
    // Newest first.
    let newest = reader
        .recent(&Filter::all().with_type("guide"), 2)
        .await
        .unwrap();
    assert_eq!(newest.len(), 2);
    assert!(newest[0].timestamp >= newest[1].timestamp);
    env.cleanup().await;
}

#[tokio::test]
async fn deleted_document_never_comes_back_and_stale_vectors_are_marked() {
    let env = Env::new("rd_delete").await;
    let reader = reader(&env);
    let worker = env.worker();
    let text = "gamma gulls glide over grey waves";
    env.store
        .put(NewDocument::new("g", "note", text))
        .await
        .unwrap();
    env.store
        .put(NewDocument::new("s", "note", "sigma seals sleep on sand"))
        .await
        .unwrap();
    worker.drain().await.unwrap();
    let hits = |r: tidemark_read::SearchResult| -> Vec<(String, bool, i64)> {
        r.hits
            .into_iter()
            .map(|h| (h.document.content_id, h.stale, h.document.version))
            .collect()
    };
    let q = SearchRequest::text(text, 5);
    assert_eq!(
        hits(reader.search(&q).await.unwrap())[0],
        ("g".into(), false, 1)
    );

    // Deleted, its vector still in Chroma (the worker has not run): never returned.
    env.store.delete("g").await.unwrap();
    assert_eq!(
        env.vectors().await.len(),
        2,
        "the old vector is still there"
    );
    let after_delete = hits(reader.search(&q).await.unwrap());
    assert!(after_delete.iter().all(|h| h.0 != "g"), "{after_delete:?}");
    // Put again under the same contentId: a new incarnation, not indexed yet, still absent.
    env.store
        .put(NewDocument::new("g", "note", text))
        .await
        .unwrap();
    assert!(hits(reader.search(&q).await.unwrap())
        .iter()
        .all(|h| h.0 != "g"));
    worker.drain().await.unwrap();
    assert_eq!(
        hits(reader.search(&q).await.unwrap())[0],
        ("g".into(), false, 3)
    );

    // Updated, not indexed yet: the old vector matches, marked stale, the new text returned.
    let old = "sigma seals sleep on sand";
    env.store
        .put(NewDocument::new(
            "s",
            "note",
            "completely different words now",
        ))
        .await
        .unwrap();
    let r = reader.search(&SearchRequest::text(old, 1)).await.unwrap();
    let h = &r.hits[0];
    assert_eq!(h.document.content_id, "s");
    assert!(h.stale);
    assert_eq!((h.vector_version, h.document.version), (Some(1), 2));
    assert_eq!(h.document.content, "completely different words now");
    worker.drain().await.unwrap();
    let r = reader.search(&SearchRequest::text(old, 5)).await.unwrap();
    assert!(r.hits.iter().all(|h| !h.stale));
    env.cleanup().await;
}

#[tokio::test]
async fn chunked_documents_come_back_once_with_their_best_score() {
    let env = Env::new("rd_chunks").await;
    let reader = reader(&env);
    let a = env
        .store
        .put(NewDocument::new("a", "note", "alpha one"))
        .await
        .unwrap();
    env.store
        .put(NewDocument::new("b", "note", "bravo two"))
        .await
        .unwrap();
    env.worker().drain().await.unwrap();
    // Two more vectors of document `a`, as chunking will write them.
    let coll = env.collection_id().await;
    let base = env.vectors().await[&a.document_id.to_hex()].0.clone();
    let chunk = |n: usize, text: &str| VectorRecord {
        id: format!("{}#{n}", a.document_id.to_hex()),
        embedding: worker_support::hash_vec(text),
        metadata: base.clone(),
    };
    env.chroma
        .upsert(
            &coll,
            &[chunk(1, "query words here"), chunk(2, "query words")],
        )
        .await
        .unwrap();
    let r = reader
        .search(&SearchRequest::text("query words here", 10))
        .await
        .unwrap();
    let got: Vec<&str> = r
        .hits
        .iter()
        .map(|h| h.document.content_id.as_str())
        .collect();
    assert_eq!(got, vec!["a", "b"], "{r:?}");
    assert!(
        (r.hits[0].score - 1.0).abs() < 1e-4,
        "the best chunk's score"
    );
    assert_eq!(r.candidates, 4);
    env.cleanup().await;
}

#[tokio::test]
async fn read_your_writes_search_sees_a_document_put_a_moment_before() {
    let env = Env::new("rd_ryw").await;
    let reader = reader(&env);
    // Without a worker the wait is bounded and says the write is committed.
    let put = env
        .store
        .put(NewDocument::new("w", "note", "whales wander widely"))
        .await
        .unwrap();
    let start = Instant::now();
    let req =
        SearchRequest::text("whales wander widely", 3).after(&put, Duration::from_millis(300));
    let err = reader.search(&req).await.unwrap_err();
    assert!(matches!(err, ReadError::NotIndexed { .. }), "{err}");
    assert!(err.to_string().contains("IS committed"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));

    let worker = background_worker(&env);
    for i in 0..3 {
        let text = format!("fresh{i} falcons fly fast");
        let put = env
            .store
            .put(NewDocument::new(format!("f{i}"), "note", text.clone()))
            .await
            .unwrap();
        let req = SearchRequest::text(text, 1).after(&put, Duration::from_secs(10));
        let r = reader.search(&req).await.unwrap();
        assert_eq!(r.hits[0].document.content_id, format!("f{i}"));
        assert!(!r.hits[0].stale);
    }
    // An update seen at once, not its stale vector.
    let put = env
        .store
        .put(NewDocument::new("f0", "note", "fresh0 falcons rest now"))
        .await
        .unwrap();
    let req =
        SearchRequest::text("fresh0 falcons rest now", 1).after(&put, Duration::from_secs(10));
    let h = &reader.search(&req).await.unwrap().hits[0];
    assert_eq!(
        (h.document.content_id.as_str(), h.stale, h.document.version),
        ("f0", false, 2)
    );
    stop(worker).await;
    env.cleanup().await;
}

#[tokio::test]
async fn history_lists_every_version_of_a_content_id() {
    let env = Env::new("rd_history").await;
    let reader = reader(&env);
    env.store
        .put(NewDocument::new("h", "note", "one"))
        .await
        .unwrap();
    env.worker().drain().await.unwrap();
    env.store
        .put(NewDocument::new("h", "note", "two"))
        .await
        .unwrap();
    env.store.delete("h").await.unwrap();
    let pending = reader.history("h").await.unwrap();
    assert_eq!(pending.len(), 3);
    assert_eq!(
        pending
            .iter()
            .map(|e| serde_json::to_value(e.status).unwrap())
            .collect::<Vec<_>>(),
        vec![json!("done"), json!("pending"), json!("pending")]
    );
    env.worker().drain().await.unwrap();
    let entries = reader.history("h").await.unwrap();
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            let v = serde_json::to_value(e).unwrap();
            json!([v["version"], v["op"], v["status"], v["result"]])
        })
        .collect();
    assert_eq!(rows[0], json!([1, "upsert", "done", "indexed"]));
    assert_eq!(
        rows[1].as_array().unwrap()[0..3],
        [json!(2), json!("upsert"), json!("done")]
    );
    assert_eq!(rows[2], json!([3, "delete", "done", "deleted"]));
    assert!(entries.iter().all(|e| e.done_at.is_some()));
    assert!(reader.history("never-written").await.unwrap().is_empty());
    assert!(reader.get("h").await.unwrap().is_none());
    env.cleanup().await;
}
