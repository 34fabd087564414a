//! Linger: under load, batches grow instead of multiplying. Every Chroma upsert has a fixed
//! cost (about 25 ms on the benchmark host) besides its per-vector cost, so a worker that
//! claims the next batch as soon as it may keeps Chroma busy with ever smaller batches: at
//! 233 live documents per second written to two indexes, batches of 16 kept the write slot
//! 100% busy and left an index build nothing. So while a batch is in flight, the next claim
//! waits until the previous claim is `worker.batch_linger` old, and gathers what arrived
//! meanwhile into one batch. It does not wait when the previous claim was full (a backlog: a
//! full batch is due anyway), or when nothing is in flight (the vector store is idle, so a
//! change is claimed at once, as before).

use std::time::{Duration, Instant};

/// The previous claim that found work: when it was made and whether it filled a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastClaim {
    pub at: Instant,
    pub full: bool,
}

/// How long to wait before the next claim at `now`, if at all, with `in_flight` batches in
/// flight and `linger` configured (zero: never).
pub(crate) fn wait(
    last: Option<LastClaim>,
    in_flight: usize,
    linger: Duration,
    now: Instant,
) -> Option<Duration> {
    let last = last?;
    if in_flight == 0 || last.full {
        return None;
    }
    let left = (last.at + linger).saturating_duration_since(now);
    (!left.is_zero()).then_some(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_millis(200);

    fn claim(ago_ms: u64, full: bool, now: Instant) -> Option<LastClaim> {
        Some(LastClaim {
            at: now - Duration::from_millis(ago_ms),
            full,
        })
    }

    #[test]
    fn a_partial_claim_with_a_batch_in_flight_waits_out_the_rest_of_the_linger() {
        let now = Instant::now();
        assert_eq!(
            wait(claim(50, false, now), 1, LINGER, now),
            Some(Duration::from_millis(150))
        );
    }

    #[test]
    fn nothing_in_flight_claims_at_once() {
        let now = Instant::now();
        assert_eq!(wait(claim(0, false, now), 0, LINGER, now), None);
    }

    #[test]
    fn a_full_previous_claim_claims_at_once() {
        let now = Instant::now();
        assert_eq!(wait(claim(0, true, now), 1, LINGER, now), None);
    }

    #[test]
    fn a_linger_already_past_or_off_does_not_wait() {
        let now = Instant::now();
        assert_eq!(wait(claim(200, false, now), 1, LINGER, now), None);
        assert_eq!(wait(claim(500, false, now), 3, LINGER, now), None);
        assert_eq!(wait(claim(0, false, now), 1, Duration::ZERO, now), None);
        assert_eq!(wait(None, 1, LINGER, now), None, "no claim yet");
    }
}
