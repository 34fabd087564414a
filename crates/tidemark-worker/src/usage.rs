//! Keeps the `usage` collection current: every [`FLUSH`] (and once when the worker stops) the
//! tokens and estimated cost the embedders counted since the last flush are added to their
//! index's counter for the UTC day (`tidemark_store::usage`). The counters are the embedders'
//! Prometheus series, labelled by index, so the metrics and the stored figures agree. A flush
//! that fails is retried with the next one: what was not added stays in the difference.

use crate::worker::Worker;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tidemark_embed::metrics::{COST, TOKENS};
use tidemark_store::usage::{day_of, Usage};

/// How often the counters are added to MongoDB.
pub const FLUSH: Duration = Duration::from_secs(10);

/// What was added so far, per index: tokens and cost.
#[derive(Default)]
pub(crate) struct Flushed(Mutex<HashMap<String, (u64, f64)>>);

/// Adds what each index of this worker spent since the last flush.
pub(crate) async fn flush(w: &Worker) {
    let p = &w.parts;
    let mut names: Vec<String> = p.primary.get().cloned().into_iter().collect();
    names.extend(w.lanes().iter().map(|l| l.def.name.clone()));
    let usage = Usage::new(p.store.database());
    let day = day_of(bson::DateTime::now());
    for name in names {
        let tokens = TOKENS.with_label_values(&[&name]).get();
        let cost = COST.with_label_values(&[&name]).get();
        let (t0, c0) = p
            .usage
            .0
            .lock()
            .expect("usage lock")
            .get(&name)
            .copied()
            .unwrap_or_default();
        if tokens <= t0 {
            continue;
        }
        match usage.add(&name, &day, tokens - t0, cost - c0).await {
            Ok(()) => {
                p.usage
                    .0
                    .lock()
                    .expect("usage lock")
                    .insert(name, (tokens, cost));
            }
            Err(e) => {
                tracing::debug!(index = %name, error = %e, "cannot record embedding usage; retried at the next flush");
            }
        }
    }
}
