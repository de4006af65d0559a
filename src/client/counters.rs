//! Request counters, shared by both endpoints' fetches, progress, the summary
//! and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Request counters, shared with progress, the summary and `/metrics`.
#[derive(Debug)]
pub struct RequestCounters {
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub retries: AtomicU64,
    /// Answers by HTTP status (100 to 599); index 0 counts requests that got
    /// no answer (connect errors, resets, timeouts).
    by_status: Box<[AtomicU64]>,
}

impl Default for RequestCounters {
    fn default() -> RequestCounters {
        RequestCounters {
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            by_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTotals {
    pub requests: u64,
    pub rate_limited: u64,
    pub retries: u64,
}

impl RequestTotals {
    /// What was counted between `before` and `self`.
    pub fn since(&self, before: &RequestTotals) -> RequestTotals {
        RequestTotals {
            requests: self.requests - before.requests,
            rate_limited: self.rate_limited - before.rate_limited,
            retries: self.retries - before.retries,
        }
    }
}

impl RequestCounters {
    pub fn snapshot(&self) -> RequestTotals {
        RequestTotals {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    pub(super) fn answered(&self, status: Option<u16>) {
        let slot = status.map_or(0, usize::from).min(self.by_status.len() - 1);
        self.by_status[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// `(status, count)` for every status seen; status `None` is no answer.
    pub fn by_status(&self) -> Vec<(Option<u16>, u64)> {
        self.by_status
            .iter()
            .enumerate()
            .filter_map(|(slot, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then_some(((slot > 0).then_some(slot as u16), n))
            })
            .collect()
    }
}
