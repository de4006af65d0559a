//! One climb of the rate after a signal, on CUBIC's curve (why CUBIC: see
//! `control`): concave up to a plateau just under the ceiling, flat there
//! for most of the epoch, then convex above it to find a limit that rose.

use std::time::Duration;

use tokio::time::Instant;

/// One climb after a signal: `rate(t) = plateau + k·(t − K)³`, t from
/// `start`: concave from `from` up to the plateau at `K`, then convex above
/// it, reaching `plateau · (1 + probe)` at `2K`. A climb may be shorter than
/// `K`; the rate then holds the plateau until `K`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Curve {
    start: Instant,
    plateau: f64,
    k_below: f64,
    k_above: f64,
    climb: Duration,
    pub(super) epoch: Duration,
}

impl Curve {
    pub(super) fn new(
        start: Instant,
        from: f64,
        plateau: f64,
        epoch: Duration,
        probe: f64,
    ) -> Curve {
        Curve::with_climb(start, from, plateau, epoch, epoch, probe)
    }

    /// A curve whose climb to the plateau takes `climb` (at most `epoch`).
    pub(super) fn with_climb(
        start: Instant,
        from: f64,
        plateau: f64,
        climb: Duration,
        epoch: Duration,
        probe: f64,
    ) -> Curve {
        let climb = climb.min(epoch);
        Curve {
            start,
            plateau,
            k_below: (plateau - from).max(0.0) / climb.as_secs_f64().powi(3),
            k_above: plateau * probe / epoch.as_secs_f64().powi(3),
            climb,
            epoch,
        }
    }

    pub(super) fn rate_at(&self, now: Instant) -> f64 {
        let t = now.saturating_duration_since(self.start).as_secs_f64();
        let below = t - self.climb.as_secs_f64();
        let above = t - self.epoch.as_secs_f64();
        if below < 0.0 {
            self.plateau + self.k_below * below.powi(3)
        } else if above < 0.0 {
            self.plateau
        } else {
            self.plateau + self.k_above * above.powi(3)
        }
    }

    /// Past two epochs with no signal, the ceiling it climbs from is stale.
    pub(super) fn outgrown(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.start) > self.epoch * 2
    }
}
