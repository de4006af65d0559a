//! What one rate signal measured (see `control`), kept so answers still on
//! the wire when it came can add to it, and the limit that shows.

use std::time::Duration;

use tokio::time::Instant;

use super::budget::ROUNDING;
use super::control::MARGIN;
use super::delivery::CERTAIN_SAMPLE;

/// A reading on fewer than [`CERTAIN_SAMPLE`] answers cuts the rate to no
/// less than this share of it.
const SMALL_SAMPLE_CUT: f64 = 0.5;
/// A reading on fewer answers than this is rough: probed again soon.
const ROUGH_SAMPLE: f64 = 10.0;
/// Delivery at this share of the rate sent is everything sent.
const SPENT_FULLY: f64 = 0.9;
/// When nothing could be measured, the ceiling is the rate divided by this.
const BLIND_CUT: f64 = 4.0;

/// What a signal measured, kept so answers still on the wire can add to it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reading {
    pub(super) accepted: f64,
    /// The span measured over; `None` when the 429 came at once.
    pub(super) span: Option<Duration>,
    /// An announced budget ran out (no 429).
    pub(super) spent: bool,
    /// Its reset came in whole seconds, so the hold may be a second shorter.
    pub(super) rounded: bool,
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
    /// Refused on a ramp (see `curve::Ramp`): the rate it started from and
    /// the limit it implies.
    pub(super) ramp: Option<(f64, f64)>,
}

/// What a reading says about the limit.
pub(super) struct Found {
    pub(super) limit: f64,
    /// `false` for a blind cut: nothing was measured.
    pub(super) measured: bool,
    /// Measured on too few answers to tell the limit within 5 % (half an
    /// answer in ten).
    pub(super) rough: bool,
    /// Only a little too fast (see [`Reading::budget_worth`]), or refused
    /// on a ramp: the climb restarts on the plateau.
    pub(super) mild: bool,
}

impl Reading {
    /// The limit this reading shows.
    pub(super) fn found(&self) -> Found {
        let sample = self.accepted - self.burst;
        // Refused at once, or with nothing beyond the burst let through: the
        // rate is far above the limit, by how much nothing says. Otherwise
        // the refused request nearly fitted: the limit lies between `sample`
        // and one more per span, so the middle is taken.
        let measured = self
            .span
            .filter(|_| sample >= 1.0)
            .map(|span| (sample + 0.5) / span.as_secs_f64());
        // Refused on a ramp that started below the limit (so below what
        // the cycle measured), the ramp's slope tells the limit better. Its
        // pause has paid for its overshoot (a bucket refills during it), so
        // the climb restarts on the plateau, as after a mild cut.
        let (measured, mut mild) = match (measured, self.ramp) {
            (Some(cycle), Some((from, limit))) if from < cycle => (Some(limit.max(cycle)), true),
            (measured, _) => (measured, false),
        };
        let limit = match measured {
            // Everything sent was accepted until an announced budget ran
            // out: delivery says only that the rate is above the limit. The
            // budget does say more: it lasted the span and comes back after
            // the hold, so it is worth that much per span plus hold (less,
            // when the reset is rounded up to a whole second).
            Some(delivered) if self.spent && delivered >= self.sent * SPENT_FULLY => {
                let worth;
                (worth, mild) = self.budget_worth(delivered);
                worth
            }
            // A reading on few answers is noisy: it halves the rate at most.
            Some(delivered) if sample < CERTAIN_SAMPLE => {
                delivered.clamp(self.sent * SMALL_SAMPLE_CUT, self.sent)
            }
            Some(delivered) => delivered.min(self.sent),
            None => (self.sent / BLIND_CUT).max(self.cycle_floor()),
        };
        let limit = self.within_budget(limit);
        Found {
            limit,
            measured: measured.is_some(),
            rough: sample < ROUGH_SAMPLE && !self.spent,
            mild,
        }
    }

    /// What the whole cycle since the last signal delivered, its pause
    /// included: a floor, never above the rate sent.
    fn cycle_floor(&self) -> f64 {
        self.floor.min(self.sent)
    }

    /// A whole-second reset speaks of a window of a second or more, so a
    /// budget spent in less says no more than its size per second, however
    /// fast it went. Measured: a client slowed by a loaded machine spent a
    /// sliding log's fresh 40 in 0.6 s and learned 63/s.
    fn within_budget(&self, limit: f64) -> f64 {
        let (used, span) = self.budget_used;
        if self.spent && self.rounded && span < ROUNDING {
            // What the whole cycle delivered stays a floor.
            let most = (used / ROUNDING.as_secs_f64()).max(self.cycle_floor());
            limit.min(most.max(1.0))
        } else {
            limit
        }
    }

    /// What a budget spent with everything accepted was worth per second:
    /// it lasted the span and comes back after the hold. Mild (`true`) when
    /// the rate was only a little too fast.
    pub(super) fn budget_worth(&self, delivered: f64) -> (f64, bool) {
        let (used, span) = self.budget_used;
        let lasted = used / (span + self.pause).as_secs_f64();
        // A reset rounded up to a whole second says only that the budget
        // comes back within the last second of the hold.
        let least = if self.rounded {
            self.pause.saturating_sub(ROUNDING)
        } else {
            self.pause
        };
        let long = span >= least * 2 && (!self.rounded || span >= ROUNDING / 2);
        if long {
            // After a stretch at least twice what the hold really is, all
            // accepted, the rate was only a little too fast: the first
            // budget spent at the configured rate, or jitter on a plateau.
            // Delivery above the rate sent is a burst, not the rate.
            let rate = delivered.min(self.sent);
            (lasted.max(rate * (1.0 - 2.0 * MARGIN)), true)
        } else {
            // A sliding log comes back gradually, not at once at the reset:
            // a budget spent soon after the last hold lasted longer than
            // that span says, and what the whole cycle delivered, that hold
            // included, is a floor.
            (lasted.max(self.cycle_floor()), false)
        }
    }
}
