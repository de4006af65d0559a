//! The simulated 429 gate: token bucket, scripted pauses, announced windows and their headers.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::config::{RateLimitStyle, SimConfig};

/// An announced pause: every request arriving before `end` is answered 429.
#[derive(Debug, Clone, Copy)]
struct Window {
    end: Instant,
    /// The same instant on the wall clock, as date-style headers announce it.
    wall_end: SystemTime,
}

/// A 429 to send: which window it announces and whether the request arrived inside it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limited {
    window: Window,
    /// Time from the decision to the window end.
    remaining: Duration,
    style: RateLimitStyle,
    limit: u64,
    /// The request arrived while an announced window was already in force.
    pub(crate) during_pause: bool,
}

struct State {
    tokens: f64,
    refilled_at: Instant,
    window: Option<Window>,
}

/// Decides, under one lock, whether a request passes the rate limits.
pub(crate) struct Gate {
    style: RateLimitStyle,
    /// (requests per second, capacity) of the token bucket.
    bucket: Option<(f64, f64)>,
    scripted: Option<(u64, Duration)>,
    limit: u64,
    state: Mutex<State>,
}

impl Gate {
    /// None when the config limits nothing, so the hot path skips the lock entirely.
    pub(crate) fn new(config: &SimConfig, now: Instant) -> Option<Self> {
        let bucket = config
            .rate_limit
            .map(|rate| (rate, f64::from(config.burst())));
        let scripted = config
            .scripted_429_every
            .map(|every| (every, config.scripted_pause));
        if bucket.is_none() && scripted.is_none() {
            return None;
        }
        Some(Self {
            style: config.rate_limit_style,
            limit: config.rate_limit.map_or(1_000, |rate| rate.ceil() as u64),
            state: Mutex::new(State {
                tokens: bucket.map_or(0.0, |(_, capacity)| capacity),
                refilled_at: now,
                window: None,
            }),
            bucket,
            scripted,
        })
    }

    /// Admits request number `seq` (1-based, counting all requests) or says how to refuse it.
    pub(crate) fn check(&self, seq: u64, now: Instant, wall: SystemTime) -> Result<(), Limited> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(window) = state.window {
            if now < window.end {
                return Err(self.limited(window, now, true));
            }
            state.window = None;
        }
        if let Some((every, pause)) = self.scripted
            && seq.is_multiple_of(every)
        {
            let window = self.open(now, wall, pause);
            state.window = Some(window);
            return Err(self.limited(window, now, false));
        }
        let Some((rate, capacity)) = self.bucket else {
            return Ok(());
        };
        let elapsed = now
            .saturating_duration_since(state.refilled_at)
            .as_secs_f64();
        state.tokens = (state.tokens + elapsed * rate).min(capacity);
        state.refilled_at = now;
        // The epsilon absorbs float drift, so a client that waited the announced time passes.
        if state.tokens >= 1.0 - 1e-9 {
            state.tokens = (state.tokens - 1.0).max(0.0);
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - state.tokens) / rate);
        let window = self.open(now, wall, wait);
        state.window = Some(window);
        Err(self.limited(window, now, false))
    }

    /// The window for a pause of `wait`, ending exactly at the instant the header will announce
    /// after rounding up, so a client that obeys the header never arrives inside it.
    fn open(&self, now: Instant, wall: SystemTime, wait: Duration) -> Window {
        let relative = |d: Duration| Window {
            end: now + d,
            wall_end: wall + d,
        };
        let absolute = |wall_end: SystemTime| Window {
            end: now + wall_end.duration_since(wall).unwrap_or_default(),
            wall_end,
        };
        match self.style {
            RateLimitStyle::RetryAfterMs => relative(ceil_to(wait, MILLI)),
            RateLimitStyle::RetryAfterSeconds => relative(ceil_to(wait, SECOND)),
            RateLimitStyle::RetryAfterDate | RateLimitStyle::ResetSeconds => {
                absolute(ceil_wall(wall + wait, SECOND))
            }
            RateLimitStyle::ResetMillis => absolute(ceil_wall(wall + wait, MILLI)),
            RateLimitStyle::Bare => relative(wait),
        }
    }

    fn limited(&self, window: Window, now: Instant, during_pause: bool) -> Limited {
        Limited {
            window,
            remaining: window.end.saturating_duration_since(now),
            style: self.style,
            limit: self.limit,
            during_pause,
        }
    }
}

const MILLI: u128 = 1_000_000;
const SECOND: u128 = 1_000_000_000;

/// Rounds `d` up to a whole multiple of `unit` nanoseconds.
fn ceil_to(d: Duration, unit: u128) -> Duration {
    let nanos = d.as_nanos().div_ceil(unit) * unit;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Rounds a wall-clock instant up to a whole multiple of `unit` since the epoch.
fn ceil_wall(t: SystemTime, unit: u128) -> SystemTime {
    UNIX_EPOCH + ceil_to(t.duration_since(UNIX_EPOCH).unwrap_or_default(), unit)
}

impl Limited {
    /// The timing headers of this 429 in the configured style.
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        let epoch = self
            .window
            .wall_end
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let reset = |value: String| {
            vec![
                ("x-ratelimit-limit", self.limit.to_string()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", value),
            ]
        };
        match self.style {
            RateLimitStyle::RetryAfterMs => {
                let ms = ceil_to(self.remaining, MILLI).as_millis();
                vec![("retry-after-ms", ms.to_string())]
            }
            RateLimitStyle::RetryAfterSeconds => {
                let secs = ceil_to(self.remaining, SECOND).as_secs();
                vec![("retry-after", secs.to_string())]
            }
            RateLimitStyle::RetryAfterDate => {
                vec![("retry-after", httpdate::fmt_http_date(self.window.wall_end))]
            }
            RateLimitStyle::ResetSeconds => reset(epoch.as_secs().to_string()),
            RateLimitStyle::ResetMillis => reset(epoch.as_millis().to_string()),
            RateLimitStyle::Bare => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(style: RateLimitStyle, rate: f64, burst: u32) -> (Gate, Instant) {
        let config = SimConfig {
            rate_limit: Some(rate),
            rate_burst: Some(burst),
            rate_limit_style: style,
            ..SimConfig::default()
        };
        let now = Instant::now();
        (Gate::new(&config, now).expect("limits configured"), now)
    }

    fn wall(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    #[test]
    fn no_limits_means_no_gate() {
        assert!(Gate::new(&SimConfig::default(), Instant::now()).is_none());
    }

    #[test]
    fn token_bucket_admits_burst_then_announces_window() {
        let (gate, t0) = limiter(RateLimitStyle::RetryAfterMs, 10.0, 2);
        assert!(gate.check(1, t0, wall(0)).is_ok());
        assert!(gate.check(2, t0, wall(0)).is_ok());
        let limited = gate.check(3, t0, wall(0)).expect_err("bucket empty");
        assert!(!limited.during_pause);
        assert_eq!(
            limited.headers(),
            vec![("retry-after-ms", "100".to_owned())]
        );
        let inside = gate
            .check(4, t0 + Duration::from_millis(60), wall(60))
            .expect_err("in window");
        assert!(inside.during_pause);
        assert_eq!(inside.headers(), vec![("retry-after-ms", "40".to_owned())]);
        assert!(
            gate.check(5, t0 + Duration::from_millis(100), wall(100))
                .is_ok()
        );
        assert!(
            gate.check(6, t0 + Duration::from_millis(100), wall(100))
                .is_err()
        );
        // Ten seconds refill the bucket only up to its capacity.
        let later = t0 + Duration::from_secs(10);
        assert!(gate.check(7, later, wall(10_000)).is_ok());
        assert!(gate.check(8, later, wall(10_000)).is_ok());
        assert!(gate.check(9, later, wall(10_000)).is_err());
    }

    #[test]
    fn seconds_style_rounds_up_and_window_matches() {
        let (gate, t0) = limiter(RateLimitStyle::RetryAfterSeconds, 10.0, 1);
        assert!(gate.check(1, t0, wall(0)).is_ok());
        let limited = gate.check(2, t0, wall(0)).expect_err("empty");
        assert_eq!(limited.headers(), vec![("retry-after", "1".to_owned())]);
        let inside = gate.check(3, t0 + Duration::from_millis(999), wall(999));
        assert!(inside.is_err_and(|l| l.during_pause));
        assert!(
            gate.check(4, t0 + Duration::from_secs(1), wall(1_000))
                .is_ok()
        );
    }

    #[test]
    fn date_style_announces_the_next_whole_second() {
        let (gate, t0) = limiter(RateLimitStyle::RetryAfterDate, 10.0, 1);
        assert!(gate.check(1, t0, wall(1_000_300)).is_ok());
        let limited = gate.check(2, t0, wall(1_000_300)).expect_err("empty");
        let headers = limited.headers();
        assert_eq!(headers[0].0, "retry-after");
        let announced = httpdate::parse_http_date(&headers[0].1).expect("IMF-fixdate");
        assert_eq!(announced, wall(1_001_000));
        // The window ends 700 ms later, at the announced second.
        let inside = gate.check(3, t0 + Duration::from_millis(699), wall(1_000_999));
        assert!(inside.is_err_and(|l| l.during_pause));
        assert!(
            gate.check(4, t0 + Duration::from_millis(700), wall(1_001_000))
                .is_ok()
        );
    }

    #[test]
    fn reset_styles_send_epoch_seconds_or_millis() {
        let (gate, t0) = limiter(RateLimitStyle::ResetSeconds, 10.0, 1);
        assert!(gate.check(1, t0, wall(1_000_300)).is_ok());
        let headers = gate
            .check(2, t0, wall(1_000_300))
            .expect_err("empty")
            .headers();
        assert_eq!(
            headers,
            vec![
                ("x-ratelimit-limit", "10".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", "1001".to_owned()),
            ]
        );
        let (gate, t0) = limiter(RateLimitStyle::ResetMillis, 3.0, 1);
        let start = wall(1_000_300) + Duration::from_micros(1);
        assert!(gate.check(1, t0, start).is_ok());
        let headers = gate.check(2, t0, start).expect_err("empty").headers();
        // 1/3 s after 1000.300001 s, rounded up to the millisecond.
        assert_eq!(headers[2], ("x-ratelimit-reset", "1000634".to_owned()));
        let (gate, t0) = limiter(RateLimitStyle::Bare, 10.0, 1);
        assert!(gate.check(1, t0, wall(0)).is_ok());
        assert!(
            gate.check(2, t0, wall(0))
                .expect_err("empty")
                .headers()
                .is_empty()
        );
    }

    #[test]
    fn scripted_every_nth_opens_a_pause() {
        let config = SimConfig {
            scripted_429_every: Some(3),
            scripted_pause: Duration::from_millis(250),
            ..SimConfig::default()
        };
        let t0 = Instant::now();
        let gate = Gate::new(&config, t0).expect("scripted");
        assert!(gate.check(1, t0, wall(0)).is_ok());
        assert!(gate.check(2, t0, wall(0)).is_ok());
        let limited = gate.check(3, t0, wall(0)).expect_err("scripted 429");
        assert!(!limited.during_pause);
        assert_eq!(
            limited.headers(),
            vec![("retry-after-ms", "250".to_owned())]
        );
        let inside = gate.check(4, t0 + Duration::from_millis(249), wall(249));
        assert!(inside.is_err_and(|l| l.during_pause));
        assert!(
            gate.check(5, t0 + Duration::from_millis(250), wall(250))
                .is_ok()
        );
        assert!(
            gate.check(6, t0 + Duration::from_millis(250), wall(250))
                .is_err()
        );
    }
}
