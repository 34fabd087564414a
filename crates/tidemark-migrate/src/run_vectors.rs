//! Vector reuse of a run: legacy embeddings copied into tidemark's collection when the legacy
//! document text equals the record's text and the dimension is tidemark's (the model was
//! checked against the mapping before the run).

use super::{vector, Pass};
use crate::record::Candidate;
use crate::MigrateError;
use std::collections::{HashMap, HashSet};
use tidemark_chroma::{FullRecord, VectorRecord};
use tidemark_core::DocumentRecord;

impl Pass<'_> {
    /// The legacy records of these legacy ids (with embeddings), by id.
    async fn legacy(&self, ids: Vec<String>) -> Result<HashMap<String, FullRecord>, MigrateError> {
        let (Some(chroma), Some(coll)) = (&self.source.chroma, &self.legacy_vectors) else {
            return Ok(HashMap::new());
        };
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let got = chroma.get_full(coll, &ids, true).await?;
        Ok(got.into_iter().map(|r| (r.id.clone(), r)).collect())
    }

    fn fits(&self, r: Option<&FullRecord>, text: &str) -> Option<Vec<f32>> {
        let r = r?;
        if r.document.as_deref() != Some(text) {
            return None;
        }
        let e = r.embedding.clone()?;
        (e.len() == self.target.model.dimension).then_some(e)
    }

    /// How many of these records a copy would serve (dry run).
    pub(super) async fn reusable(&self, batch: &[Candidate]) -> Result<usize, MigrateError> {
        if self.legacy_vectors.is_none() {
            return Ok(0);
        }
        let legacy = self
            .legacy(batch.iter().map(|c| c.id.clone()).collect())
            .await?;
        Ok(batch
            .iter()
            .filter(|c| self.fits(legacy.get(&c.id), &c.doc.content).is_some())
            .count())
    }

    /// tidemark's collection id, created on first use (once, whichever batch asks first).
    async fn target_collection(&self) -> Result<String, MigrateError> {
        let id = self
            .target_vectors
            .get_or_try_init(|| async {
                let c = self
                    .target
                    .chroma
                    .get_or_create_collection(&self.target.collection())
                    .await?;
                Ok::<_, MigrateError>(c.id)
            })
            .await?;
        Ok(id.clone())
    }

    /// Copies the legacy vectors of just-written documents; returns how many were copied.
    pub(super) async fn copy_vectors(
        &self,
        written: &[(Candidate, DocumentRecord)],
    ) -> Result<u64, MigrateError> {
        if self.legacy_vectors.is_none() || written.is_empty() {
            return Ok(0);
        }
        let legacy = self
            .legacy(written.iter().map(|(c, _)| c.id.clone()).collect())
            .await?;
        let model = self.target.model.model.clone();
        let records: Vec<VectorRecord> = written
            .iter()
            .filter_map(|(c, d)| {
                let e = self.fits(legacy.get(&c.id), &d.content)?;
                Some(vector(d, e, &model))
            })
            .collect();
        if records.is_empty() {
            return Ok(0);
        }
        let coll = self.target_collection().await?;
        self.target.chroma.upsert(&coll, &records).await?;
        Ok(records.len() as u64)
    }

    /// For documents already written by this migration but not yet indexed (a run killed
    /// between its commit and its vector copy): copies the legacy vector if tidemark has none;
    /// returns how many were copied.
    pub(super) async fn repair_vectors(
        &self,
        ours: &[&(Candidate, DocumentRecord)],
    ) -> Result<u64, MigrateError> {
        let pending: Vec<(Candidate, DocumentRecord)> = ours
            .iter()
            .filter(|(_, d)| d.indexed_version.is_none())
            .map(|(c, d)| (c.clone(), d.clone()))
            .collect();
        if self.legacy_vectors.is_none() || pending.is_empty() {
            return Ok(0);
        }
        let coll = self.target_collection().await?;
        let ids: Vec<String> = pending.iter().map(|(_, d)| d.id.to_hex()).collect();
        let have: HashSet<String> = self
            .target
            .chroma
            .get(&coll, &ids, false)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        let missing: Vec<(Candidate, DocumentRecord)> = pending
            .into_iter()
            .filter(|(_, d)| !have.contains(&d.id.to_hex()))
            .collect();
        self.copy_vectors(&missing).await
    }
}
