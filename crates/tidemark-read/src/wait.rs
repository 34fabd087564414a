//! Read-your-writes: wait, bounded, until a write is indexed. A write is indexed when its
//! document's `indexedVersion` reached the write's version, or when its outbox entry is done
//! (`superseded` counts: a newer version carries the work; so does a delete's `deleted`).
//! Polls MongoDB every 20 ms, growing to 200 ms.

use crate::{ReadError, Reader};
use bson::doc;
use bson::oid::ObjectId;
use serde::Deserialize;
use std::time::{Duration, Instant};
use tidemark_core::OutboxStatus;
use tidemark_store::{DeleteOutcome, PutOutcome};

/// A committed write to wait for: the document id and the version the write produced. Built
/// from a `put` or `delete` result; over HTTP the body of a PUT answer can be passed as is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteMark {
    #[serde(deserialize_with = "oid_hex")]
    pub document_id: ObjectId,
    pub version: i64,
}

fn oid_hex<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectId, D::Error> {
    let s = String::deserialize(d)?;
    ObjectId::parse_str(&s)
        .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a 24-digit hex id")))
}

impl From<&PutOutcome> for WriteMark {
    fn from(o: &PutOutcome) -> Self {
        WriteMark {
            document_id: o.document_id,
            version: o.version,
        }
    }
}

impl From<&DeleteOutcome> for WriteMark {
    fn from(o: &DeleteOutcome) -> Self {
        WriteMark {
            document_id: o.document_id,
            version: o.version,
        }
    }
}

enum Seen {
    Indexed,
    Pending,
    Dead(String),
}

impl Reader {
    async fn indexed(&self, mark: &WriteMark) -> Result<Seen, ReadError> {
        let docs = self
            .store
            .database()
            .collection::<bson::Document>(tidemark_core::COLL_DOCUMENTS);
        if let Some(d) = docs
            .find_one(doc! {"_id": mark.document_id})
            .projection(doc! {"indexedVersion": 1})
            .await?
        {
            if d.get_i64("indexedVersion").is_ok_and(|v| v >= mark.version) {
                return Ok(Seen::Indexed);
            }
        }
        let entry = self
            .store
            .outbox()
            .find_one(doc! {"documentId": mark.document_id, "version": mark.version})
            .await?;
        Ok(match entry {
            Some(e) if e.status == OutboxStatus::Done => Seen::Indexed,
            Some(e) if e.status == OutboxStatus::Dead => Seen::Dead(
                e.last_error
                    .unwrap_or_else(|| "no lastError recorded".into()),
            ),
            Some(_) => Seen::Pending,
            // No entry (expired by the retention TTL long after it was done) and the document
            // not behind: nothing to wait for.
            None => Seen::Indexed,
        })
    }

    /// Waits until `mark` is indexed, at most `timeout`. Errors: `NotIndexed` on timeout,
    /// `IndexFailed` when the worker gave up on the write.
    pub async fn wait_indexed(&self, mark: &WriteMark, timeout: Duration) -> Result<(), ReadError> {
        let start = Instant::now();
        let mut poll = Duration::from_millis(20);
        loop {
            match self.indexed(mark).await? {
                Seen::Indexed => return Ok(()),
                Seen::Dead(last_error) => {
                    return Err(ReadError::IndexFailed {
                        document_id: mark.document_id,
                        version: mark.version,
                        last_error,
                    })
                }
                Seen::Pending => {}
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(ReadError::NotIndexed {
                    document_id: mark.document_id,
                    version: mark.version,
                    waited,
                });
            }
            tokio::time::sleep(poll.min(timeout - waited)).await;
            poll = (poll * 2).min(Duration::from_millis(200));
        }
    }
}
