//! The simulated 429 gate: the configured limiter, scripted pauses, announced windows and
//! their headers.
//!
//! `bucket` and `window` are the limiters, `schedule` the rate they enforce over time, and
//! `headers` what a 429 (or, with `rate_headers`, every answer) says about them.

mod bucket;
mod headers;
mod schedule;
mod window;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::config::{LimiterKind, RateLimitStyle, SimConfig};
use bucket::TokenBucket;
use headers::{MILLI, SECOND, ceil_to, ceil_wall};
use schedule::Schedule;
use window::{FixedWindow, SlidingWindow};

/// A request inside a window more than this after its first 429 could not have been in flight.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(20);

/// The clock readings one decision uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Moment {
    pub(crate) now: Instant,
    pub(crate) wall: SystemTime,
    /// Time since the simulator's first request: the clock of `rate_halve_after`.
    pub(crate) since_first: Duration,
}

impl Moment {
    pub(crate) fn new(now: Instant, wall: SystemTime, first: Instant) -> Self {
        Self {
            now,
            wall,
            since_first: now.saturating_duration_since(first),
        }
    }
}

/// What the rate-limit headers report: `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    pub(crate) reset: SystemTime,
}

/// An announced pause: every request arriving before `end` is answered 429.
#[derive(Debug, Clone, Copy)]
struct Window {
    end: Instant,
    /// The same instant on the wall clock, as date-style headers announce it.
    wall_end: SystemTime,
    /// When its first 429 was decided.
    opened: Instant,
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
    /// ... and more than `IN_FLIGHT_GRACE` after the window's first 429.
    pub(crate) late: bool,
}

#[derive(Debug)]
enum Limiter {
    Bucket(TokenBucket),
    Fixed(FixedWindow),
    Sliding(SlidingWindow),
}

impl Limiter {
    fn new(config: &SimConfig) -> Self {
        match config.limiter {
            LimiterKind::TokenBucket => Self::Bucket(TokenBucket::new(config.burst())),
            LimiterKind::FixedWindow => Self::Fixed(FixedWindow::new(config.rate_window)),
            LimiterKind::SlidingWindow => Self::Sliding(SlidingWindow::new(config.rate_window)),
        }
    }

    /// Counts the request, or gives the wait until the limiter would admit one.
    fn admit(&mut self, at: Moment, schedule: &Schedule) -> Result<(), Duration> {
        match self {
            Self::Bucket(bucket) => bucket.admit(at, schedule),
            Self::Fixed(fixed) => fixed.admit(at, schedule),
            Self::Sliding(sliding) => sliding.admit(at, schedule),
        }
    }

    /// The `X-RateLimit-Limit` of the reset styles: the per-window count, or the rate.
    fn limit(&self, at: Moment, schedule: &Schedule) -> u64 {
        match self {
            Self::Bucket(_) => schedule.rate_at(at.since_first).ceil() as u64,
            Self::Fixed(fixed) => fixed.limit(at, schedule),
            Self::Sliding(sliding) => sliding.limit(at, schedule),
        }
    }

    fn quota(&mut self, at: Moment, schedule: &Schedule) -> Quota {
        match self {
            Self::Bucket(bucket) => bucket.quota(at, schedule),
            Self::Fixed(fixed) => fixed.quota(at, schedule),
            Self::Sliding(sliding) => sliding.quota(at, schedule),
        }
    }
}

struct State {
    /// With the schedule it enforces; None without `rate_limit`.
    limiter: Option<(Limiter, Schedule)>,
    window: Option<Window>,
}

/// Decides, under one lock, whether a request passes the rate limits.
pub(crate) struct Gate {
    style: RateLimitStyle,
    scripted: Option<(u64, Duration)>,
    retry_after: Option<Duration>,
    state: Mutex<State>,
}

impl Gate {
    /// None when the config limits nothing, so the hot path skips the lock entirely.
    pub(crate) fn new(config: &SimConfig) -> Option<Self> {
        let limiter = Schedule::new(config).map(|schedule| (Limiter::new(config), schedule));
        let scripted = config
            .scripted_429_every
            .map(|every| (every, config.scripted_pause));
        if limiter.is_none() && scripted.is_none() {
            return None;
        }
        Some(Self {
            style: config.rate_limit_style,
            scripted,
            retry_after: config.retry_after,
            state: Mutex::new(State {
                limiter,
                window: None,
            }),
        })
    }

    /// Admits request number `seq` (1-based, counting all requests) or says how to refuse it.
    pub(crate) fn check(&self, seq: u64, at: Moment) -> Result<(), Limited> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(window) = state.window {
            if at.now < window.end {
                return Err(self.limited(&state, window, at, true));
            }
            state.window = None;
        }
        if let Some((every, pause)) = self.scripted
            && seq.is_multiple_of(every)
        {
            let window = self.open(at, pause);
            state.window = Some(window);
            return Err(self.limited(&state, window, at, false));
        }
        let Some((limiter, schedule)) = &mut state.limiter else {
            return Ok(());
        };
        let wait = limiter.admit(at, schedule).err();
        let Some(wait) = wait else {
            return Ok(());
        };
        let window = self.open(at, self.retry_after.unwrap_or(wait));
        state.window = Some(window);
        Err(self.limited(&state, window, at, false))
    }

    /// The limiter's headers at `at` without counting a request; None without `rate_limit`.
    pub(crate) fn quota(&self, at: Moment) -> Option<Quota> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (limiter, schedule) = state.limiter.as_mut()?;
        Some(limiter.quota(at, schedule))
    }

    /// The window for a pause of `wait`, ending exactly at the instant the header will announce
    /// after rounding up, so a client that obeys the header never arrives inside it.
    fn open(&self, at: Moment, wait: Duration) -> Window {
        let (now, wall) = (at.now, at.wall);
        let relative = |d: Duration| Window {
            end: now + d,
            wall_end: wall + d,
            opened: now,
        };
        let absolute = |wall_end: SystemTime| Window {
            end: now + wall_end.duration_since(wall).unwrap_or_default(),
            wall_end,
            opened: now,
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

    fn limited(&self, state: &State, window: Window, at: Moment, during_pause: bool) -> Limited {
        let limit = state
            .limiter
            .as_ref()
            .map_or(1_000, |(limiter, schedule)| limiter.limit(at, schedule));
        Limited {
            window,
            remaining: window.end.saturating_duration_since(at.now),
            style: self.style,
            limit,
            during_pause,
            late: during_pause && at.now.saturating_duration_since(window.opened) > IN_FLIGHT_GRACE,
        }
    }
}

#[cfg(test)]
mod tests;
