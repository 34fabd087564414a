//! The outbox gauges (pending, dead, lag) and the resume token's age, refreshed in the
//! background at a cost bounded against the server they watch.
//!
//! The lag is cheap to read: the oldest pending entry is looked for from where it was last
//! time. The pending and dead counts are not: some servers walk every pending entry to count
//! them (SecantusDB takes about 20 ms at 20,000 pending, a fifth of its time in a drain at a
//! refresh a second). So the counts are taken at every refresh only while they are cheap, and
//! otherwise at most every [`COUNTS_EVERY`], which is still more often than a scrape.

use crate::worker::Worker;
use crate::WorkerError;
use bson::DateTime;
use std::time::Duration;
use tokio::time::Instant;

/// Counts that took less than this are taken at every refresh.
pub(crate) const CHEAP_COUNTS: Duration = Duration::from_millis(5);

/// Counts that cost more are taken at most this often.
pub(crate) const COUNTS_EVERY: Duration = Duration::from_secs(5);

/// The pause after a gauge refresh that took `took`: a second, or nine times as long, so the
/// gauges' queries take at most a tenth of the server they watch; never more than five
/// seconds, so the lag an operator reads is at most that much older than a scrape.
pub(crate) fn pause(took: Duration) -> Duration {
    (took * 9).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// What the refresher remembers between refreshes.
#[derive(Debug, Default)]
pub(crate) struct GaugeState {
    /// The oldest pending entry's `createdAt` at the last refresh (where the next one starts
    /// looking).
    pub oldest: Option<DateTime>,
    /// When the counts were last taken, and how long they took.
    pub counted: Option<(Instant, Duration)>,
}

impl GaugeState {
    /// Whether the counts are to be taken at `now`: the first time, while they are cheap, or
    /// once [`COUNTS_EVERY`] has passed since they were last taken.
    pub fn counts_due(&self, now: Instant) -> bool {
        match self.counted {
            None => true,
            Some((at, took)) => took < CHEAP_COUNTS || now.duration_since(at) >= COUNTS_EVERY,
        }
    }
}

impl Worker {
    /// Updates the outbox gauges (lag at every call; pending and dead when due, see
    /// [`GaugeState::counts_due`]) and the resume token age.
    pub async fn refresh_gauges(&self) -> Result<(), WorkerError> {
        let p = &self.parts;
        let (hint, counts_due) = {
            let g = p.gauges.lock().expect("gauge state");
            (g.oldest, g.counts_due(Instant::now()))
        };
        let m = &p.metrics;
        if counts_due {
            let at = Instant::now();
            let (pending, dead) = p.outbox.pending_and_dead().await?;
            p.gauges.lock().expect("gauge state").counted = Some((at, at.elapsed()));
            m.outbox_pending.set(pending as i64);
            m.outbox_dead.set(dead as i64);
        }
        let oldest = p.outbox.oldest_pending(hint).await?;
        p.gauges.lock().expect("gauge state").oldest = oldest;
        let lag = tidemark_store::outbox::OutboxCounts {
            oldest_pending: oldest,
            ..Default::default()
        }
        .lag(DateTime::now());
        m.outbox_lag_seconds.set(lag.as_secs_f64());
        m.resume_token_age_seconds
            .set(p.positions.age().as_secs_f64());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_refresh_every_second_unless_they_are_slow_and_at_least_every_five() {
        assert_eq!(pause(Duration::from_millis(5)), Duration::from_secs(1));
        assert_eq!(
            pause(Duration::from_millis(400)),
            Duration::from_millis(3600)
        );
        assert_eq!(pause(Duration::from_secs(2)), Duration::from_secs(5));
    }

    #[test]
    fn counts_are_taken_first_while_cheap_and_otherwise_every_five_seconds() {
        let t0 = Instant::now();
        let mut g = GaugeState::default();
        assert!(g.counts_due(t0), "the first refresh counts");
        g.counted = Some((t0, Duration::from_millis(2)));
        assert!(
            g.counts_due(t0 + Duration::from_millis(1)),
            "cheap counts: every refresh"
        );
        g.counted = Some((t0, Duration::from_millis(20)));
        assert!(!g.counts_due(t0 + Duration::from_secs(1)));
        assert!(!g.counts_due(t0 + Duration::from_millis(4_999)));
        assert!(g.counts_due(t0 + COUNTS_EVERY), "dear counts: every 5 s");
    }
}
