//! The throttle of a backfill or an index build: before each batch, wait while the workers have
//! enough to do. Two bounds, either optional: how many entries are pending (an index build
//! counts its own only, so live writes never stop it), and how long the live entries have
//! waited: those due now, and those done in the last two seconds, from commit to done (an
//! index build yields while applications' changes queue up or slow down behind it: a build
//! that takes the vector store from them shows in their commit-to-done time before any of
//! them waits to be claimed).

use crate::{Ops, OpsError};
use bson::{doc, DateTime, Document};
use futures::TryStreamExt;
use std::time::Duration;
use tidemark_core::{OutboxStatus, COLL_OUTBOX};

/// How often a run that yields to live entries looks at the outbox again.
pub const POLL: Duration = Duration::from_millis(250);

/// How often a run held by `max_pending` looks again: the workers carry out a batch in a few
/// hundred milliseconds, and a longer pause leaves them without the run's next one (an index
/// build fell to about one batch per [`POLL`]).
pub const POLL_PENDING: Duration = Duration::from_millis(50);

/// The bounds: at most `max_pending` pending entries (the build's own for `index`, when given:
/// not the live writes handed on to it);
/// live entries (without `indexes`) due for at most `max_lag`.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    pub max_pending: Option<u64>,
    pub max_lag: Option<Duration>,
    pub index: Option<String>,
}

impl Throttle {
    /// Whether there is anything to wait for.
    pub fn is_off(&self) -> bool {
        self.max_pending.is_none() && self.max_lag.is_none()
    }

    /// Waits (polling every [`POLL_PENDING`] or [`POLL`], by the bound that holds it) until
    /// both bounds hold; returns how long it waited (either bound: the workers had no room for
    /// more of the run).
    pub async fn wait(&self, ops: &Ops) -> Result<Duration, OpsError> {
        let mut held = Duration::ZERO;
        if self.is_off() {
            return Ok(held);
        }
        let outbox = ops.store.database().collection::<Document>(COLL_OUTBOX);
        let mut logged = false;
        loop {
            let why = self.reason(&outbox).await?;
            let Some((why, bound)) = why else {
                return Ok(held);
            };
            if !logged {
                tracing::debug!(why, "backfill waits for the workers");
                logged = true;
            }
            let pause = bound.pause();
            tokio::time::sleep(pause).await;
            held += pause;
        }
    }

    /// Why the run must wait now, if it must, and which bound holds it.
    async fn reason(
        &self,
        outbox: &mongodb::Collection<Document>,
    ) -> Result<Option<(String, Holds)>, OpsError> {
        if let Some(max) = self.max_pending {
            let mut filter = doc! {"status": OutboxStatus::Pending};
            if let Some(name) = &self.index {
                // The build's own entries: not the live writes handed on to the same index.
                filter.insert("indexes", name);
                filter.insert("handoffOf", doc! {"$exists": false});
            }
            let pending = outbox.count_documents(filter).await?;
            if pending > max {
                let why = format!("{pending} entries pending (at most {max})");
                return Ok(Some((why, Holds::Pending)));
            }
        }
        if let Some(max) = self.max_lag {
            let now = DateTime::now();
            let took = recent_live_lag(outbox, now).await?;
            if took > max {
                let why =
                    format!("live entries took {took:?} from commit to done (at most {max:?})");
                return Ok(Some((why, Holds::Live)));
            }
            let lag = oldest_live_wait(outbox, now).await?;
            if lag > max {
                let why = format!("live entries due for {lag:?} (at most {max:?})");
                return Ok(Some((why, Holds::Live)));
            }
        }
        Ok(None)
    }
}

/// The bound that holds a run.
#[derive(Debug, Clone, Copy)]
enum Holds {
    /// Too many entries pending (`max_pending`).
    Pending,
    /// Live entries waiting or slow (`max_lag`).
    Live,
}

impl Holds {
    /// How long to wait before looking again.
    fn pause(self) -> Duration {
        match self {
            Holds::Pending => POLL_PENDING,
            Holds::Live => POLL,
        }
    }
}

/// How many due entries [`oldest_live_wait`] reads, earliest first, to find a live one among
/// the build's queued ahead of it.
const LAG_PAGE: i64 = 512;

/// How long the earliest due live entry (one an application wrote: no `indexes`) has been
/// due; zero when none is among the first [`LAG_PAGE`] due entries. Entries waiting for a retry
/// are not due and do not count. The query uses the claim index's fields only (a server may
/// scan the collection for a predicate the index does not cover); the client picks the first
/// live entry.
async fn oldest_live_wait(
    outbox: &mongodb::Collection<Document>,
    now: DateTime,
) -> Result<Duration, OpsError> {
    let page: Vec<Document> = outbox
        .find(doc! {"status": OutboxStatus::Pending, "nextAttemptAt": {"$lte": now}})
        .sort(doc! {"nextAttemptAt": 1})
        .limit(LAG_PAGE)
        .batch_size(LAG_PAGE as u32)
        .projection(doc! {"nextAttemptAt": 1, "indexes": 1})
        .await?
        .try_collect()
        .await?;
    Ok(page
        .iter()
        .find(|d| !d.contains_key("indexes"))
        .and_then(|d| d.get_datetime("nextAttemptAt").ok().copied())
        .map(|t| waited(t, now))
        .unwrap_or_default())
}

/// How far back [`recent_live_lag`] looks.
const RECENT: Duration = Duration::from_secs(2);

/// The commit-to-done time of the slowest live entry done in the last [`RECENT`] (zero when
/// none): a build that takes the vector store from the live writes shows here first, before
/// any of them waits to be claimed.
async fn recent_live_lag(
    outbox: &mongodb::Collection<Document>,
    now: DateTime,
) -> Result<Duration, OpsError> {
    let since = DateTime::from_millis(now.timestamp_millis() - RECENT.as_millis() as i64);
    let page: Vec<Document> = outbox
        .find(doc! {"doneAt": {"$gte": since}})
        .sort(doc! {"doneAt": -1})
        .limit(LAG_PAGE)
        .batch_size(LAG_PAGE as u32)
        .projection(doc! {"createdAt": 1, "doneAt": 1, "indexes": 1})
        .await?
        .try_collect()
        .await?;
    Ok(slowest_live(&page))
}

/// The longest commit-to-done time among the live entries (those without `indexes`) of
/// `page`; zero when there are none.
fn slowest_live(page: &[Document]) -> Duration {
    page.iter()
        .filter(|d| !d.contains_key("indexes"))
        .filter_map(|d| {
            let (c, e) = (
                d.get_datetime("createdAt").ok()?,
                d.get_datetime("doneAt").ok()?,
            );
            Some(waited(*c, *e))
        })
        .max()
        .unwrap_or_default()
}

/// The time from `since` to `now` (zero when `since` is later).
fn waited(since: DateTime, now: DateTime) -> Duration {
    let ms = now.timestamp_millis() - since.timestamp_millis();
    Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_without_bounds_is_off() {
        assert!(Throttle::default().is_off());
        let pending = Throttle {
            max_pending: Some(0),
            ..Throttle::default()
        };
        assert!(!pending.is_off());
        let lag = Throttle {
            max_lag: Some(Duration::from_millis(500)),
            ..Throttle::default()
        };
        assert!(!lag.is_off());
    }

    #[test]
    fn the_slowest_live_entry_sets_the_recent_lag() {
        let at = |c: i64, d: i64| {
            doc! {"createdAt": DateTime::from_millis(c), "doneAt": DateTime::from_millis(d)}
        };
        let mut build = at(0, 5_000);
        build.insert("indexes", vec!["v2"]);
        let page = vec![
            at(1_000, 1_300),
            at(2_000, 2_900),
            build,
            doc! {"doneAt": DateTime::now()},
        ];
        assert_eq!(slowest_live(&page), Duration::from_millis(900));
        assert_eq!(slowest_live(&[]), Duration::ZERO);
    }

    #[test]
    fn waited_is_never_negative() {
        let now = DateTime::from_millis(10_000);
        assert_eq!(
            waited(DateTime::from_millis(9_250), now),
            Duration::from_millis(750)
        );
        assert_eq!(waited(DateTime::from_millis(12_000), now), Duration::ZERO);
    }
}
