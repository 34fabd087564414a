//! Accounting: `migrate verify` reads the legacy side through the same scan as a run and
//! checks that every record is accounted for — migrated (its contentId holds a document of this
//! migration with the record's `_id` and text), merged into another record's document, or
//! skipped with a reason — and that the counts add up. `migrate status` shows the checkpoints
//! and the latest reports kept in `migrations`.

use crate::mapping::Mapping;
use crate::plan::check;
use crate::record::{content_id, LEGACY_KEY};
use crate::source::{Scan, Source};
use crate::state::{KIND_ROLLBACK, KIND_RUN};
use crate::{MigrateError, Target};
use bson::{doc, Document};
use futures::TryStreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// At most this many unaccounted records are listed per collection.
const LIST_LIMIT: usize = 100;

/// One legacy record that is not accounted for.
#[derive(Debug, Clone, Serialize)]
pub struct Unaccounted {
    pub id: String,
    pub legacy_id: String,
    pub content_id: String,
    pub reason: String,
}

/// The accounting of one collection: records = migrated + merged + skipped + unaccounted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CollectionAccount {
    pub collection: String,
    pub records: u64,
    pub migrated: u64,
    pub merged: u64,
    pub skipped: BTreeMap<String, u64>,
    pub unaccounted: u64,
    pub unaccounted_list: Vec<Unaccounted>,
}

impl CollectionAccount {
    pub fn adds_up(&self) -> bool {
        self.migrated + self.merged + self.skipped.values().sum::<u64>() + self.unaccounted
            == self.records
    }
}

/// The result of `migrate verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub migration: String,
    pub collections: Vec<CollectionAccount>,
    pub unaccounted: u64,
}

impl Account {
    pub fn clean(&self) -> bool {
        self.unaccounted == 0 && self.collections.iter().all(CollectionAccount::adds_up)
    }

    pub fn to_text(&self) -> String {
        let mut s = format!("migration `{}`\n", self.migration);
        for c in &self.collections {
            let skips: Vec<String> = c.skipped.iter().map(|(k, v)| format!("{v} {k}")).collect();
            s.push_str(&format!(
                "  {}: {} records = {} migrated + {} merged + {} skipped ({}) + {} unaccounted\n",
                c.collection,
                c.records,
                c.migrated,
                c.merged,
                c.skipped.values().sum::<u64>(),
                if skips.is_empty() {
                    "-".into()
                } else {
                    skips.join(", ")
                },
                c.unaccounted
            ));
            for u in &c.unaccounted_list {
                s.push_str(&format!(
                    "    id `{}` (_id {}): {}\n",
                    u.id, u.legacy_id, u.reason
                ));
            }
        }
        s.push_str(if self.clean() {
            "every legacy record is accounted for\n"
        } else {
            "some legacy records are NOT accounted for: run `tidemark migrate run` again\n"
        });
        s
    }
}

/// What verify needs of a stored document.
struct Stored {
    legacy_oid: Option<String>,
    migration: Option<String>,
    hash: String,
}

async fn stored_of(
    target: &Target,
    ids: &[String],
) -> Result<HashMap<String, Stored>, MigrateError> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        let docs: Vec<Document> = target
            .store
            .database()
            .collection::<Document>(tidemark_core::COLL_DOCUMENTS)
            .find(doc! {"contentId": {"$in": chunk}})
            .projection(doc! {"contentId": 1, "contentHash": 1, "metadata.legacy": 1})
            .await?
            .try_collect()
            .await?;
        for d in docs {
            let legacy = d
                .get_document("metadata")
                .ok()
                .and_then(|m| m.get_document(LEGACY_KEY).ok());
            let s = Stored {
                legacy_oid: legacy
                    .and_then(|l| l.get_str("_id").ok())
                    .map(str::to_string),
                migration: legacy
                    .and_then(|l| l.get_str("migration").ok())
                    .map(str::to_string),
                hash: d.get_str("contentHash").unwrap_or_default().to_string(),
            };
            out.insert(d.get_str("contentId").unwrap_or_default().to_string(), s);
        }
    }
    Ok(out)
}

async fn account_of(
    scan: &Scan,
    migration: &str,
    target: &Target,
) -> Result<CollectionAccount, MigrateError> {
    let mut acc = CollectionAccount {
        collection: scan.collection.clone(),
        records: scan.records,
        skipped: scan.skip_counts(),
        ..Default::default()
    };
    let cids: Vec<String> = scan
        .dedup
        .winners
        .keys()
        .map(|id| content_id(&scan.collection, id))
        .collect();
    let stored = stored_of(target, &cids).await?;
    let mut ok_ids = std::collections::HashSet::new();
    let mut winners: Vec<_> = scan.dedup.winners.values().collect();
    winners.sort_by_key(|w| w.oid);
    for w in winners {
        let cid = content_id(&scan.collection, &w.id);
        let problem = match stored.get(&cid) {
            None => Some("not migrated yet".to_string()),
            Some(s) if s.migration.as_deref() != Some(migration) => Some(format!(
                "`{cid}` was not written by migration `{migration}`"
            )),
            Some(s)
                if s.legacy_oid.as_deref() != Some(w.oid.to_hex().as_str()) || s.hash != w.hash =>
            {
                Some(format!(
                    "changed since the last run (`{cid}` holds another version)"
                ))
            }
            Some(_) => None,
        };
        match problem {
            None => {
                acc.migrated += 1;
                ok_ids.insert(w.id.clone());
            }
            Some(reason) => unaccounted(&mut acc, &w.id, &w.oid.to_hex(), cid, reason),
        }
    }
    for m in &scan.dedup.merged {
        if ok_ids.contains(&m.id) {
            acc.merged += 1;
        } else {
            let cid = content_id(&scan.collection, &m.id);
            let reason = format!("merged into `{cid}`, which is not migrated");
            unaccounted(&mut acc, &m.id, &m.oid.to_hex(), cid, reason);
        }
    }
    Ok(acc)
}

fn unaccounted(acc: &mut CollectionAccount, id: &str, oid: &str, cid: String, reason: String) {
    acc.unaccounted += 1;
    if acc.unaccounted_list.len() < LIST_LIMIT {
        acc.unaccounted_list.push(Unaccounted {
            id: id.to_string(),
            legacy_id: oid.to_string(),
            content_id: cid,
            reason,
        });
    }
}

/// `migrate verify`: accounts for every legacy record of the mapped collections.
pub async fn verify(
    mapping: &Mapping,
    source: &Source,
    target: &Target,
) -> Result<Account, MigrateError> {
    let scans = check(mapping, source, &target.model, target.store.limits()).await?;
    let mut collections = Vec::new();
    for s in &scans {
        collections.push(account_of(s, &mapping.migration.id, target).await?);
    }
    Ok(Account {
        migration: mapping.migration.id.clone(),
        unaccounted: collections.iter().map(|c| c.unaccounted).sum(),
        collections,
    })
}

/// `migrate status`: checkpoints, document counts and the latest reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub checkpoints: Vec<serde_json::Value>,
    /// Documents recorded per migration.
    pub documents: BTreeMap<String, u64>,
    pub last_runs: Vec<serde_json::Value>,
    pub last_rollbacks: Vec<serde_json::Value>,
}

fn json_of(d: Document) -> serde_json::Value {
    bson::Bson::Document(d).into_relaxed_extjson()
}

pub async fn status(target: &Target, migration: Option<&str>) -> Result<Status, MigrateError> {
    let state = target.state();
    let checkpoints = state
        .checkpoints(migration)
        .await?
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "migration": c.migration, "collection": c.collection, "state": c.state,
                "runId": c.run_id, "lastId": c.last_id.map(|o| o.to_hex()),
                "updatedAt": c.updated_at.try_to_rfc3339_string().unwrap_or_default(),
            })
        })
        .collect();
    let documents = target.ledger().counts(migration).await?;
    let runs = state.reports(KIND_RUN, migration, 5).await?;
    let rollbacks = state.reports(KIND_ROLLBACK, migration, 5).await?;
    Ok(Status {
        checkpoints,
        documents,
        last_runs: runs.into_iter().map(json_of).collect(),
        last_rollbacks: rollbacks.into_iter().map(json_of).collect(),
    })
}
