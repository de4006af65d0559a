//! Window limiters: fixed windows aligned on the wall clock, and a sliding log.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::schedule::Schedule;
use super::{Moment, Quota};

/// Requests one window allows at `rate`: ceil(rate * window), at least 1.
pub(crate) fn window_count(rate: f64, window: Duration) -> u64 {
    // The epsilon keeps 10/s over 300 ms at 3 despite 10 * 0.3 = 3.0000000000000004.
    (rate * window.as_secs_f64() - 1e-9).ceil().max(1.0) as u64
}

/// Windows `[k * len, (k + 1) * len)` since the epoch, as gateways count them.
#[derive(Debug)]
pub(crate) struct FixedWindow {
    len: Duration,
    index: u128,
    count: u64,
}

impl FixedWindow {
    pub(crate) fn new(len: Duration) -> Self {
        Self {
            len,
            index: 0,
            count: 0,
        }
    }

    /// Moves to the window holding `wall`; a wall clock that steps back stays in the current one.
    fn advance(&mut self, wall: SystemTime) {
        let since_epoch = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let index = since_epoch.as_nanos() / self.len.as_nanos().max(1);
        if index > self.index {
            self.index = index;
            self.count = 0;
        }
    }

    fn end(&self) -> SystemTime {
        let nanos = (self.index + 1) * self.len.as_nanos();
        UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Counts the request, or says how long until the window ends.
    pub(crate) fn admit(&mut self, at: Moment, schedule: &Schedule) -> Result<(), Duration> {
        self.advance(at.wall);
        if self.count < self.limit(at, schedule) {
            self.count += 1;
            return Ok(());
        }
        Err(self.end().duration_since(at.wall).unwrap_or_default())
    }

    pub(crate) fn limit(&self, at: Moment, schedule: &Schedule) -> u64 {
        window_count(schedule.rate_at(at.since_first), self.len)
    }

    /// The window's count, what is left of it and its end.
    pub(crate) fn quota(&mut self, at: Moment, schedule: &Schedule) -> Quota {
        self.advance(at.wall);
        let limit = self.limit(at, schedule);
        Quota {
            limit,
            remaining: limit.saturating_sub(self.count),
            reset: self.end(),
        }
    }
}

/// A sliding log: the arrival of every request counted in the trailing window.
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    len: Duration,
    /// Oldest first; kept sorted even when concurrent requests lock out of order.
    log: VecDeque<Instant>,
}

impl SlidingWindow {
    pub(crate) fn new(len: Duration) -> Self {
        Self {
            len,
            log: VecDeque::new(),
        }
    }

    fn evict(&mut self, now: Instant) {
        while self.log.front().is_some_and(|&t| t + self.len <= now) {
            self.log.pop_front();
        }
    }

    /// Counts the request, or says how long until enough counted ones leave to admit one.
    pub(crate) fn admit(&mut self, at: Moment, schedule: &Schedule) -> Result<(), Duration> {
        self.evict(at.now);
        let limit = self.limit(at, schedule);
        let count = self.log.len() as u64;
        if count < limit {
            let last = self.log.back().copied().unwrap_or(at.now);
            self.log.push_back(at.now.max(last));
            return Ok(());
        }
        // After a halving more than `limit` may be counted: all but `limit - 1` must leave.
        let leaving = usize::try_from(count - limit).unwrap_or(usize::MAX);
        let freed = self.log.get(leaving).map_or(at.now, |&t| t + self.len);
        Err(freed.saturating_duration_since(at.now))
    }

    pub(crate) fn limit(&self, at: Moment, schedule: &Schedule) -> u64 {
        window_count(schedule.rate_at(at.since_first), self.len)
    }

    /// The window's count, what is left of it and when its oldest request leaves.
    pub(crate) fn quota(&mut self, at: Moment, schedule: &Schedule) -> Quota {
        self.evict(at.now);
        let limit = self.limit(at, schedule);
        let oldest_leaves = self.log.front().map_or(Duration::ZERO, |&t| {
            (t + self.len).saturating_duration_since(at.now)
        });
        Quota {
            limit,
            remaining: limit.saturating_sub(self.log.len() as u64),
            reset: at.wall + oldest_leaves,
        }
    }
}
