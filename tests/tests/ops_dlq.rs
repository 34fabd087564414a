//! Dead letters against the real services: an entry killed by a permanent embedder failure (a
//! fault injector) is listed and shown, retried while the cause persists (dies again, history
//! grows), then retried after the cause is fixed and ends done with its vector written. Also
//! paging newest first, retry --all, skipped ids, and purge touching only old dead entries.

use crate::ops_support;

use bson::{doc, oid::ObjectId, DateTime};
use ops_support::OpsEnv;
use tidemark_core::{Op, OutboxEntry, OutboxResult, OutboxStatus};
use tidemark_ops::verify::{verify, VerifyOptions};
use tidemark_ops::{dlq, NoProgress};
use tidemark_store::NewDocument;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_entry_retried_after_the_cause_is_fixed_ends_done_with_history() {
    let env = OpsEnv::new("ops_dlq").await;
    env.put_docs("ok", "t", 2).await;
    let bad = env
        .store
        .put(NewDocument::new("bad-0", "t", "this text carries POISON"))
        .await
        .unwrap();
    *env.embedder.poison.lock().unwrap() = Some("POISON".into());
    let r = env.drain().await;
    assert_eq!((r.indexed, r.dead), (2, 1), "{r:?}");

    let (code, page) = env.cli_json(&["dlq", "list", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(page["total"], 1);
    assert_eq!(page["entries"][0]["contentId"], "bad-0");
    assert_eq!(page["entries"][0]["id"], bad.outbox_id.to_hex());
    assert!(
        page["entries"][0]["lastError"]
            .as_str()
            .unwrap()
            .contains("POISON"),
        "{page}"
    );
    let (code, shown) = env.cli_json(&["dlq", "show", &bad.outbox_id.to_hex()]);
    assert_eq!(code, 0);
    assert_eq!(shown["status"], "dead");
    assert_eq!(shown["contentId"], "bad-0");

    // Retry while the cause persists: dies again, the first error is kept.
    let rr = dlq::retry(&env.ops, &[bad.outbox_id]).await.unwrap();
    assert_eq!(rr.retried, vec![bad.outbox_id.to_hex()]);
    assert_eq!(env.drain().await.dead, 1);
    let e = &env.entries(doc! {"_id": bad.outbox_id}).await[0];
    assert_eq!(e.status, OutboxStatus::Dead);
    assert_eq!(e.error_history.len(), 1, "{e:?}");

    // Fix the cause, retry through the CLI.
    *env.embedder.poison.lock().unwrap() = None;
    let (code, rr) = env.cli_json(&["dlq", "retry", &bad.outbox_id.to_hex(), "--json"]);
    assert_eq!(code, 0, "{rr}");
    assert_eq!(rr["retried"][0], bad.outbox_id.to_hex());
    let e = &env.entries(doc! {"_id": bad.outbox_id}).await[0];
    assert_eq!(e.status, OutboxStatus::Pending);
    assert_eq!(e.attempts, 0);
    assert!(e.lease.is_none() && e.last_error.is_none(), "{e:?}");
    assert_eq!(e.error_history.len(), 2, "both earlier errors kept: {e:?}");
    assert!(e.error_history.iter().all(|h| h.contains("POISON")));
    assert!(e.next_attempt_at.timestamp_millis() <= DateTime::now().timestamp_millis());

    let r = env.drain().await;
    assert_eq!(r.indexed, 1, "{r:?}");
    let e = &env.entries(doc! {"_id": bad.outbox_id}).await[0];
    assert_eq!(
        (e.status, e.result),
        (OutboxStatus::Done, Some(OutboxResult::Indexed))
    );
    assert_eq!(e.error_history.len(), 2, "history survives completion");
    let doc = env.store.get("bad-0").await.unwrap().unwrap();
    assert_eq!(doc.indexed_version, Some(doc.version));
    let v = verify(&env.ops, &VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert!(!v.has_drift(), "{v:#?}");
    assert_eq!(dlq::list(&env.ops, 10, None).await.unwrap().total, 0);

    // A done entry is not retried; the CLI says so with exit 4.
    let (code, _, err) = env.cli(&["dlq", "retry", &bad.outbox_id.to_hex()]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("not a dead entry"), "{err}");
    env.cleanup().await;
}

fn dead_entry(created: DateTime, last_attempt: DateTime, n: usize) -> OutboxEntry {
    let mut e = OutboxEntry::new_pending(ObjectId::new(), &format!("gone-{n}"), Op::Upsert, 1, "h");
    e.status = OutboxStatus::Dead;
    e.attempts = 8;
    e.created_at = created;
    e.next_attempt_at = last_attempt;
    e.last_error = Some(format!("error {n}"));
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_newest_first_retry_all_and_purge_only_old_dead_entries() {
    let env = OpsEnv::new("ops_dlq_admin").await;
    let now = DateTime::now();
    let old = DateTime::from_millis(now.timestamp_millis() - 10 * 24 * 3600 * 1000);
    let entries: Vec<OutboxEntry> = (0..5)
        .map(|i| {
            if i < 2 {
                dead_entry(old, old, i)
            } else {
                dead_entry(now, now, i)
            }
        })
        .collect();
    env.store.outbox().insert_many(&entries).await.unwrap();
    // An old done entry: purge must leave it.
    let mut done = dead_entry(old, old, 9);
    done.status = OutboxStatus::Done;
    done.done_at = Some(now);
    env.store.outbox().insert_one(&done).await.unwrap();

    let p1 = dlq::list(&env.ops, 2, None).await.unwrap();
    assert_eq!(p1.total, 5);
    let ids1: Vec<&str> = p1.entries.iter().map(|e| e.content_id.as_str()).collect();
    assert_eq!(ids1, ["gone-4", "gone-3"]);
    let before = p1.next_before.clone().expect("more pages");
    let (code, p2) = env.cli_json(&["dlq", "list", "--limit", "2", "--before", &before, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(p2["entries"][0]["contentId"], "gone-2");
    assert_eq!(p2["entries"][1]["contentId"], "gone-1");
    let p3 = dlq::list(
        &env.ops,
        2,
        Some(p2["nextBefore"].as_str().unwrap().parse().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(p3.entries.len(), 1);
    assert!(p3.next_before.is_none());

    let (code, out) = env.cli_json(&["dlq", "purge", "--older-than", "7d", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(out["deleted"], 2);
    assert_eq!(dlq::list(&env.ops, 10, None).await.unwrap().total, 3);
    assert_eq!(env.entries(doc! {"status": "done"}).await.len(), 1);

    let (code, out) = env.cli_json(&["dlq", "retry", "--all", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(out["retried"], 3);
    let pending = env.entries(doc! {"status": "pending"}).await;
    assert_eq!(pending.len(), 3);
    assert!(pending
        .iter()
        .all(|e| e.attempts == 0 && e.error_history.len() == 1));
    env.cleanup().await;
}
