//! Rate limits of `tidemark embed serve`, as hosted embedding APIs enforce them: requests and
//! tokens per sliding 60-second window. A request over either limit is refused (the server
//! answers 429) with the seconds until the window has room. The limiter also keeps what a
//! client's budget is checked against: totals and the most tokens ever accepted in one window.

use crate::budget::WINDOW;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Server limits; 0 means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerLimits {
    pub requests_per_minute: u64,
    pub tokens_per_minute: u64,
}

/// What the server has seen (`GET /stats`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub tokens: u64,
    /// Requests answered 429.
    pub throttled: u64,
    /// Most tokens accepted within any 60 s window.
    pub max_tokens_per_window: u64,
    /// Most requests accepted within any 60 s window.
    pub max_requests_per_window: u64,
}

/// The sliding-window limiter.
#[derive(Debug, Default)]
pub struct Limiter {
    limits: ServerLimits,
    accepted: VecDeque<(Instant, u64)>,
    stats: Stats,
}

impl Limiter {
    pub fn new(limits: ServerLimits) -> Limiter {
        Limiter {
            limits,
            ..Limiter::default()
        }
    }

    /// Admits a request of `tokens` at `now`, or says how long to wait (Retry-After).
    pub fn admit(&mut self, tokens: u64, now: Instant) -> Result<(), Duration> {
        while self
            .accepted
            .front()
            .is_some_and(|(t, _)| *t + WINDOW <= now)
        {
            self.accepted.pop_front();
        }
        let used: u64 = self.accepted.iter().map(|(_, k)| k).sum();
        let l = self.limits;
        let over_requests =
            l.requests_per_minute > 0 && self.accepted.len() as u64 >= l.requests_per_minute;
        let over_tokens = l.tokens_per_minute > 0
            && used + tokens > l.tokens_per_minute
            && !self.accepted.is_empty();
        if over_requests || over_tokens {
            self.stats.throttled += 1;
            let oldest = self.accepted.front().map(|(t, _)| *t).unwrap_or(now);
            return Err((oldest + WINDOW).saturating_duration_since(now));
        }
        self.accepted.push_back((now, tokens));
        self.stats.requests += 1;
        self.stats.tokens += tokens;
        self.stats.max_tokens_per_window = self.stats.max_tokens_per_window.max(used + tokens);
        self.stats.max_requests_per_window = self
            .stats
            .max_requests_per_window
            .max(self.accepted.len() as u64);
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }
}

/// Whole seconds for a Retry-After header (at least 1).
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_limits_everything_is_admitted_and_counted() {
        let mut l = Limiter::new(ServerLimits::default());
        let now = Instant::now();
        for _ in 0..100 {
            assert!(l.admit(50, now).is_ok());
        }
        let s = l.stats();
        assert_eq!((s.requests, s.tokens, s.throttled), (100, 5000, 0));
        assert_eq!(s.max_tokens_per_window, 5000);
    }

    #[test]
    fn tokens_per_minute_refuse_with_the_wait_until_room() {
        let mut l = Limiter::new(ServerLimits {
            requests_per_minute: 0,
            tokens_per_minute: 100,
        });
        let t0 = Instant::now();
        assert!(l.admit(60, t0).is_ok());
        let wait = l.admit(60, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(retry_after_secs(wait), 50);
        assert!(
            l.admit(60, t0 + WINDOW).is_ok(),
            "the first left the window"
        );
        assert_eq!(l.stats().throttled, 1);
        assert_eq!(l.stats().max_tokens_per_window, 60);
    }

    #[test]
    fn requests_per_minute_refuse() {
        let mut l = Limiter::new(ServerLimits {
            requests_per_minute: 2,
            tokens_per_minute: 0,
        });
        let t0 = Instant::now();
        assert!(l.admit(1, t0).is_ok());
        assert!(l.admit(1, t0).is_ok());
        assert!(l.admit(1, t0 + Duration::from_millis(500)).is_err());
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(l.stats().max_requests_per_window, 2);
    }

    #[test]
    fn one_request_larger_than_the_token_limit_is_admitted_alone() {
        let mut l = Limiter::new(ServerLimits {
            requests_per_minute: 0,
            tokens_per_minute: 10,
        });
        assert!(l.admit(50, Instant::now()).is_ok());
    }
}
