//! `tidemark status` against the real services: JSON fields (counts, lag, done in the last
//! minute, leases held and expired, resume token age per group, unfinished backfills) and the
//! exit code as a probe: 0 healthy, 2 when lag or dead entries exceed the configured thresholds.

use crate::ops_support;

use bson::{doc, oid::ObjectId, DateTime};
use ops_support::OpsEnv;
use tidemark_core::{Lease, Op, OutboxEntry, OutboxStatus};
use tidemark_ops::backfill::{backfill, BackfillOptions};
use tidemark_ops::NoProgress;

fn secs_ago(s: i64) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() - s * 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_and_exit_code_follow_the_outbox() {
    let env = OpsEnv::new("ops_status").await;
    let (code, s) = env.cli_json(&["status", "--json"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["healthy"], true);
    assert_eq!(
        (s["pending"].as_u64(), s["dead"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(s["lagSeconds"], 0.0);

    env.put_docs("s", "t", 3).await;
    env.drain().await;
    let (code, s) = env.cli_json(&["status", "--json"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["doneLastMinute"], 3);
    assert_eq!(s["pending"], 0);

    // Two fresh pending entries, one leased by a live worker; an old one with an expired lease.
    env.put_docs("p", "t", 2).await;
    let fresh = env.entries(doc! {"status": "pending"}).await;
    env.store
        .outbox()
        .update_one(
            doc! {"_id": fresh[0].id},
            doc! {"$set": {"lease": {"owner": "worker-a", "until": DateTime::from_millis(DateTime::now().timestamp_millis() + 30_000)}}},
        )
        .await
        .unwrap();
    let mut old = OutboxEntry::new_pending(ObjectId::new(), "old-1", Op::Upsert, 1, "h");
    old.created_at = secs_ago(120);
    old.next_attempt_at = secs_ago(120);
    old.lease = Some(Lease {
        owner: "worker-gone".into(),
        until: secs_ago(60),
    });
    env.store.outbox().insert_one(&old).await.unwrap();
    let mut dead = OutboxEntry::new_pending(ObjectId::new(), "dead-1", Op::Upsert, 1, "h");
    dead.status = OutboxStatus::Dead;
    dead.last_error = Some("boom".into());
    env.store.outbox().insert_one(&dead).await.unwrap();
    env.store
        .database()
        .collection::<bson::Document>("sync_state")
        .insert_one(
            doc! {"_id": "default", "resumeToken": {"_data": "00"}, "updatedAt": secs_ago(10)},
        )
        .await
        .unwrap();
    let opts = BackfillOptions {
        max_batches: Some(1),
        batch_size: 1,
        ..Default::default()
    };
    backfill(&env.ops, &opts, &NoProgress).await.unwrap();

    let (code, s) = env.cli_json(&["status", "--json"]);
    assert_eq!(code, 2, "unhealthy must exit 2: {s}");
    assert_eq!(s["healthy"], false);
    assert_eq!(s["pending"], 4, "{s}"); // 2 fresh + old + 1 from the backfill batch
    assert_eq!(s["dead"], 1);
    let lag = s["lagSeconds"].as_f64().unwrap();
    assert!((119.0..200.0).contains(&lag), "lag {lag}");
    assert_eq!(s["oldestPending"]["contentId"], "old-1");
    assert_eq!(s["leases"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["leases"][0]["owner"], "worker-a");
    assert_eq!(s["leases"][0]["entries"], 1);
    assert_eq!(s["expiredLeases"], 1);
    let problems = s["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{s}");
    assert!(problems[0].as_str().unwrap().contains("lag"));
    assert!(problems[1].as_str().unwrap().contains("dead"));
    assert_eq!(
        s["groups"].as_array().unwrap().len(),
        1,
        "backfill checkpoints are not groups: {s}"
    );
    assert_eq!(s["groups"][0]["group"], "default");
    assert!(s["groups"][0]["ageSeconds"].as_f64().unwrap() >= 10.0);
    assert_eq!(s["groups"][0]["hasResumeToken"], true);
    assert_eq!(s["unfinishedBackfills"][0], "all");

    // Looser thresholds make the same state healthy.
    let (code, out, _) = env.cli_env(
        &[
            ("TIDEMARK_STATUS_MAX_LAG", "1h"),
            ("TIDEMARK_STATUS_MAX_DEAD", "1"),
        ],
        &["status"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HEALTHY"), "{out}");
    let (code, out, _) = env.cli(&["status"]);
    assert_eq!(code, 2);
    assert!(
        out.starts_with("UNHEALTHY") && out.contains("worker-a holds 1 entries"),
        "{out}"
    );
    env.cleanup().await;
}
