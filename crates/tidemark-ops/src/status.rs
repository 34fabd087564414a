//! `status`: the outbox at a glance and whether it is healthy.
//!
//! Pending and dead counts, the lag (age of the oldest pending entry by `createdAt`), entries
//! done in the last minute, leases held per owner (pending entries with a lease whose `until`
//! is still ahead; expired leases are counted separately: their worker died or stalled), the
//! resume token age of every worker group (`sync_state.updatedAt`), and unfinished backfill
//! runs. Healthy means lag <= `status.max_lag` and dead <= `status.max_dead`.

use crate::{age_secs, ago, rfc3339, Ops, OpsError};
use bson::{doc, DateTime, Document};
use futures::TryStreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tidemark_core::config::StatusThresholds;
use tidemark_core::OutboxStatus;
use tidemark_core::{COLL_OUTBOX, COLL_SYNC_STATE};

/// Leases of one worker.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaseHolder {
    pub owner: String,
    /// Entries it holds.
    pub entries: u64,
    /// The latest `lease.until` among them.
    pub until: String,
}

/// Change stream position of one worker group.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupState {
    pub group: String,
    pub updated_at: String,
    pub age_seconds: f64,
    pub has_resume_token: bool,
}

/// The oldest pending entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OldestPending {
    pub id: String,
    pub content_id: String,
    pub created_at: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// What `tidemark status` reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub healthy: bool,
    /// Why it is unhealthy (empty when healthy).
    pub problems: Vec<String>,
    pub pending: u64,
    /// Pending entries due now or earlier (the rest wait for a retry backoff).
    pub due: u64,
    pub dead: u64,
    /// Age of the oldest pending entry, seconds (0 when nothing is pending).
    pub lag_seconds: f64,
    pub oldest_pending: Option<OldestPending>,
    pub done_last_minute: u64,
    pub leases: Vec<LeaseHolder>,
    /// Pending entries whose lease has expired (to be reclaimed by a live worker).
    pub expired_leases: u64,
    pub groups: Vec<GroupState>,
    /// Backfill runs started and not completed (`sync_state` ids `backfill:<run>`).
    pub unfinished_backfills: Vec<String>,
    /// Every index definition as `name (state, model)`; the active one first.
    pub indexes: Vec<String>,
    /// Embedding API tokens (and estimated cost) spent today (UTC) per index.
    pub tokens_today: Vec<tidemark_store::usage::DayUsage>,
    pub max_lag_seconds: f64,
    pub max_dead: u64,
}

/// Gathers the status. Only counts and small projections are read.
pub async fn status(ops: &Ops, thresholds: &StatusThresholds) -> Result<StatusReport, OpsError> {
    let db = ops.store.database();
    let outbox = db.collection::<Document>(COLL_OUTBOX);
    let now = DateTime::now();
    let pending = outbox
        .count_documents(doc! {"status": OutboxStatus::Pending})
        .await?;
    let due = outbox
        .count_documents(doc! {"status": OutboxStatus::Pending, "nextAttemptAt": {"$lte": now}})
        .await?;
    let dead = outbox
        .count_documents(doc! {"status": OutboxStatus::Dead})
        .await?;
    let done_last_minute = outbox
        .count_documents(
            doc! {"status": OutboxStatus::Done, "doneAt": {"$gte": ago(Duration::from_secs(60))}},
        )
        .await?;

    let oldest = outbox
        .find_one(doc! {"status": OutboxStatus::Pending})
        .sort(doc! {"createdAt": 1})
        .projection(doc! {"contentId": 1, "createdAt": 1, "attempts": 1, "lastError": 1})
        .await?;
    let mut lag_seconds = 0.0;
    let oldest_pending = match oldest {
        Some(d) => {
            let created = d
                .get_datetime("createdAt")
                .map_err(|e| OpsError::Decode(format!("outbox createdAt: {e}")))?;
            lag_seconds = age_secs(*created);
            Some(OldestPending {
                id: d
                    .get_object_id("_id")
                    .map(|i| i.to_hex())
                    .unwrap_or_default(),
                content_id: d.get_str("contentId").unwrap_or_default().to_string(),
                created_at: rfc3339(*created),
                attempts: match d.get("attempts") {
                    Some(bson::Bson::Int32(i)) => *i as i64,
                    Some(bson::Bson::Int64(i)) => *i,
                    _ => 0,
                },
                last_error: d.get_str("lastError").ok().map(str::to_string),
            })
        }
        None => None,
    };

    // Leased entries are bounded by workers x batch size: small, read them all.
    let mut held: BTreeMap<String, (u64, DateTime)> = BTreeMap::new();
    let mut expired_leases = 0;
    let mut cursor = outbox
        .find(doc! {"status": OutboxStatus::Pending, "lease": {"$exists": true, "$ne": null}})
        .projection(doc! {"lease": 1})
        .await?;
    while let Some(d) = cursor.try_next().await? {
        let Ok(lease) = d.get_document("lease") else {
            continue;
        };
        let owner = lease.get_str("owner").unwrap_or("?").to_string();
        let Ok(until) = lease.get_datetime("until") else {
            continue;
        };
        if *until <= now {
            expired_leases += 1;
            continue;
        }
        let e = held.entry(owner).or_insert((0, *until));
        e.0 += 1;
        if *until > e.1 {
            e.1 = *until;
        }
    }
    let leases = held
        .into_iter()
        .map(|(owner, (entries, until))| LeaseHolder {
            owner,
            entries,
            until: rfc3339(until),
        })
        .collect();

    let mut groups = Vec::new();
    let mut unfinished_backfills = Vec::new();
    let mut cursor = db
        .collection::<Document>(COLL_SYNC_STATE)
        .find(doc! {})
        .await?;
    while let Some(d) = cursor.try_next().await? {
        let id = match d.get("_id") {
            Some(bson::Bson::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => continue,
        };
        if let Some(run) = id.strip_prefix(crate::backfill::CHECKPOINT_PREFIX) {
            if !d.contains_key("completedAt") {
                unfinished_backfills.push(run.to_string());
            }
            continue;
        }
        let updated = d.get_datetime("updatedAt").ok().copied();
        groups.push(GroupState {
            group: id,
            updated_at: updated.map(rfc3339).unwrap_or_default(),
            age_seconds: updated.map(age_secs).unwrap_or(f64::INFINITY),
            has_resume_token: matches!(d.get("resumeToken"), Some(bson::Bson::Document(_))),
        });
    }

    let mut problems = Vec::new();
    let max_lag = thresholds.max_lag.as_secs_f64();
    if lag_seconds > max_lag {
        problems.push(format!(
            "lag {} exceeds status.max_lag {}",
            human(lag_seconds),
            human(max_lag)
        ));
    }
    if dead > thresholds.max_dead {
        problems.push(format!(
            "{dead} dead entries exceed status.max_dead {} (see `tidemark dlq list`)",
            thresholds.max_dead
        ));
    }
    let mut defs = tidemark_store::indexes::Indexes::new(db).list().await?;
    defs.sort_by_key(|d| d.state != tidemark_core::index_def::IndexState::Active);
    let usage = tidemark_store::usage::Usage::new(db);
    let today = usage
        .on(&tidemark_store::usage::day_of(bson::DateTime::now()))
        .await?;
    let indexes = defs
        .iter()
        .map(|d| {
            let spent = today
                .iter()
                .find(|u| u.index == d.name)
                .map(spent_text)
                .unwrap_or_default();
            let build = if d.state == tidemark_core::index_def::IndexState::Building {
                if d.build_complete {
                    ", build enqueued"
                } else {
                    ", build in progress"
                }
            } else {
                ""
            };
            format!(
                "{} ({}, {}{build}{spent})",
                d.name,
                d.state.as_str(),
                d.embedder.model
            )
        })
        .collect();
    Ok(StatusReport {
        indexes,
        tokens_today: today,
        healthy: problems.is_empty(),
        problems,
        pending,
        due,
        dead,
        lag_seconds,
        oldest_pending,
        done_last_minute,
        leases,
        expired_leases,
        groups,
        unfinished_backfills,
        max_lag_seconds: max_lag,
        max_dead: thresholds.max_dead,
    })
}

/// Seconds as a short human duration (`1m 5s`).
pub fn human(secs: f64) -> String {
    if !secs.is_finite() {
        return "never".into();
    }
    humantime::format_duration(Duration::from_secs(secs.round() as u64)).to_string()
}

impl StatusReport {
    /// The report as text lines for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let state = if self.healthy { "HEALTHY" } else { "UNHEALTHY" };
        s.push_str(&format!("{state}\n"));
        for p in &self.problems {
            s.push_str(&format!("  ! {p}\n"));
        }
        s.push_str(&format!(
            "outbox: {} pending ({} due), {} dead, {} done in the last minute\n",
            self.pending, self.due, self.dead, self.done_last_minute
        ));
        s.push_str(&format!(
            "lag: {} (max {})",
            human(self.lag_seconds),
            human(self.max_lag_seconds)
        ));
        if let Some(o) = &self.oldest_pending {
            s.push_str(&format!(
                "; oldest pending {} ({}) since {}, {} attempts",
                o.id, o.content_id, o.created_at, o.attempts
            ));
            if let Some(e) = &o.last_error {
                s.push_str(&format!(", last error: {e}"));
            }
        }
        s.push('\n');
        if self.leases.is_empty() {
            s.push_str("leases: none held\n");
        }
        for l in &self.leases {
            s.push_str(&format!(
                "lease: {} holds {} entries until {}\n",
                l.owner, l.entries, l.until
            ));
        }
        if self.expired_leases > 0 {
            s.push_str(&format!(
                "expired leases: {} (their worker stopped; a live worker reclaims them)\n",
                self.expired_leases
            ));
        }
        if self.groups.is_empty() {
            s.push_str("resume tokens: none saved yet\n");
        }
        for g in &self.groups {
            s.push_str(&format!(
                "group {}: resume token saved {} ago ({})\n",
                g.group,
                human(g.age_seconds),
                g.updated_at
            ));
        }
        for b in &self.unfinished_backfills {
            s.push_str(&format!(
                "backfill run `{b}` not finished (resume with the same options)\n"
            ));
        }
        if !self.indexes.is_empty() {
            s.push_str(&format!("indexes: {}\n", self.indexes.join(", ")));
        }
        s
    }
}

/// `, 12345 tokens today` (and the cost when priced).
fn spent_text(u: &tidemark_store::usage::DayUsage) -> String {
    if u.cost > 0.0 {
        format!(", {} tokens today (cost ~{:.4})", u.tokens, u.cost)
    } else {
        format!(", {} tokens today", u.tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_reads_plainly() {
        let u = |tokens, cost| tidemark_store::usage::DayUsage {
            index: "main".into(),
            tokens,
            cost,
        };
        assert_eq!(spent_text(&u(1200, 0.0)), ", 1200 tokens today");
        assert_eq!(
            spent_text(&u(1200, 0.024)),
            ", 1200 tokens today (cost ~0.0240)"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(65.2), "1m 5s");
        assert_eq!(human(f64::INFINITY), "never");
    }
}
