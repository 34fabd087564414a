//! The claim window: an upper bound on the `nextAttemptAt` range the claim query asks for, so
//! that a claim costs what the batch needs and not what the backlog holds.
//!
//! The claim wants the earliest due entries (`nextAttemptAt <= now`, sorted, a limit). A server
//! that walks the whole range before applying the limit (SecantusDB does; `mongod` stops at the
//! limit) pays for every pending entry on every claim. The window asks for `nextAttemptAt <=
//! min(now, horizon)` instead. When that range holds at least the limit of claimable entries,
//! the answer is the same as the unbounded query's (the earliest entries are all below the
//! horizon); when it holds fewer, the horizon moves forward (in doubling steps) and the claim
//! reads on, until it reaches `now`, where the query is the unbounded one. Nothing below the
//! horizon is ever skipped: entries whose lease expired or that were handed back keep their old
//! `nextAttemptAt` and are inside every window.

/// The smallest span of a full answer, in milliseconds.
const MIN_STEP_MS: i64 = 1;

/// The smallest widening, in milliseconds: a window that ran short reaches a minute ahead in
/// eight doublings (walking a quarter second of entries costs a server little; a window that
/// widened a millisecond at a time took a claim's every query to reach a live entry).
const MIN_WIDENING_MS: i64 = 250;

/// The claim window of one worker, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimWindow {
    /// The upper bound of the next claim's range; `None` while the worker is caught up.
    horizon: Option<i64>,
    /// How far the horizon moves when a range held too few entries.
    step: i64,
}

/// What a claim does after one query of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Take what was found.
    Take,
    /// Ask again with the wider window.
    Widen,
}

impl Default for ClaimWindow {
    fn default() -> Self {
        ClaimWindow {
            horizon: None,
            step: 1_000,
        }
    }
}

impl ClaimWindow {
    /// The upper bound of `nextAttemptAt` to ask for at `now`.
    pub fn upper(&self, now: i64) -> i64 {
        match self.horizon {
            Some(h) if h < now => h,
            _ => now,
        }
    }

    /// Learns from a query with upper bound `upper` at `now` that found `found` (the
    /// `nextAttemptAt` of each, earliest first) of the `limit` asked for.
    pub fn observe(&mut self, now: i64, upper: i64, found: &[i64], limit: usize) -> After {
        if found.len() >= limit {
            // A full range: the answer is the unbounded one. The next window reaches as far
            // beyond the last entry found as this answer spans, so it holds about two answers
            // (it may be nearer than this one's: any horizon is correct, only its cost differs).
            let (first, last) = (found[0], found[found.len() - 1]);
            let span = (last - first).max(MIN_STEP_MS);
            self.step = span;
            self.horizon = Some(last.saturating_add(span));
            return After::Take;
        }
        if upper >= now {
            // The whole due range held fewer than asked for: caught up.
            self.horizon = None;
            return After::Take;
        }
        let step = self.step.max(MIN_WIDENING_MS);
        self.horizon = Some(upper.saturating_add(step));
        self.step = step.saturating_mul(2);
        After::Widen
    }

    /// Whether the next claim asks for the unbounded range.
    #[cfg(test)]
    pub fn caught_up(&self) -> bool {
        self.horizon.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    #[test]
    fn a_fresh_window_asks_for_everything_due() {
        let w = ClaimWindow::default();
        assert!(w.caught_up());
        assert_eq!(w.upper(NOW), NOW);
    }

    #[test]
    fn a_full_answer_bounds_the_next_claim_near_what_it_found() {
        let mut w = ClaimWindow::default();
        let found: Vec<i64> = (0..10).map(|i| 100 + i * 10).collect(); // 100..190
        assert_eq!(w.observe(NOW, NOW, &found, 10), After::Take);
        assert_eq!(w.upper(NOW), 190 + 90, "last found plus the answer's span");
        assert!(!w.caught_up());
    }

    #[test]
    fn the_horizon_follows_the_density_of_the_latest_full_answer() {
        let mut w = ClaimWindow::default();
        let sparse: Vec<i64> = (0..4).map(|i| 1_000 + i * 100).collect(); // 1000..1300
        w.observe(NOW, NOW, &sparse, 4);
        assert_eq!(w.upper(NOW), 1_600);
        w.observe(NOW, 1_600, &[1_400, 1_401, 1_402, 1_403], 4);
        assert_eq!(w.upper(NOW), 1_406, "a dense answer: a near horizon");
    }

    #[test]
    fn a_short_answer_below_now_widens_in_doubling_steps() {
        let mut w = ClaimWindow::default();
        w.observe(NOW, NOW, &[100, 110, 120, 130], 4); // horizon 160, span 30
        assert_eq!(w.observe(NOW, 160, &[150], 4), After::Widen);
        assert_eq!(w.upper(NOW), 160 + 250, "at least the smallest widening");
        assert_eq!(w.observe(NOW, 410, &[150], 4), After::Widen);
        assert_eq!(w.upper(NOW), 410 + 500);
        assert_eq!(w.observe(NOW, 910, &[150], 4), After::Widen);
        assert_eq!(w.upper(NOW), 910 + 1_000);
    }

    #[test]
    fn widening_past_now_asks_for_everything_and_a_short_answer_then_is_caught_up() {
        let mut w = ClaimWindow::default();
        w.observe(NOW, NOW, &[0, NOW / 2], 2); // horizon NOW, beyond: unbounded
        assert_eq!(w.upper(NOW), NOW);
        assert_eq!(w.observe(NOW, NOW, &[NOW - 5], 2), After::Take);
        assert!(w.caught_up());
    }

    #[test]
    fn an_empty_window_below_now_widens_until_it_reaches_now() {
        let mut w = ClaimWindow::default();
        w.observe(NOW, NOW, &[10, 20], 2); // horizon 30, step 10
        let mut upper = w.upper(NOW);
        let mut rounds = 0;
        while w.observe(NOW, upper, &[], 2) == After::Widen {
            upper = w.upper(NOW);
            rounds += 1;
            assert!(rounds < 64, "the horizon reaches now in logarithmic steps");
        }
        assert_eq!(upper, NOW);
        assert!(w.caught_up());
        assert!(
            rounds <= 17,
            "10 ms doubling reaches 1e6 ms in 17 steps, took {rounds}"
        );
    }

    #[test]
    fn identical_times_still_move_the_horizon() {
        let mut w = ClaimWindow::default();
        w.observe(NOW, NOW, &[500, 500, 500], 3);
        assert_eq!(
            w.upper(NOW),
            501,
            "a span of zero counts as one millisecond"
        );
        assert_eq!(w.observe(NOW, 501, &[], 3), After::Widen);
        assert!(w.upper(NOW) > 501);
    }

    #[test]
    fn the_horizon_never_passes_now_in_the_query() {
        let mut w = ClaimWindow::default();
        w.observe(NOW, NOW, &[NOW - 10, NOW - 1], 2);
        assert_eq!(
            w.upper(NOW),
            NOW,
            "horizon beyond now: the query stops at now"
        );
        assert_eq!(
            w.upper(NOW + 1_000),
            NOW + 8,
            "later, the horizon (last found + span) bounds it"
        );
    }
}
