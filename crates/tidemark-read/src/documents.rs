//! Reads straight from MongoDB: `get` (one document by contentId), `recent` (newest first,
//! under a filter) and `history` (the outbox's audit trail of a contentId).

use crate::filter::{translate, Filter};
use crate::{ReadError, Reader};
use bson::doc;
use futures::TryStreamExt;
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use serde::Serialize;
use tidemark_core::{DocumentRecord, Op, OutboxEntry, OutboxResult, OutboxStatus};

/// Indexes `recent` relies on, as (collection, name).
pub const READ_INDEXES: &[(&str, &str)] = &[
    (tidemark_core::COLL_DOCUMENTS, "timestamp_desc"),
    (tidemark_core::COLL_DOCUMENTS, "type_timestamp_desc"),
];

/// One outbox entry of a contentId: what was asked, what happened, when.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub outbox_id: String,
    pub document_id: String,
    pub version: i64,
    pub op: Op,
    pub status: OutboxStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<OutboxResult>,
    pub attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_history: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_at: Option<String>,
}

fn rfc3339(t: bson::DateTime) -> String {
    t.try_to_rfc3339_string()
        .unwrap_or_else(|_| t.timestamp_millis().to_string())
}

impl From<OutboxEntry> for HistoryEntry {
    fn from(e: OutboxEntry) -> Self {
        HistoryEntry {
            outbox_id: e.id.to_hex(),
            document_id: e.document_id.to_hex(),
            version: e.version,
            op: e.op,
            status: e.status,
            result: e.result,
            attempts: e.attempts,
            last_error: e.last_error,
            error_history: e.error_history,
            created_at: rfc3339(e.created_at),
            done_at: e.done_at.map(rfc3339),
        }
    }
}

impl Reader {
    /// Creates the indexes of `recent` (idempotent).
    pub async fn ensure_indexes(&self) -> Result<(), ReadError> {
        let named = |keys, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_string()).build())
                .build()
        };
        self.store
            .documents()
            .create_indexes([
                named(doc! {"timestamp": -1, "_id": -1}, READ_INDEXES[0].1),
                named(
                    doc! {"type": 1, "timestamp": -1, "_id": -1},
                    READ_INDEXES[1].1,
                ),
            ])
            .await?;
        Ok(())
    }

    /// The current document of `content_id`.
    pub async fn get(&self, content_id: &str) -> Result<Option<DocumentRecord>, ReadError> {
        Ok(self.store.get(content_id).await?)
    }

    /// The `n` most recently written documents matching `filter`, newest first. MongoDB
    /// narrows the scan ([`translate::mongo_query`]); each document is checked in memory.
    pub async fn recent(
        &self,
        filter: &Filter,
        n: usize,
    ) -> Result<Vec<DocumentRecord>, ReadError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let documents = self.store.documents();
        let mut find = documents
            .find(translate::mongo_query(filter))
            .sort(doc! {"timestamp": -1, "_id": -1});
        if translate::mongo_exact(filter) {
            find = find.limit(n as i64);
        }
        let mut cursor = find.batch_size((n as u32).clamp(16, 1000)).await?;
        let mut out = Vec::with_capacity(n);
        while let Some(d) = cursor.try_next().await? {
            if filter.matches(&d) {
                out.push(d);
                if out.len() == n {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every outbox entry of `content_id` still kept (done entries expire after
    /// `outbox.retention`; pending and dead ones stay), by version.
    pub async fn history(&self, content_id: &str) -> Result<Vec<HistoryEntry>, ReadError> {
        tidemark_store::validate_content_id(content_id, self.store.limits())?;
        let entries: Vec<OutboxEntry> = self
            .store
            .outbox()
            .find(doc! {"contentId": content_id})
            .sort(doc! {"version": 1, "_id": 1})
            .await?
            .try_collect()
            .await?;
        Ok(entries.into_iter().map(HistoryEntry::from).collect())
    }
}
