//! Retry delays: exponential backoff with jitter, as a pure function of the attempt number.
//!
//! The worker does not sleep between retries: it stores `nextAttemptAt` on the entry, so the
//! delay must be computable from the persisted attempt count. The shape is backon's
//! exponential backoff (factor 2, capped), with "equal jitter": half the delay is fixed and
//! half random, so retries of a failed batch spread out without ever retrying immediately.
//! A server's Retry-After is a floor.

use std::time::Duration;

/// Delay before attempt `attempt + 1`, after `attempt` failed attempts (`attempt >= 1`).
/// `jitter` is a random number in `[0, 1)`.
pub fn retry_delay(
    attempt: i32,
    base: Duration,
    max: Duration,
    jitter: f64,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = (attempt.max(1) - 1).min(40) as u32;
    let raw = base.as_secs_f64() * 2f64.powi(exp as i32);
    let capped = raw.min(max.as_secs_f64());
    let jitter = jitter.clamp(0.0, 1.0);
    let d = Duration::from_secs_f64(capped * (0.5 + 0.5 * jitter));
    match retry_after {
        Some(r) if r > d => r,
        _ => d,
    }
}

/// `retry_delay` with a fresh random jitter.
pub fn retry_delay_now(
    attempt: i32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    retry_delay(attempt, base, max, rand::random::<f64>(), retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Duration = Duration::from_millis(500);
    const M: Duration = Duration::from_secs(60);

    #[test]
    fn doubles_per_attempt() {
        assert_eq!(retry_delay(1, B, M, 1.0, None), Duration::from_millis(500));
        assert_eq!(retry_delay(2, B, M, 1.0, None), Duration::from_secs(1));
        assert_eq!(retry_delay(3, B, M, 1.0, None), Duration::from_secs(2));
        assert_eq!(retry_delay(5, B, M, 1.0, None), Duration::from_secs(8));
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        for j in [0.0, 0.3, 0.99] {
            let d = retry_delay(4, B, M, j, None);
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_secs(4),
                "{d:?}"
            );
        }
        assert_eq!(retry_delay(4, B, M, 0.0, None), Duration::from_secs(2));
    }

    #[test]
    fn capped_at_max_even_for_huge_attempts() {
        assert_eq!(retry_delay(1000, B, M, 1.0, None), M);
        assert!(retry_delay(i32::MAX, B, M, 0.0, None) >= M / 2);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let r = Some(Duration::from_secs(30));
        assert_eq!(retry_delay(1, B, M, 0.5, r), Duration::from_secs(30));
        let small = Some(Duration::from_millis(1));
        assert_eq!(retry_delay(3, B, M, 1.0, small), Duration::from_secs(2));
    }

    #[test]
    fn random_jitter_varies() {
        let ds: std::collections::HashSet<_> =
            (0..20).map(|_| retry_delay_now(6, B, M, None)).collect();
        assert!(ds.len() > 1);
    }
}
