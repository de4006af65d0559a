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

    /// Holds its plateau for good (no probe above it).
    pub(super) fn holds(&self) -> bool {
        self.k_above == 0.0
    }

    /// Past two epochs with no signal, the ceiling it climbs from is stale.
    pub(super) fn outgrown(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.start) > self.epoch * 2
    }
}

/// The climb after a blind cut, as slow start searches: nothing measured
/// says where the limit lies below the rate refused, so the rate rises in a
/// straight line through the whole range until the next 429 measures it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ramp {
    start: Instant,
    pub(super) from: f64,
    /// Requests per second gained per second.
    slope: f64,
}

impl Ramp {
    /// A ramp from `from` that gains `to − from` every `over`.
    pub(super) fn new(start: Instant, from: f64, to: f64, over: Duration) -> Ramp {
        Ramp {
            start,
            from,
            slope: (to - from).max(0.0) / over.as_secs_f64(),
        }
    }

    pub(super) fn rate_at(&self, now: Instant) -> f64 {
        let t = now.saturating_duration_since(self.start).as_secs_f64();
        self.from + self.slope * t
    }

    /// The limit of a token bucket holding `burst` that refused the request
    /// after `accepted` on this ramp, having crossed its limit on the way:
    /// from the crossing, the bucket drained at the rate's excess, which
    /// grew linearly, until less than one token was left. So the burst
    /// drained was `slope·τ²/2`, and the limit is `rate − slope·τ`.
    ///
    /// `rate` is where the ramp stood when the refused request was sent:
    /// having sent `n` requests, a straight ramp stands at `√(from² +
    /// 2·slope·n)`. Counting requests, not time, leaves out how far sending
    /// lagged the ramp (each new rate starts a period late) and the
    /// answer's latency; an answer still on the wire reads the limit lower.
    ///
    /// What was drained lies between `burst − 1` and `burst`, and requests
    /// come a spacing apart: the limit is known to a few percent only (at
    /// 5 × 100/s, ±3/s per token). The whole burst is taken, the lowest
    /// limit the refusal allows: a plateau read a little low costs a little
    /// rate until the curve probes above it; one read a little high costs
    /// another pause.
    pub(super) fn limit_when_refused(&self, burst: f64, accepted: f64) -> f64 {
        let sent = (self.from * self.from + 2.0 * self.slope * (accepted + 1.0)).sqrt();
        sent - (2.0 * burst.max(0.0) * self.slope).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ramp from `from` into a token bucket of `limit` per second holding
    /// `burst`, sent `lag` behind the ramp and answered `latency` later:
    /// when the first refusal is seen, and how many were accepted by then.
    fn refused_at(
        ramp: &Ramp,
        start: Instant,
        (limit, burst): (f64, f64),
        (lag, latency): (Duration, Duration),
    ) -> (Instant, f64) {
        let step = Duration::from_micros(100);
        let (mut now, mut tokens, mut credit) = (start, burst, 0.0);
        let mut answered: Vec<Instant> = Vec::new();
        loop {
            now += step;
            tokens = (tokens + limit * step.as_secs_f64()).min(burst);
            let sending = now.checked_sub(lag).filter(|t| *t > start);
            credit += sending.map_or(0.0, |t| ramp.rate_at(t)) * step.as_secs_f64();
            while credit >= 1.0 {
                credit -= 1.0;
                if tokens < 1.0 {
                    let seen = now + latency;
                    let accepted = answered.iter().filter(|a| **a <= seen).count();
                    return (seen, accepted as f64);
                }
                tokens -= 1.0;
                answered.push(now + latency);
            }
        }
    }

    #[test]
    fn a_ramp_through_the_limit_reads_it_from_how_far_it_went_past() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        // After a blind cut from 500/s and from 2,000/s: from a
        // thirty-second of the refused rate to a quarter in a second,
        // crossing each limit on the way.
        for (to, limit, burst) in [
            (125.0, 100.0, 5.0),
            (125.0, 40.0, 5.0),
            (500.0, 300.0, 20.0),
            (500.0, 200.0, 5.0),
            (500.0, 100.0, 5.0),
        ] {
            // Sending on time, a period behind, and answered late.
            for delays in [(ms(0), ms(0)), (ms(30), ms(0)), (ms(10), ms(40))] {
                let ramp = Ramp::new(start, to / 8.0, to, Duration::from_secs(1));
                let (seen, accepted) = refused_at(&ramp, start, (limit, burst), delays);
                let rate = ramp.rate_at(seen);
                assert!(rate > limit * 1.1, "refused only well past it: {rate}");
                let read = ramp.limit_when_refused(burst, accepted);
                assert!(
                    (limit * 0.95 - 1.0..=limit).contains(&read),
                    "limit {limit} read as {read} (seen at {rate}, {delays:?})"
                );
            }
        }
    }
}
