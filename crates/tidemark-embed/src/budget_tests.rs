use super::*;

const KEPT: Duration = Duration::from_secs(61);

#[test]
fn the_margin_makes_the_kept_window() {
    assert_eq!(WINDOW + MARGIN, KEPT);
}

fn limits(tpm: u64, rpm: u64) -> Limits {
    Limits {
        tokens_per_request: 0,
        tokens_per_minute: tpm,
        requests_per_minute: rpm,
    }
}

/// Tokens sent in the 60 s window ending at every reservation, at most.
fn max_window(reservations: &[(Instant, u64)]) -> u64 {
    reservations
        .iter()
        .map(|(end, _)| {
            reservations
                .iter()
                .filter(|(t, _)| *t <= *end && *t + WINDOW > *end)
                .map(|(_, k)| k)
                .sum()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn unlimited_never_waits() {
    let mut b = Budget::new(Limits::default());
    let now = Instant::now();
    for _ in 0..1000 {
        assert_eq!(b.reserve(10_000, now), now);
    }
}

#[test]
fn tokens_per_minute_hold_in_every_window() {
    let mut b = Budget::new(limits(1000, 0));
    let t0 = Instant::now();
    let mut got = Vec::new();
    for i in 0..50 {
        let now = t0 + Duration::from_millis(i * 100);
        got.push((b.reserve(90, now), 90));
    }
    assert!(max_window(&got) <= 1000, "{}", max_window(&got));
    // 11 fit the first minute; the 12th waits for the first to leave the window.
    assert_eq!(got[10].0, t0 + Duration::from_millis(1000));
    assert_eq!(got[11].0, t0 + KEPT);
}

#[test]
fn requests_per_minute_hold() {
    let mut b = Budget::new(limits(0, 3));
    let t0 = Instant::now();
    let at: Vec<Instant> = (0..7).map(|_| b.reserve(1, t0)).collect();
    assert_eq!(&at[..3], &[t0, t0, t0]);
    assert_eq!(&at[3..6], &[t0 + KEPT; 3]);
    assert_eq!(at[6], t0 + KEPT * 2);
}

#[test]
fn a_request_larger_than_the_limit_goes_alone() {
    let mut b = Budget::new(limits(100, 0));
    let t0 = Instant::now();
    assert_eq!(b.reserve(500, t0), t0, "an empty window takes it");
    assert_eq!(b.reserve(10, t0), t0 + KEPT, "then nothing until it left");
}

#[test]
fn callers_queue_in_order_instead_of_all_at_once() {
    let mut b = Budget::new(limits(100, 0));
    let t0 = Instant::now();
    let at: Vec<Instant> = (0..5).map(|_| b.reserve(100, t0)).collect();
    for w in at.windows(2) {
        assert_eq!(w[1], w[0] + KEPT, "one per window, in order: {at:?}");
    }
}

#[test]
fn a_429_pauses_tightens_and_recovers_gradually() {
    let mut b = Budget::new(limits(1000, 100));
    let t0 = Instant::now();
    b.throttled(Duration::from_secs(5), t0);
    assert_eq!(b.effective(), (500, 50));
    assert_eq!(b.reserve(1, t0), t0 + Duration::from_secs(5));
    // Several batches throttled at once: the pause is the latest, the factor bottoms out.
    for _ in 0..5 {
        b.throttled(Duration::from_secs(2), t0);
    }
    assert_eq!(b.effective(), (250, 25));
    assert_eq!(
        b.reserve(1, t0 + Duration::from_secs(1)),
        t0 + Duration::from_secs(5)
    );
    for _ in 0..3 {
        b.succeeded();
    }
    assert_eq!(b.effective(), (550, 55));
    for _ in 0..20 {
        b.succeeded();
    }
    assert_eq!(b.effective(), (1000, 100));
}

#[test]
fn pack_bounds_tokens_and_count() {
    assert_eq!(pack(&[10, 10, 10, 10, 10], 2, 0), vec![0..2, 2..4, 4..5]);
    assert_eq!(pack(&[10, 10, 10, 10, 10], 10, 25), vec![0..2, 2..4, 4..5]);
    assert_eq!(pack(&[5, 100, 5], 10, 50), vec![0..1, 1..2, 2..3]);
    assert!(pack(&[], 10, 50).is_empty());
    let tokens = [3, 9, 4, 7, 1, 8, 2, 6];
    for r in pack(&tokens, 3, 12) {
        let sum: usize = tokens[r.clone()].iter().sum();
        assert!(r.len() <= 3 && (sum <= 12 || r.len() == 1), "{r:?}");
    }
}
