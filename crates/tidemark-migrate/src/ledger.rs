//! The migration ledger: which documents a migration wrote, at which version, so rollback
//! removes exactly those and refuses documents an application changed since.
//!
//! One ledger document per written batch (`migration_ledger`: `{_id, migration, collection,
//! rows: [{documentId, contentId, version}]}`), not one per document: a batch of 100 records
//! costs the server one more insert, not 100 (a run of 3,000 records spent about a sixth of its
//! time on per-document rows; BENCHMARKS.md, 2026-12-08). A document has at most one row in
//! the whole ledger: a run that writes it again pulls its old row first, and rows are only
//! added for documents that have none.
//!
//! Rows of the earlier shape (`migration_documents`, one document per row, `_id` = the
//! document's) are moved into batch documents by [`Ledger::prepare`], before a run or a
//! rollback, in one transaction per page; `status` counts both shapes without writing.

use crate::MigrateError;
use bson::{doc, oid::ObjectId, Document};
use futures::TryStreamExt;
use mongodb::{Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

pub const COLL_LEDGER: &str = "migration_ledger";
/// The earlier shape: one row per document.
pub const COLL_LEDGER_V1: &str = "migration_documents";
/// Rows per ledger document at most (a batch of more is split; 1,000 rows stay far below
/// MongoDB's 16 MiB document limit whatever the contentId length).
const ROWS_PER_DOC: usize = 1000;

/// A document a migration wrote, at the version it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub document_id: ObjectId,
    pub content_id: String,
    pub version: i64,
}

/// One ledger document: the rows of one written batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub migration: String,
    pub collection: String,
    pub rows: Vec<Row>,
}

/// A row of the earlier shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RowV1 {
    #[serde(rename = "_id")]
    document_id: ObjectId,
    migration: String,
    content_id: String,
    version: i64,
    collection: String,
}

/// Handle on the ledger of one tidemark database.
#[derive(Clone)]
pub struct Ledger {
    db: Database,
}

impl Ledger {
    pub fn new(db: Database) -> Ledger {
        Ledger { db }
    }

    fn batches(&self) -> Collection<Batch> {
        self.db.collection(COLL_LEDGER)
    }

    fn v1(&self) -> Collection<Document> {
        self.db.collection(COLL_LEDGER_V1)
    }

    /// Makes the ledger ready for writing: the index that finds a document's row, and the rows
    /// of the earlier shape moved into batch documents.
    pub async fn prepare(&self) -> Result<(), MigrateError> {
        self.batches()
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"rows.documentId": 1})
                    .build(),
            )
            .await?;
        self.upgrade().await
    }

    /// Moves rows of the earlier shape, a page at a time: each page's batch documents are
    /// inserted and its rows deleted in one transaction, so a killed upgrade moves a page
    /// entirely or not at all.
    async fn upgrade(&self) -> Result<(), MigrateError> {
        loop {
            let page: Vec<Document> = self
                .v1()
                .find(doc! {})
                .sort(doc! {"_id": 1})
                .limit(ROWS_PER_DOC as i64)
                .await?
                .try_collect()
                .await?;
            if page.is_empty() {
                return Ok(());
            }
            let ids: Vec<ObjectId> = page
                .iter()
                .filter_map(|d| d.get_object_id("_id").ok())
                .collect();
            let rows = page
                .into_iter()
                .map(|d| {
                    bson::from_document::<RowV1>(d)
                        .map_err(|e| MigrateError::Decode(format!("a `{COLL_LEDGER_V1}` row: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let batches = group_v1(rows);
            let mut session = self.db.client().start_session().await?;
            session.start_transaction().await?;
            self.batches()
                .insert_many(batches)
                .session(&mut session)
                .await?;
            self.v1()
                .delete_many(doc! {"_id": {"$in": &ids}})
                .session(&mut session)
                .await?;
            session.commit_transaction().await?;
            tracing::info!(
                rows = ids.len(),
                "migration ledger rows moved to batch documents"
            );
        }
    }

    /// Records documents just written: `created` ones (new `_id`s, no row yet) and `replaced`
    /// ones (new versions of documents that may have a row, which is pulled first).
    pub async fn record(
        &self,
        migration: &str,
        collection: &str,
        created: Vec<Row>,
        replaced: Vec<Row>,
    ) -> Result<(), MigrateError> {
        if !replaced.is_empty() {
            let ids: Vec<ObjectId> = replaced.iter().map(|r| r.document_id).collect();
            self.batches()
                .update_many(
                    doc! {"rows.documentId": {"$in": &ids}},
                    doc! {"$pull": {"rows": {"documentId": {"$in": &ids}}}},
                )
                .await?;
            self.batches()
                .delete_many(doc! {"migration": migration, "rows": {"$size": 0}})
                .await?;
        }
        self.insert(migration, collection, created.into_iter().chain(replaced))
            .await
    }

    /// Adds the rows that are missing (documents written by a run killed before its ledger
    /// write); rows already recorded are left as they are.
    pub async fn ensure(
        &self,
        migration: &str,
        collection: &str,
        rows: Vec<Row>,
    ) -> Result<(), MigrateError> {
        if rows.is_empty() {
            return Ok(());
        }
        let ids: Vec<ObjectId> = rows.iter().map(|r| r.document_id).collect();
        let found: Vec<Document> = self
            .batches()
            .clone_with_type::<Document>()
            .find(doc! {"rows.documentId": {"$in": &ids}})
            .projection(doc! {"rows.documentId": 1})
            .await?
            .try_collect()
            .await?;
        let have: HashSet<ObjectId> = found.iter().flat_map(row_ids).collect();
        let missing = rows.into_iter().filter(|r| !have.contains(&r.document_id));
        self.insert(migration, collection, missing).await
    }

    async fn insert(
        &self,
        migration: &str,
        collection: &str,
        rows: impl Iterator<Item = Row>,
    ) -> Result<(), MigrateError> {
        let rows: Vec<Row> = rows.collect();
        if !rows.is_empty() {
            self.batches()
                .insert_many(batches_of(migration, collection, &rows))
                .await?;
        }
        Ok(())
    }

    /// Up to `limit` batch documents of `migration` after `after`, in `_id` order.
    pub async fn page(
        &self,
        migration: &str,
        after: Option<ObjectId>,
        limit: usize,
    ) -> Result<Vec<Batch>, MigrateError> {
        let mut filter = doc! {"migration": migration};
        if let Some(a) = after {
            filter.insert("_id", doc! {"$gt": a});
        }
        Ok(self
            .batches()
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(limit as i64)
            .await?
            .try_collect()
            .await?)
    }

    /// Takes the rows of documents `done` out of these batch documents and deletes the batch
    /// documents left empty.
    pub async fn settle(
        &self,
        batches: &[ObjectId],
        done: &[ObjectId],
    ) -> Result<(), MigrateError> {
        if batches.is_empty() {
            return Ok(());
        }
        if !done.is_empty() {
            self.batches()
                .update_many(
                    doc! {"_id": {"$in": batches}},
                    doc! {"$pull": {"rows": {"documentId": {"$in": done}}}},
                )
                .await?;
        }
        self.batches()
            .delete_many(doc! {"_id": {"$in": batches}, "rows": {"$size": 0}})
            .await?;
        Ok(())
    }

    /// Documents recorded per migration (all, or one), in both shapes; writes nothing.
    pub async fn counts(
        &self,
        migration: Option<&str>,
    ) -> Result<BTreeMap<String, u64>, MigrateError> {
        let matching = |pipeline: Vec<Document>| match migration {
            Some(m) => [vec![doc! {"$match": {"migration": m}}], pipeline].concat(),
            None => pipeline,
        };
        let mut counts = BTreeMap::new();
        let batches = matching(vec![
            doc! {"$project": {"migration": 1, "n": {"$size": "$rows"}}},
            doc! {"$group": {"_id": "$migration", "n": {"$sum": "$n"}}},
        ]);
        let v1 = matching(vec![
            doc! {"$group": {"_id": "$migration", "n": {"$sum": 1}}},
        ]);
        for (coll, pipeline) in [(self.batches().clone_with_type(), batches), (self.v1(), v1)] {
            let rows: Vec<Document> = coll.aggregate(pipeline).await?.try_collect().await?;
            for d in rows {
                let n = d
                    .get_i32("n")
                    .map(i64::from)
                    .or_else(|_| d.get_i64("n"))
                    .unwrap_or(0);
                *counts
                    .entry(d.get_str("_id").unwrap_or("?").to_string())
                    .or_insert(0) += n.max(0) as u64;
            }
        }
        Ok(counts)
    }
}

/// The document ids of a ledger document projected to `rows.documentId`.
fn row_ids(d: &Document) -> Vec<ObjectId> {
    d.get_array("rows")
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r.as_document()?.get_object_id("documentId").ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `rows` as ledger documents of at most [`ROWS_PER_DOC`] rows each, in the order given.
fn batches_of(migration: &str, collection: &str, rows: &[Row]) -> Vec<Batch> {
    rows.chunks(ROWS_PER_DOC)
        .map(|part| Batch {
            id: ObjectId::new(),
            migration: migration.into(),
            collection: collection.into(),
            rows: part.to_vec(),
        })
        .collect()
}

/// Rows of the earlier shape as batch documents: one per (migration, collection) and at most
/// [`ROWS_PER_DOC`] rows, in the order given.
fn group_v1(rows: Vec<RowV1>) -> Vec<Batch> {
    let mut groups: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.migration, r.collection))
            .or_default()
            .push(Row {
                document_id: r.document_id,
                content_id: r.content_id,
                version: r.version,
            });
    }
    groups
        .iter()
        .flat_map(|((migration, collection), rows)| batches_of(migration, collection, rows))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(migration: &str, collection: &str, n: usize) -> Vec<RowV1> {
        (0..n)
            .map(|i| RowV1 {
                document_id: ObjectId::new(),
                migration: migration.into(),
                content_id: format!("{collection}:{i}"),
                version: i as i64 + 1,
                collection: collection.into(),
            })
            .collect()
    }

    #[test]
    fn earlier_rows_group_by_migration_and_collection_keeping_every_row() {
        let mut rows = v1("m1", "a", 3);
        rows.extend(v1("m2", "a", 2));
        rows.extend(v1("m1", "b", 1));
        let ids: Vec<ObjectId> = rows.iter().map(|r| r.document_id).collect();
        let batches = group_v1(rows);
        let keys: Vec<(&str, &str, usize)> = batches
            .iter()
            .map(|b| (b.migration.as_str(), b.collection.as_str(), b.rows.len()))
            .collect();
        assert_eq!(keys, vec![("m1", "a", 3), ("m1", "b", 1), ("m2", "a", 2)]);
        let mut kept: Vec<ObjectId> = batches
            .iter()
            .flat_map(|b| b.rows.iter().map(|r| r.document_id))
            .collect();
        let mut want = ids;
        kept.sort();
        want.sort();
        assert_eq!(kept, want, "every row moved once");
        let first = &batches[0].rows[1];
        assert_eq!((first.content_id.as_str(), first.version), ("a:1", 2));
    }

    #[test]
    fn a_large_group_splits_into_documents_of_at_most_a_thousand_rows() {
        let batches = group_v1(v1("m", "c", 2 * ROWS_PER_DOC + 1));
        let sizes: Vec<usize> = batches.iter().map(|b| b.rows.len()).collect();
        assert_eq!(sizes, vec![ROWS_PER_DOC, ROWS_PER_DOC, 1]);
        let ids: HashSet<ObjectId> = batches.iter().map(|b| b.id).collect();
        assert_eq!(ids.len(), 3, "each document has its own _id");
    }

    #[test]
    fn row_ids_read_a_projected_ledger_document() {
        let (a, b) = (ObjectId::new(), ObjectId::new());
        let d =
            doc! {"_id": ObjectId::new(), "rows": [{"documentId": a}, {"documentId": b}, {"x": 1}]};
        assert_eq!(row_ids(&d), vec![a, b]);
        assert!(row_ids(&doc! {"_id": 1}).is_empty());
    }
}
