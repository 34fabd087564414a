//! `migrate rollback --migration ID`: removes exactly what one migration created — its
//! documents (from the ledger, and any document carrying `metadata.legacy.migration == ID`
//! that a killed run did not record), their outbox entries (by `documentId`) and their vectors
//! (vector id = document `_id` hex) — and its checkpoints. A document whose version is higher
//! than the one the migration wrote was changed by someone else since: it is reported and left
//! alone (with its entries and vector) unless `force`. The legacy side is never touched.
//! Stop the workers first: an entry a worker holds while its document goes away ends as
//! `deleted` or dead, harmlessly, but the vector it writes would be an orphan.

use crate::ledger::Row;
use crate::state::KIND_ROLLBACK;
use crate::{MigrateError, Target};
use bson::{doc, oid::ObjectId, DateTime, Document};
use futures::TryStreamExt;
use serde::Serialize;
use std::collections::HashMap;
use tidemark_core::{COLL_DOCUMENTS, COLL_OUTBOX};

const PAGE: usize = 500;
/// Ledger documents read at once (each holds the rows of one written batch).
const LEDGER_PAGE: usize = 8;

/// A document left alone.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    pub content_id: String,
    pub document_id: String,
    pub migrated_version: i64,
    pub current_version: i64,
}

/// What a rollback removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RollbackReport {
    pub migration: String,
    pub forced: bool,
    pub documents_removed: u64,
    pub outbox_removed: u64,
    pub vectors_removed: u64,
    /// Recorded documents that no longer existed.
    pub already_gone: u64,
    pub refused: Vec<Refused>,
    pub checkpoints_removed: u64,
}

impl RollbackReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "rollback of migration `{}`{}: removed {} documents, {} outbox entries, {} vectors, {} checkpoints ({} recorded documents were already gone)\n",
            self.migration,
            if self.forced { " (forced)" } else { "" },
            self.documents_removed,
            self.outbox_removed,
            self.vectors_removed,
            self.checkpoints_removed,
            self.already_gone
        );
        if !self.refused.is_empty() {
            s.push_str(&format!(
                "left alone {} documents changed since the migration (--force removes them):\n",
                self.refused.len()
            ));
            for r in &self.refused {
                s.push_str(&format!(
                    "  {} (version {} now, {} written by the migration)\n",
                    r.content_id, r.current_version, r.migrated_version
                ));
            }
        }
        s
    }
}

struct Rollback<'a> {
    target: &'a Target,
    migration: &'a str,
    force: bool,
    vectors: Option<String>,
    report: RollbackReport,
}

impl Rollback<'_> {
    fn documents(&self) -> mongodb::Collection<Document> {
        self.target.store.database().collection(COLL_DOCUMENTS)
    }

    /// Removes the documents of these ledger rows that may go; returns the rows done with.
    async fn page(&mut self, rows: &[Row]) -> Result<Vec<ObjectId>, MigrateError> {
        let ids: Vec<ObjectId> = rows.iter().map(|r| r.document_id).collect();
        let current: HashMap<ObjectId, i64> = self
            .documents()
            .find(doc! {"_id": {"$in": &ids}})
            .projection(doc! {"version": 1})
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .into_iter()
            .filter_map(|d| Some((d.get_object_id("_id").ok()?, d.get_i64("version").ok()?)))
            .collect();
        let mut remove = Vec::new();
        let mut done = Vec::new();
        for r in rows {
            match current.get(&r.document_id) {
                None => {
                    self.report.already_gone += 1;
                    done.push(r.document_id);
                }
                Some(v) if *v > r.version && !self.force => self.report.refused.push(Refused {
                    content_id: r.content_id.clone(),
                    document_id: r.document_id.to_hex(),
                    migrated_version: r.version,
                    current_version: *v,
                }),
                Some(_) => remove.push(r.document_id),
            }
        }
        self.remove(&remove).await?;
        done.extend(remove);
        Ok(done)
    }

    /// Entries, then documents, then vectors of these documents.
    async fn remove(&mut self, ids: &[ObjectId]) -> Result<(), MigrateError> {
        if ids.is_empty() {
            return Ok(());
        }
        let db = self.target.store.database();
        let o = db
            .collection::<Document>(COLL_OUTBOX)
            .delete_many(doc! {"documentId": {"$in": ids}})
            .await?;
        self.report.outbox_removed += o.deleted_count;
        let d = self
            .documents()
            .delete_many(doc! {"_id": {"$in": ids}})
            .await?;
        self.report.documents_removed += d.deleted_count;
        if let Some(coll) = &self.vectors {
            let vids: Vec<String> = ids.iter().map(tidemark_core::vector_id).collect();
            let present = self.target.chroma.get(coll, &vids, false).await?.len() as u64;
            self.target.chroma.delete(coll, &vids).await?;
            self.report.vectors_removed += present;
        }
        Ok(())
    }

    /// The ledger's documents in pages: each page's rows are checked and removed
    /// [`PAGE`] at a time, then the rows done with leave the ledger (refused ones stay).
    async fn ledger_pass(&mut self) -> Result<(), MigrateError> {
        let ledger = self.target.ledger();
        let mut after: Option<ObjectId> = None;
        loop {
            let batches = ledger.page(self.migration, after, LEDGER_PAGE).await?;
            let Some(last) = batches.last() else {
                return Ok(());
            };
            after = Some(last.id);
            let rows: Vec<Row> = batches.iter().flat_map(|b| b.rows.clone()).collect();
            let mut done = Vec::new();
            for part in rows.chunks(PAGE) {
                done.extend(self.page(part).await?);
            }
            let ids: Vec<ObjectId> = batches.iter().map(|b| b.id).collect();
            ledger.settle(&ids, &done).await?;
            if batches.len() < LEDGER_PAGE {
                return Ok(());
            }
        }
    }

    /// Documents marked with this migration that the ledger missed (a run killed between its
    /// commit and its ledger write): nobody else writes this marker, so they go too.
    async fn marker_pass(&mut self) -> Result<(), MigrateError> {
        let refused: Vec<ObjectId> = self
            .report
            .refused
            .iter()
            .filter_map(|r| ObjectId::parse_str(&r.document_id).ok())
            .collect();
        loop {
            let ids: Vec<ObjectId> = self
                .documents()
                .find(doc! {"metadata.legacy.migration": self.migration, "_id": {"$nin": &refused}})
                .projection(doc! {"_id": 1})
                .limit(PAGE as i64)
                .await?
                .try_collect::<Vec<Document>>()
                .await?
                .iter()
                .filter_map(|d| d.get_object_id("_id").ok())
                .collect();
            if ids.is_empty() {
                return Ok(());
            }
            self.remove(&ids).await?;
        }
    }
}

/// Rolls back migration `migration`.
pub async fn rollback(
    target: &Target,
    migration: &str,
    force: bool,
) -> Result<RollbackReport, MigrateError> {
    let vectors = target
        .chroma
        .get_collection(&target.collection())
        .await?
        .map(|c| c.id);
    let mut rb = Rollback {
        target,
        migration,
        force,
        vectors,
        report: RollbackReport {
            migration: migration.to_string(),
            forced: force,
            ..Default::default()
        },
    };
    target.ledger().prepare().await?;
    rb.ledger_pass().await?;
    rb.marker_pass().await?;
    rb.report.checkpoints_removed = target.state().delete_checkpoints(migration).await?;
    let id = format!("{migration}-{}", DateTime::now().timestamp_millis());
    target
        .state()
        .save_report(KIND_ROLLBACK, &id, migration, &rb.report)
        .await?;
    tracing::info!(
        migration,
        removed = rb.report.documents_removed,
        refused = rb.report.refused.len(),
        "migrate rollback finished"
    );
    Ok(rb.report)
}
