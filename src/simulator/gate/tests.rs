//! Gate tests on explicit `Instant`/`SystemTime` values: limiters, styles, windows, schedules.

use std::time::UNIX_EPOCH;

use super::*;

/// A monotonic and a wall clock that advance together from the first request.
struct Clock {
    t0: Instant,
    wall0: SystemTime,
}

impl Clock {
    fn at_wall(wall0: SystemTime) -> Self {
        Self {
            t0: Instant::now(),
            wall0,
        }
    }

    fn new() -> Self {
        Self::at_wall(UNIX_EPOCH)
    }

    fn at(&self, ms: u64) -> Moment {
        let d = Duration::from_millis(ms);
        Moment::new(self.t0 + d, self.wall0 + d, self.t0)
    }
}

fn wall(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

fn gate(config: SimConfig) -> Gate {
    Gate::new(&config).expect("limits configured")
}

fn bucket(style: RateLimitStyle, rate: f64, burst: u32) -> Gate {
    gate(SimConfig {
        rate_limit: Some(rate),
        rate_burst: Some(burst),
        rate_limit_style: style,
        ..SimConfig::default()
    })
}

fn windowed(limiter: LimiterKind, rate: f64, window: Duration) -> Gate {
    gate(SimConfig {
        rate_limit: Some(rate),
        limiter,
        rate_window: window,
        rate_limit_style: RateLimitStyle::ResetSeconds,
        ..SimConfig::default()
    })
}

/// How many of `n` requests spread evenly over the second starting at `from_ms` pass.
fn passed_in_second(gate: &Gate, clock: &Clock, from_ms: u64, n: u64) -> usize {
    (0..n)
        .filter(|i| gate.check(1, clock.at(from_ms + i * 1_000 / n)).is_ok())
        .count()
}

#[test]
fn no_limits_means_no_gate() {
    assert!(Gate::new(&SimConfig::default()).is_none());
}

#[test]
fn token_bucket_admits_burst_then_announces_window() {
    let gate = bucket(RateLimitStyle::RetryAfterMs, 10.0, 2);
    let c = Clock::new();
    assert!(gate.check(1, c.at(0)).is_ok());
    assert!(gate.check(2, c.at(0)).is_ok());
    let limited = gate.check(3, c.at(0)).expect_err("bucket empty");
    assert!(!limited.during_pause);
    assert_eq!(
        limited.headers(),
        vec![("retry-after-ms", "100".to_owned())]
    );
    let inside = gate.check(4, c.at(60)).expect_err("in window");
    assert!(inside.during_pause && inside.late);
    assert_eq!(inside.headers(), vec![("retry-after-ms", "40".to_owned())]);
    assert!(gate.check(5, c.at(100)).is_ok());
    assert!(gate.check(6, c.at(100)).is_err());
    // Ten seconds refill the bucket only up to its capacity.
    assert!(gate.check(7, c.at(10_000)).is_ok());
    assert!(gate.check(8, c.at(10_000)).is_ok());
    assert!(gate.check(9, c.at(10_000)).is_err());
}

#[test]
fn only_requests_well_after_the_first_429_are_late() {
    let gate = bucket(RateLimitStyle::RetryAfterMs, 10.0, 1);
    let c = Clock::new();
    assert!(gate.check(1, c.at(0)).is_ok());
    assert!(gate.check(2, c.at(0)).is_err());
    let in_flight = gate.check(3, c.at(20)).expect_err("in window");
    assert!(in_flight.during_pause && !in_flight.late);
    let late = gate.check(4, c.at(21)).expect_err("in window");
    assert!(late.during_pause && late.late);
}

#[test]
fn seconds_style_rounds_up_and_window_matches() {
    let gate = bucket(RateLimitStyle::RetryAfterSeconds, 10.0, 1);
    let c = Clock::new();
    assert!(gate.check(1, c.at(0)).is_ok());
    let limited = gate.check(2, c.at(0)).expect_err("empty");
    assert_eq!(limited.headers(), vec![("retry-after", "1".to_owned())]);
    assert!(gate.check(3, c.at(999)).is_err_and(|l| l.during_pause));
    assert!(gate.check(4, c.at(1_000)).is_ok());
}

#[test]
fn date_style_announces_the_next_whole_second() {
    let gate = bucket(RateLimitStyle::RetryAfterDate, 10.0, 1);
    let c = Clock::at_wall(wall(1_000_300));
    assert!(gate.check(1, c.at(0)).is_ok());
    let headers = gate.check(2, c.at(0)).expect_err("empty").headers();
    assert_eq!(headers[0].0, "retry-after");
    let announced = httpdate::parse_http_date(&headers[0].1).expect("IMF-fixdate");
    assert_eq!(announced, wall(1_001_000));
    // The window ends 700 ms later, at the announced second.
    assert!(gate.check(3, c.at(699)).is_err_and(|l| l.during_pause));
    assert!(gate.check(4, c.at(700)).is_ok());
}

#[test]
fn reset_styles_send_epoch_seconds_or_millis() {
    let gate = bucket(RateLimitStyle::ResetSeconds, 10.0, 1);
    let c = Clock::at_wall(wall(1_000_300));
    assert!(gate.check(1, c.at(0)).is_ok());
    let headers = gate.check(2, c.at(0)).expect_err("empty").headers();
    assert_eq!(
        headers,
        vec![
            ("x-ratelimit-limit", "10".to_owned()),
            ("x-ratelimit-remaining", "0".to_owned()),
            ("x-ratelimit-reset", "1001".to_owned()),
        ]
    );
    let gate = bucket(RateLimitStyle::ResetMillis, 3.0, 1);
    let c = Clock::at_wall(wall(1_000_300) + Duration::from_micros(1));
    assert!(gate.check(1, c.at(0)).is_ok());
    let headers = gate.check(2, c.at(0)).expect_err("empty").headers();
    // 1/3 s after 1000.300001 s, rounded up to the millisecond.
    assert_eq!(headers[2], ("x-ratelimit-reset", "1000634".to_owned()));
    let gate = bucket(RateLimitStyle::Bare, 10.0, 1);
    let c = Clock::new();
    assert!(gate.check(1, c.at(0)).is_ok());
    assert!(
        gate.check(2, c.at(0))
            .expect_err("empty")
            .headers()
            .is_empty()
    );
}

#[test]
fn scripted_every_nth_opens_a_pause() {
    let gate = gate(SimConfig {
        scripted_429_every: Some(3),
        scripted_pause: Duration::from_millis(250),
        ..SimConfig::default()
    });
    let c = Clock::new();
    assert!(gate.check(1, c.at(0)).is_ok());
    assert!(gate.check(2, c.at(0)).is_ok());
    let limited = gate.check(3, c.at(0)).expect_err("scripted 429");
    assert!(!limited.during_pause);
    assert_eq!(
        limited.headers(),
        vec![("retry-after-ms", "250".to_owned())]
    );
    assert!(gate.check(4, c.at(249)).is_err_and(|l| l.during_pause));
    assert!(gate.check(5, c.at(250)).is_ok());
    assert!(gate.check(6, c.at(250)).is_err());
    assert_eq!(gate.quota(c.at(250)), None, "no limiter, no quota");
}

#[test]
fn fixed_window_counts_and_resets_at_the_aligned_boundary() {
    // 3/s over 2 s windows: 6 per window; windows start at even epoch seconds.
    let gate = windowed(LimiterKind::FixedWindow, 3.0, Duration::from_secs(2));
    let c = Clock::at_wall(wall(1_001_500));
    let quota = gate.quota(c.at(0)).expect("limiter");
    assert_eq!((quota.limit, quota.remaining), (6, 6));
    assert_eq!(quota.reset, wall(1_002_000));
    for i in 0..6 {
        assert!(gate.check(i, c.at(i * 10)).is_ok(), "{i}");
    }
    let quota = gate.quota(c.at(100)).expect("limiter");
    assert_eq!(
        quota.headers(false),
        [
            ("x-ratelimit-limit", "6".to_owned()),
            ("x-ratelimit-remaining", "0".to_owned()),
            ("x-ratelimit-reset", "1002".to_owned()),
        ]
    );
    let limited = gate.check(7, c.at(100)).expect_err("window full");
    assert_eq!(
        limited.headers()[2],
        ("x-ratelimit-reset", "1002".to_owned())
    );
    assert_eq!(limited.headers()[0], ("x-ratelimit-limit", "6".to_owned()));
    assert!(gate.check(8, c.at(499)).is_err_and(|l| l.during_pause));
    // 1 002.000 s: a new window with a fresh count.
    for i in 0..6 {
        assert!(gate.check(9 + i, c.at(500)).is_ok(), "{i}");
    }
    assert!(gate.check(15, c.at(500)).is_err());
    let quota = gate.quota(c.at(2_499)).expect("limiter");
    assert_eq!((quota.remaining, quota.reset), (0, wall(1_004_000)));
}

#[test]
fn sliding_window_frees_a_slot_when_the_oldest_leaves() {
    let gate = gate(SimConfig {
        rate_limit: Some(3.0),
        limiter: LimiterKind::SlidingWindow,
        ..SimConfig::default()
    });
    let c = Clock::at_wall(wall(5_000_250));
    for (seq, ms) in [(1, 0), (2, 300), (3, 600)] {
        assert!(gate.check(seq, c.at(ms)).is_ok());
    }
    let quota = gate.quota(c.at(700)).expect("limiter");
    assert_eq!((quota.limit, quota.remaining), (3, 0));
    assert_eq!(quota.reset, wall(5_001_250), "the oldest leaves at 1 s");
    let limited = gate.check(4, c.at(700)).expect_err("full");
    assert_eq!(
        limited.headers(),
        vec![("retry-after-ms", "300".to_owned())]
    );
    assert!(gate.check(5, c.at(999)).is_err_and(|l| l.during_pause));
    assert!(gate.check(6, c.at(1_000)).is_ok(), "one slot freed");
    assert!(gate.check(7, c.at(1_000)).is_err(), "only one");
    let quota = gate.quota(c.at(1_300)).expect("limiter");
    assert_eq!((quota.remaining, quota.reset), (1, wall(5_001_850)));
}

#[test]
fn retry_after_announces_its_fixed_wait_in_every_style() {
    let c = Clock::at_wall(wall(1_000_300));
    let expected = [
        (RateLimitStyle::RetryAfterMs, "1000", 1_000),
        (RateLimitStyle::RetryAfterSeconds, "1", 1_000),
        (
            RateLimitStyle::RetryAfterDate,
            "Thu, 01 Jan 1970 00:16:42 GMT",
            1_700,
        ),
        (RateLimitStyle::ResetSeconds, "1002", 1_700),
        (RateLimitStyle::ResetMillis, "1001300", 1_000),
    ];
    for (style, announced, window_ms) in expected {
        // A bucket that would have waited 100 ms announces 1 s instead.
        let gate = gate(SimConfig {
            rate_limit: Some(10.0),
            rate_burst: Some(1),
            rate_limit_style: style,
            retry_after: Some(Duration::from_secs(1)),
            ..SimConfig::default()
        });
        assert!(gate.check(1, c.at(0)).is_ok());
        let headers = gate.check(2, c.at(0)).expect_err("empty").headers();
        assert_eq!(headers.last().expect("a header").1, announced, "{style:?}");
        let inside = gate.check(3, c.at(window_ms - 1));
        assert!(inside.is_err_and(|l| l.during_pause), "{style:?}");
        assert!(gate.check(4, c.at(window_ms)).is_ok(), "{style:?}");
    }
    assert_eq!(
        httpdate::parse_http_date("Thu, 01 Jan 1970 00:16:42 GMT").expect("date"),
        wall(1_002_000)
    );
}

#[test]
fn halving_then_recovering_changes_how_many_pass_per_second() {
    for limiter in [
        LimiterKind::TokenBucket,
        LimiterKind::FixedWindow,
        LimiterKind::SlidingWindow,
    ] {
        let gate = gate(SimConfig {
            rate_limit: Some(10.0),
            rate_burst: Some(1),
            limiter,
            rate_halve_after: Some(Duration::from_secs(10)),
            rate_recover_after: Some(Duration::from_secs(20)),
            rate_limit_style: RateLimitStyle::Bare,
            ..SimConfig::default()
        });
        let c = Clock::new();
        let per_second = |from| passed_in_second(&gate, &c, from, 100);
        let before: Vec<usize> = (0..3).map(|s| per_second(5_000 + s * 1_000)).collect();
        let halved: Vec<usize> = (0..3).map(|s| per_second(15_000 + s * 1_000)).collect();
        let after: Vec<usize> = (0..3).map(|s| per_second(25_000 + s * 1_000)).collect();
        assert_eq!(before, [10; 3], "{limiter:?}");
        assert_eq!(halved, [5; 3], "{limiter:?}");
        assert_eq!(after, [10; 3], "{limiter:?}");
    }
}

#[test]
fn token_bucket_quota_reports_capacity_tokens_and_refill() {
    let gate = gate(SimConfig {
        rate_limit: Some(2.0),
        rate_burst: Some(4),
        ..SimConfig::default()
    });
    let c = Clock::at_wall(wall(2_000_000));
    assert_eq!(
        gate.quota(c.at(0)).expect("limiter"),
        Quota {
            limit: 4,
            remaining: 4,
            reset: wall(2_000_000),
        }
    );
    for seq in 1..=3 {
        assert!(gate.check(seq, c.at(0)).is_ok());
    }
    // One token left at 0; 1.5 s later 4 are back: full at 2 001.5 s, sent as 2002.
    let quota = gate.quota(c.at(0)).expect("limiter");
    assert_eq!((quota.remaining, quota.reset), (1, wall(2_001_500)));
    assert_eq!(
        quota.headers(true)[1],
        ("x-ratelimit-remaining", "0".to_owned())
    );
    assert_eq!(
        quota.headers(false)[2],
        ("x-ratelimit-reset", "2002".to_owned())
    );
    assert_eq!(gate.quota(c.at(600)).expect("limiter").remaining, 2);
}
