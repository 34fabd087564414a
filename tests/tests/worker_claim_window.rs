//! The claim window (worker `window.rs`) against the real services: a backlog spread over time
//! drains earliest first through a bounded window, an entry far behind the window (an expired
//! lease, a writer with a slow clock) is claimed at once, an entry not yet due waits, and
//! entries another worker holds at the head of the window are paged past, claim after claim,
//! and live entries are claimed before an index build's queued ahead of them; a document
//! another worker locked is left to it, and expired locks are taken over.

use crate::worker_support;

use bson::{doc, DateTime, Document};
use futures::TryStreamExt;
use mongodb::Collection;
use std::time::Duration;
use tidemark_core::{OutboxStatus, COLL_OUTBOX};
use tidemark_store::NewDocument;
use tidemark_worker::Worker;
use worker_support::{test_config, Env};

/// Writes `groups` groups of `per` documents, `gap` apart, so their entries spread over time.
async fn spread_backlog(env: &Env, groups: usize, per: usize, gap: Duration) {
    for g in 0..groups {
        let docs = (0..per)
            .map(|i| NewDocument::new(format!("w{g}-{i}"), "t", format!("text {g} {i}")))
            .collect();
        env.store.put_many(docs).await.unwrap();
        tokio::time::sleep(gap).await;
    }
}

/// A world with a worker of batches of 4 (claims of 8 candidates) and a backlog of `groups`
/// groups of 6 documents spread over time; the raw outbox collection to plant entries in.
async fn backlog_world(prefix: &str, groups: usize) -> (Env, Worker, Collection<Document>) {
    let mut cfg = test_config(prefix);
    cfg.worker.batch_size = 4;
    let env = Env::with_config(cfg).await;
    let w = env.worker();
    w.init().await.unwrap();
    spread_backlog(&env, groups, 6, Duration::from_millis(15)).await;
    let outbox = env.store.database().collection::<Document>(COLL_OUTBOX);
    (env, w, outbox)
}

/// Sets `set` on the outbox entries matching `filter`.
async fn plant(outbox: &Collection<Document>, filter: Document, set: Document) {
    outbox
        .update_many(filter, doc! {"$set": set})
        .await
        .unwrap();
}

/// `now` moved by `ms` milliseconds.
fn from_now(ms: i64) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + ms)
}

/// How many entries are not done.
async fn not_done(env: &Env) -> usize {
    env.entries()
        .await
        .iter()
        .filter(|x| x.status != OutboxStatus::Done)
        .count()
}

#[tokio::test]
async fn a_backlog_drains_earliest_first_and_nothing_behind_the_window_is_skipped() {
    let (env, w, outbox) = backlog_world("wk_window", 12).await;

    // A few batches: the window is bounded now (a full answer was seen).
    for _ in 0..3 {
        w.process_once().await.unwrap();
    }
    assert_drained_in_order(&env.entries().await);

    // An entry far behind the window (its lease expired long ago) and one not yet due (in ten minutes).
    let pending: Vec<_> = env
        .entries()
        .await
        .into_iter()
        .filter(|e| e.status == OutboxStatus::Pending)
        .collect();
    let (behind, future) = (pending[pending.len() - 1].id, pending[pending.len() - 2].id);
    let long_ago = from_now(-86_400_000);
    plant(
        &outbox,
        doc! {"_id": behind},
        doc! {"nextAttemptAt": long_ago, "lease": {"owner": "crashed", "until": long_ago}},
    )
    .await;
    plant(
        &outbox,
        doc! {"_id": future},
        doc! {"nextAttemptAt": from_now(600_000)},
    )
    .await;

    w.process_once().await.unwrap();
    let e = env.entries().await;
    let status = |id| e.iter().find(|x| x.id == id).unwrap().status;
    assert_eq!(
        status(behind),
        OutboxStatus::Done,
        "the entry behind the window is the earliest due and is claimed first"
    );

    let r = w.drain().await.unwrap();
    assert_eq!(r.dead, 0, "{r:?}");
    let e = env.entries().await;
    let left: Vec<_> = e
        .iter()
        .filter(|x| x.status == OutboxStatus::Pending)
        .collect();
    assert_eq!(
        left.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![future],
        "only the entry not yet due is left"
    );
    assert!(
        w.metrics().claim_widenings_total.get() >= 1,
        "draining a bounded window to its end widens it"
    );
    // Its time comes.
    plant(
        &outbox,
        doc! {"_id": future},
        doc! {"nextAttemptAt": DateTime::now()},
    )
    .await;
    w.drain().await.unwrap();
    assert_eq!(
        not_done(&env).await,
        0,
        "the retry is claimed once it is due"
    );
    env.assert_consistent().await;
    env.cleanup().await;
}

#[tokio::test]
async fn entries_another_worker_holds_at_the_head_are_paged_past_claim_after_claim() {
    let (env, w, outbox) = backlog_world("wk_window_held", 10).await;
    // The earliest 24 entries (three claim pages of 8) are held by a live worker elsewhere.
    let mut entries = env.entries().await;
    entries.sort_by_key(|e| e.next_attempt_at);
    let held: Vec<_> = entries.iter().take(24).map(|e| e.id).collect();
    plant(
        &outbox,
        doc! {"_id": {"$in": &held}},
        doc! {"lease": {"owner": "elsewhere", "until": from_now(600_000)}},
    )
    .await;
    for n in 1..=4 {
        let r = w.process_once().await.unwrap();
        assert_eq!(
            r.claimed, 4,
            "claim {n} takes a whole batch from behind the held entries: {r:?}"
        );
    }
    let e = env.entries().await;
    assert!(
        e.iter()
            .filter(|x| held.contains(&x.id))
            .all(|x| x.status == OutboxStatus::Pending),
        "held entries are left to their holder"
    );
    // Their holder dies: the leases expire and the rest drains.
    plant(
        &outbox,
        doc! {"_id": {"$in": &held}},
        doc! {"lease.until": DateTime::from_millis(1)},
    )
    .await;
    let r = w.drain().await.unwrap();
    assert_eq!(r.dead, 0, "{r:?}");
    assert_eq!(not_done(&env).await, 0);
    env.assert_consistent().await;
    env.cleanup().await;
}

/// Every done entry was due no later than every pending one: the drain went earliest first.
fn assert_drained_in_order(entries: &[tidemark_core::OutboxEntry]) {
    let done = entries.iter().filter(|e| e.status == OutboxStatus::Done);
    let last_done = done
        .map(|e| e.next_attempt_at)
        .max()
        .expect("something done");
    let first_pending = entries
        .iter()
        .filter(|e| e.status == OutboxStatus::Pending)
        .map(|e| e.next_attempt_at)
        .min()
        .expect("something pending");
    assert!(
        last_done <= first_pending,
        "done up to {last_done}, yet pending from {first_pending}"
    );
}

/// Entries an application wrote are claimed before an index build's queued ahead of them
/// (the build takes what live writes leave) among a claim's candidates (two batches, earliest
/// first), and the build's are claimed when no live one is left.
#[tokio::test]
async fn live_entries_are_claimed_before_a_builds_queued_ahead_of_them() {
    let (env, w, outbox) = backlog_world("wk_window_live", 2).await;
    // The two earliest entries become an index build's (for `v2`, an index this worker does
    // not have: they end `unchanged`): half a batch, what a build keeps queued by default. The
    // next four are live. A claim sees those six (a batch and a half).
    let build = doc! {"contentId": {"$regex": "^w0-[0-1]$"}};
    plant(&outbox, build, doc! {"indexes": ["v2"]}).await;
    let first = w.process_once().await.unwrap();
    assert_eq!(first.claimed, 4);
    let mut done: Vec<String> = env
        .entries()
        .await
        .into_iter()
        .filter(|e| e.status == OutboxStatus::Done)
        .map(|e| e.content_id)
        .collect();
    done.sort();
    assert_eq!(
        done,
        ["w0-2", "w0-3", "w0-4", "w0-5"],
        "the first batch takes the live entries behind the build's"
    );
    w.drain().await.unwrap();
    assert_eq!(
        not_done(&env).await,
        0,
        "the build's entries drain after them"
    );
    env.cleanup().await;
}

/// Document locks (`worker_locks`): a document another worker holds, its lock live, is left
/// to it claim after claim; documents whose locks expired (their holder died) are taken over
/// in the same claim as documents nobody held, and their locks are released after the batch.
#[tokio::test]
async fn live_locks_elsewhere_are_left_and_expired_ones_taken_over() {
    let mut cfg = test_config("wk_window_locks");
    cfg.worker.batch_size = 8;
    let env = Env::with_config(cfg).await;
    let w = env.worker();
    w.init().await.unwrap();
    spread_backlog(&env, 1, 6, Duration::ZERO).await;
    let docs: Vec<_> = env.entries().await.iter().map(|e| e.document_id).collect();
    let locks = env
        .store
        .database()
        .collection::<Document>(tidemark_worker::COLL_LOCKS);
    let lock = |d, owner: &str, until| doc! {"_id": d, "owner": owner, "until": until};
    locks
        .insert_many([
            lock(docs[0], "elsewhere", from_now(600_000)),
            lock(docs[1], "dead", DateTime::from_millis(1)),
            lock(docs[2], "dead", from_now(-1_000)),
        ])
        .await
        .unwrap();
    let r = w.process_once().await.unwrap();
    assert_eq!(
        (r.claimed, r.blocked),
        (5, 1),
        "two taken over, three free, one held: {r:?}"
    );
    let left: Vec<Document> = locks
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "the batch released its locks: {left:?}");
    assert_eq!(left[0].get_str("owner").unwrap(), "elsewhere");
    let r = w.process_once().await.unwrap();
    assert_eq!((r.claimed, r.blocked), (0, 1), "still held: {r:?}");
    assert_eq!(not_done(&env).await, 1);
    env.cleanup().await;
}
