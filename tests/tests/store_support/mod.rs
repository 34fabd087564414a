//! Shared set-up of the store tests: a `Store` on a fresh, uniquely named database.

#![allow(dead_code)]

use bson::{doc, Document};
use tidemark_core::{Config, DocumentRecord, OutboxEntry};
use tidemark_e2e::{mongo_client, mongodb_uri, unique_name};
use tidemark_store::Store;

/// A store on a new database with the schema in place, and the configuration used.
pub async fn fresh_store(prefix: &str) -> (Store, Config) {
    let mut cfg = Config::default();
    cfg.mongodb.uri = mongodb_uri();
    cfg.mongodb.database = unique_name(prefix);
    let store = Store::new(mongo_client().await, &cfg.mongodb.database, &cfg);
    store.ensure_schema().await.expect("ensure_schema");
    (store, cfg)
}

/// All documents, sorted by contentId.
pub async fn all_documents(store: &Store) -> Vec<DocumentRecord> {
    tidemark_e2e::all_documents(store).await
}

/// All outbox entries, sorted by contentId then version.
pub async fn all_entries(store: &Store) -> Vec<OutboxEntry> {
    use futures::TryStreamExt;
    store
        .outbox()
        .find(doc! {})
        .sort(doc! {"contentId": 1, "version": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Counts of (documents, outbox entries).
pub async fn counts(store: &Store) -> (u64, u64) {
    (
        store
            .documents()
            .count_documents(Document::new())
            .await
            .unwrap(),
        store
            .outbox()
            .count_documents(Document::new())
            .await
            .unwrap(),
    )
}

/// Drops the test database (call at the end of a passing test).
pub async fn drop_db(store: &Store) {
    store.database().drop().await.unwrap();
}
