//! One climb of the rate after a signal, on CUBIC's curve (why CUBIC: see
//! `control`): concave up to a plateau just under the ceiling, flat there
//! for most of the epoch, then convex above it to find a limit that rose.

use std::time::Duration;

use tokio::time::Instant;

/// One climb after a signal: `rate(t) = plateau + k·(t − K)³`, t from
/// `start`: concave from `from` up to the plateau at `K`, then convex above
/// it, reaching `plateau · (1 + probe)` at `2K`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Curve {
    start: Instant,
    plateau: f64,
    k_below: f64,
    k_above: f64,
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
        let cube = epoch.as_secs_f64().powi(3);
        Curve {
            start,
            plateau,
            k_below: (plateau - from).max(0.0) / cube,
            k_above: plateau * probe / cube,
            epoch,
        }
    }

    pub(super) fn rate_at(&self, now: Instant) -> f64 {
        let t = now.saturating_duration_since(self.start).as_secs_f64();
        let x = t - self.epoch.as_secs_f64();
        let k = if x < 0.0 { self.k_below } else { self.k_above };
        self.plateau + k * x.powi(3)
    }

    /// Past two epochs with no signal, the ceiling it climbs from is stale.
    pub(super) fn outgrown(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.start) > self.epoch * 2
    }
}
