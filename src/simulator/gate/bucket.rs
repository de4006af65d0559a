//! The token bucket: refills at the scheduled rate up to its capacity, one token per request.

use std::time::Duration;

use super::schedule::{Schedule, wait_from_secs};
use super::{Moment, Quota};

/// Absorbs float drift, so a client that waited the announced time passes.
const EPSILON: f64 = 1e-9;

#[derive(Debug)]
pub(crate) struct TokenBucket {
    capacity: f64,
    tokens: f64,
    /// `Schedule::credit` at the last refill.
    credited: f64,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(capacity: u32) -> Self {
        Self {
            capacity: f64::from(capacity),
            tokens: f64::from(capacity),
            credited: 0.0,
        }
    }

    /// Adds what the rate credited since the last refill; never goes back in time.
    fn refill(&mut self, at: Moment, schedule: &Schedule) {
        let credit = schedule.credit(at.since_first.as_secs_f64());
        if credit > self.credited {
            self.tokens = (self.tokens + credit - self.credited).min(self.capacity);
            self.credited = credit;
        }
    }

    /// The wait from `at` until the schedule has credited `more` beyond the last refill.
    ///
    /// Both ends are whole nanoseconds since the first request, so a window ending at the
    /// token's instant ends exactly where a request on that instant is admitted.
    fn wait_for(&self, more: f64, at: Moment, schedule: &Schedule) -> Duration {
        let ready = wait_from_secs(schedule.time_for_credit(self.credited + more));
        ready.saturating_sub(at.since_first)
    }

    /// Takes a token, or says how long until the next one.
    pub(crate) fn admit(&mut self, at: Moment, schedule: &Schedule) -> Result<(), Duration> {
        self.refill(at, schedule);
        if self.tokens >= 1.0 - EPSILON {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return Ok(());
        }
        Err(self.wait_for(1.0 - self.tokens, at, schedule))
    }

    /// Capacity, whole tokens left and the instant the bucket is full again.
    pub(crate) fn quota(&mut self, at: Moment, schedule: &Schedule) -> Quota {
        self.refill(at, schedule);
        Quota {
            limit: self.capacity as u64,
            remaining: (self.tokens + EPSILON).floor() as u64,
            reset: at.wall + self.wait_for(self.capacity - self.tokens, at, schedule),
        }
    }
}
