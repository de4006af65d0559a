//! What one rate signal measured (see `control`), kept so answers still on
//! the wire when it came can add to it.

use std::time::Duration;

use tokio::time::Instant;

use super::control::MARGIN;

/// What a signal measured, kept so answers still on the wire can add to it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reading {
    pub(super) accepted: f64,
    /// The span measured over; `None` when the 429 came at once.
    pub(super) span: Option<Duration>,
    /// An announced budget ran out (no 429).
    pub(super) spent: bool,
    /// Accepted since sending resumed, and over how long: what the budget
    /// lasted.
    pub(super) budget_used: (f64, Duration),
    /// The server's burst, taken off `accepted`.
    pub(super) burst: f64,
    /// The rate being sent at the signal.
    pub(super) sent: f64,
    /// What the last cycle, pause included, delivered per second.
    pub(super) floor: f64,
    pub(super) pause: Duration,
    /// When sending resumes.
    pub(super) start: Instant,
    /// The ceiling and confirmations before the signal.
    pub(super) before: (Option<f64>, u32),
}

impl Reading {
    /// What a budget spent with everything accepted was worth per second:
    /// it lasted the span and comes back after the hold.
    pub(super) fn budget_worth(&self, delivered: f64) -> f64 {
        let (used, span) = self.budget_used;
        let lasted = used / (span + self.pause).as_secs_f64();
        if self.before.0.is_none() && span >= self.pause * 2 {
            // The first signal, after a long stretch at the configured rate
            // all accepted: only a little too fast, and a hold rounded up to
            // a whole second overstates by how much.
            lasted.max(delivered * (1.0 - 2.0 * MARGIN))
        } else {
            // A sliding log comes back gradually, not at once at the reset:
            // a budget spent soon after the last hold lasted longer than
            // that span says, and what the whole cycle delivered, that hold
            // included, is a floor.
            lasted.max(self.floor.min(self.sent))
        }
    }
}
