//! The embedding API budget: tokens per request, tokens per minute and requests per minute,
//! shared by every batch in flight of one embedder.
//!
//! Per-minute limits are a sliding window: a request is sent only once the tokens (and
//! requests) of the last 60 seconds (61 here: [`MARGIN`] for the way to the server), its own
//! included, fit the limit, so no 60-second window ever holds more than the limit. Callers reserve in arrival order and each is told how long
//! to wait, so several throttled batches queue one behind the other instead of retrying at once.
//! A 429 pauses the budget for the server's Retry-After and halves the effective limits; each
//! request that then succeeds gives back a tenth, so the rate recovers gradually.
//!
//! The logic is pure (the clock is passed in); [`SharedBudget`] wraps it for async callers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The sliding window of the per-minute limits.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The client's window is this much longer than the server's: a request reaches the server a
/// little after the budget let it go, and the oldest one of a window may have reached it late.
pub const MARGIN: Duration = Duration::from_secs(1);
/// The window the budget keeps.
const KEPT: Duration = Duration::from_secs(61);
/// Lowest share of the configured limits that throttling tightens to, percent.
const MIN_PERCENT: u64 = 25;
/// Share given back per successful request after throttling, percent.
const RECOVERY_STEP: u64 = 10;

/// Configured limits; 0 means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub tokens_per_request: usize,
    pub tokens_per_minute: u64,
    pub requests_per_minute: u64,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.tokens_per_minute == 0 && self.requests_per_minute == 0
    }
}

/// The budget's state.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    /// Start time and tokens of every request reserved in the last window (and ahead).
    sent: VecDeque<(Instant, u64)>,
    paused_until: Option<Instant>,
    /// Share of the configured limits in force, percent.
    percent: u64,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            sent: VecDeque::new(),
            paused_until: None,
            percent: 100,
        }
    }

    /// The limits in force now (tightened after a 429).
    pub fn effective(&self) -> (u64, u64) {
        let scale = |l: u64| {
            if l == 0 {
                0
            } else {
                (l * self.percent / 100).max(1)
            }
        };
        (
            scale(self.limits.tokens_per_minute),
            scale(self.limits.requests_per_minute),
        )
    }

    /// Reserves a request of `tokens` and returns when it may be sent (`now` or later).
    pub fn reserve(&mut self, tokens: u64, now: Instant) -> Instant {
        while self.sent.front().is_some_and(|(t, _)| *t + WINDOW <= now) {
            self.sent.pop_front();
        }
        let (tpm, rpm) = self.effective();
        let mut at = self.paused_until.filter(|p| *p > now).unwrap_or(now);
        // Move `at` forward until the window ending at `at` has room.
        loop {
            let window: Vec<&(Instant, u64)> =
                self.sent.iter().filter(|(t, _)| *t + KEPT > at).collect();
            let used: u64 = window.iter().map(|(_, k)| k).sum();
            let tokens_ok = tpm == 0 || used + tokens <= tpm || window.is_empty();
            let requests_ok = rpm == 0 || (window.len() as u64) < rpm;
            if tokens_ok && requests_ok {
                break;
            }
            // The oldest request of the window leaves it first.
            at = window[0].0 + KEPT;
        }
        // Keep the log ordered by start time.
        let pos = self.sent.partition_point(|(t, _)| *t <= at);
        self.sent.insert(pos, (at, tokens));
        at
    }

    /// The server answered 429: pause until `retry_after` from `now`, tighten the limits.
    pub fn throttled(&mut self, retry_after: Duration, now: Instant) {
        let until = now + retry_after;
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
        self.percent = (self.percent / 2).max(MIN_PERCENT);
    }

    /// A request succeeded: give back part of what throttling took.
    pub fn succeeded(&mut self) {
        self.percent = (self.percent + RECOVERY_STEP).min(100);
    }
}

/// A budget shared by every caller of one embedder.
#[derive(Debug, Clone)]
pub struct SharedBudget(Arc<Mutex<Budget>>);

impl SharedBudget {
    pub fn new(limits: Limits) -> SharedBudget {
        SharedBudget(Arc::new(Mutex::new(Budget::new(limits))))
    }

    /// Waits until a request of `tokens` may be sent; returns how long it waited.
    pub async fn acquire(&self, tokens: u64) -> Duration {
        let now = Instant::now();
        let at = self.0.lock().expect("budget lock").reserve(tokens, now);
        let wait = at.saturating_duration_since(now);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    pub fn throttled(&self, retry_after: Duration) {
        self.0
            .lock()
            .expect("budget lock")
            .throttled(retry_after, Instant::now());
    }

    pub fn succeeded(&self) {
        self.0.lock().expect("budget lock").succeeded();
    }
}

/// Splits texts (by their token counts) into requests of at most `max_texts` texts and
/// `max_tokens` tokens (0: no token bound); a text over the bound is a request of its own.
/// Returns index ranges into the input, in order.
pub fn pack(tokens: &[usize], max_texts: usize, max_tokens: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut sum = 0;
    for (i, &t) in tokens.iter().enumerate() {
        let full = i - start >= max_texts.max(1) || (max_tokens > 0 && sum + t > max_tokens);
        if full && i > start {
            out.push(start..i);
            start = i;
            sum = 0;
        }
        sum += t;
    }
    if start < tokens.len() {
        out.push(start..tokens.len());
    }
    out
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
