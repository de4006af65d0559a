//! The rate controller: finds the server's real limit from its answers and
//! holds the sending rate just under it. Pure logic on instants it is given,
//! so its tests run on a virtual clock.
//!
//! It is built the way TCP congestion control is, with a 429 as the loss
//! signal and `X-RateLimit-Remaining` running low as the early (ECN-like) one:
//!
//! - **Estimate from delivery, as BBR does.** At a signal the ceiling is set
//!   from the rate the server actually accepted since sending last resumed,
//!   not from the rate that was being sent: a client at 20× the limit learns
//!   the limit, not 90 % of 20×. A token bucket lets its burst through before
//!   refusing, which inflates a short measurement; the smallest number of
//!   answers ever accepted before a 429 bounds that burst and is taken off.
//!   When a 429 came at once, nothing was measured: the rate is quartered,
//!   unless the whole cycle since the last signal delivered more.
//! - **Plateau and probe, as CUBIC does.** After a signal the rate restarts
//!   at `BETA` × ceiling and climbs on a cubic curve: quickly at first, then
//!   flat just under the ceiling (`MARGIN` below it) for most of the epoch
//!   `K`, and only then above it, convexly, to find a limit that was raised.
//! - **Probe as carefully as a 429 is expensive.** `K` is proportional to the
//!   announced pause: a server that pauses everything for a whole second per
//!   429 is probed rarely, one that names a 10 ms wait often. A ceiling met
//!   again at nearly the same rate is confirmed and each confirmation doubles
//!   `K`, as Netflix's concurrency limits settle once the gradient is flat.
//! - **Never above the configured rate**, and never below `FLOOR_SHARE` of it.

use std::time::Duration;

use tokio::time::Instant;

/// The rate restarts at this share of the ceiling after a signal.
pub const BETA: f64 = 0.95;
/// The plateau sits this share under the learned ceiling.
pub const MARGIN: f64 = 0.02;
/// The rate never drops below this share of the configured rate.
pub const FLOOR_SHARE: f64 = 0.001;
/// Epoch length per second of announced pause (one probe per `K` costs one
/// pause, so about 1/20 of the time at most, before confirmations).
const K_PER_PAUSE: f64 = 20.0;
const K_MIN: Duration = Duration::from_secs(2);
const K_MAX: Duration = Duration::from_secs(120);
/// Two ceilings within this share of each other confirm each other.
const CONFIRM_SHARE: f64 = 0.05;
/// A ceiling measured on fewer accepted answers than this is re-probed soon.
const CERTAIN_SAMPLE: f64 = 30.0;
/// When nothing could be measured, the ceiling is the rate divided by this.
const BLIND_CUT: f64 = 4.0;
/// Delivery is measured over at most this much of the recent past.
const MEASURE_SPAN: Duration = Duration::from_secs(5);
/// A 429 this soon after sending resumed bounds the server's burst.
const FAST: Duration = Duration::from_millis(100);

/// Why the rate is being cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// A 429 that paused every request for this long.
    RateLimited(Duration),
    /// The budget `X-RateLimit-Remaining` announced ran out this long before
    /// its reset: sending holds until then, with no request refused.
    BudgetLow(Duration),
}

/// One climb after a signal: `rate(t) = plateau + k·(t − K)³`, t from
/// `start`: concave from `from` up to the plateau at `K`, then convex above
/// it, reaching `plateau · (1 + probe)` at `2K`.
#[derive(Debug, Clone, Copy)]
struct Curve {
    start: Instant,
    plateau: f64,
    k_below: f64,
    k_above: f64,
    epoch: Duration,
}

impl Curve {
    fn new(start: Instant, from: f64, plateau: f64, epoch: Duration, probe: f64) -> Curve {
        let cube = epoch.as_secs_f64().powi(3);
        Curve {
            start,
            plateau,
            k_below: (plateau - from).max(0.0) / cube,
            k_above: plateau * probe / cube,
            epoch,
        }
    }

    fn rate_at(&self, now: Instant) -> f64 {
        let t = now.saturating_duration_since(self.start).as_secs_f64();
        let x = t - self.epoch.as_secs_f64();
        let k = if x < 0.0 { self.k_below } else { self.k_above };
        self.plateau + k * x.powi(3)
    }

    /// Past two epochs with no signal, the ceiling it climbs from is stale.
    fn outgrown(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.start) > self.epoch * 2
    }
}

/// The adaptive rate and everything it learned.
#[derive(Debug, Clone)]
pub struct Controller {
    max: f64,
    rate: f64,
    /// The highest rate the server is known to accept (learned, or remembered
    /// from an earlier run). `None` until a first signal.
    ceiling: Option<f64>,
    curve: Option<Curve>,
    /// Consecutive signals that found nearly the same ceiling.
    confirmed: u32,
    /// Consecutive climbs that passed their ceiling with no signal.
    outgrown: u32,
    /// Smallest count of answers a server accepted before a 429: a bound on
    /// its burst, taken off short measurements.
    burst_seen: Option<f64>,
    /// When sending last resumed after a pause (or began).
    resumed_at: Instant,
    /// When the last signal came.
    signalled_at: Option<Instant>,
    accepted: Delivery,
}

impl Controller {
    /// A controller for at most `max` requests per second. With a ceiling
    /// `learned` by an earlier run it starts on that ceiling's plateau, as
    /// confirmed once; without, it starts at `max`.
    pub fn new(max: f64, learned: Option<f64>, now: Instant) -> Controller {
        let ceiling = learned
            .filter(|c| c.is_finite() && *c > 0.0)
            .map(|c| c.min(max));
        let mut controller = Controller {
            max,
            rate: max,
            ceiling,
            curve: None,
            confirmed: 0,
            outgrown: 0,
            burst_seen: None,
            resumed_at: now,
            signalled_at: None,
            accepted: Delivery::default(),
        };
        if let Some(ceiling) = ceiling {
            // A limit met before is probed rarely: half the longest epoch.
            controller.confirmed = 1;
            let plateau = ceiling * (1.0 - MARGIN);
            let epoch = K_MAX / 2;
            controller.curve = Some(Curve::new(now, plateau, plateau, epoch, 1.0 - BETA));
            controller.rate = controller.bounded(plateau);
        }
        controller
    }

    /// The rate to pace at now, requests per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The ceiling learned so far, if any.
    pub fn ceiling(&self) -> Option<f64> {
        self.ceiling
    }

    /// The configured maximum.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// An answer that was not a 429 arrived.
    pub fn on_accepted(&mut self, now: Instant) {
        self.accepted.count(now);
        self.advance(now);
    }

    /// Sending resumes after a pause ended at `at`: delivery is measured from here.
    pub fn on_resumed(&mut self, at: Instant) {
        self.resumed_at = self.resumed_at.max(at);
    }

    /// Moves the rate along its curve.
    pub fn advance(&mut self, now: Instant) {
        let Some(curve) = self.curve else {
            return;
        };
        if curve.outgrown(now) && self.rate < self.max {
            // No signal for two epochs: the limit is higher than thought.
            // Probe on from here, each time sooner and twice as far, as
            // slow start searches.
            self.ceiling = Some(self.rate);
            self.outgrown += 1;
            self.confirmed = 0;
            let epoch = (curve.epoch / 2).max(K_MIN);
            let probe = (1.0 - BETA) * f64::from(1u32 << self.outgrown.min(4));
            self.curve = Some(Curve::new(now, self.rate, self.rate, epoch, probe));
        }
        let target = self.curve.map_or(self.max, |c| c.rate_at(now));
        self.rate = self.bounded(target);
    }

    /// A signal (once per episode): learn a ceiling from what the server
    /// accepted and restart the climb. `now` is when the signal arrived;
    /// the climb starts when sending resumes (after a 429's pause).
    pub fn on_signal(&mut self, signal: Signal, now: Instant) {
        let since = now
            .checked_sub(MEASURE_SPAN)
            .map_or(self.resumed_at, |t| t.max(self.resumed_at));
        let span = now.saturating_duration_since(since);
        let accepted = self.accepted.since(since) as f64;
        let (pause, burst) = match signal {
            Signal::RateLimited(wait) => (wait, self.burst_seen.unwrap_or(0.0)),
            Signal::BudgetLow(hold) => (hold, 0.0),
        };
        if matches!(signal, Signal::RateLimited(_)) && span < FAST {
            // Refused this soon after resuming, the server let through little
            // more than its burst.
            self.burst_seen = Some(self.burst_seen.map_or(accepted, |b| b.min(accepted)));
        }
        let sample = accepted - burst;
        // Refused at once, or with nothing beyond the burst let through: the
        // rate is far above the limit, by how much nothing says.
        // The refused request nearly fitted: the limit lies between `sample`
        // and one more per span, so the middle is taken.
        let measured = (span >= FAST && sample >= 1.0).then(|| (sample + 0.5) / span.as_secs_f64());
        let found = match measured {
            Some(delivered) => delivered.min(self.rate),
            None => {
                // What the whole cycle since the last signal delivered, its
                // pause included, is a floor when pauses are short.
                let floor = self.signalled_at.map_or(0.0, |at| {
                    let cycle = now.saturating_duration_since(at).as_secs_f64();
                    self.accepted.since(at) as f64 / cycle.max(f64::EPSILON)
                });
                (self.rate / BLIND_CUT).max(floor.min(self.rate))
            }
        };
        self.signalled_at = Some(now);
        // A ceiling measured on few answers is uncertain: probe it again soon.
        let certain = measured.is_some() && sample >= CERTAIN_SAMPLE;
        let found = self.bounded(found);
        self.confirmed = match self.ceiling {
            Some(old) if (found - old).abs() <= old * CONFIRM_SHARE => self.confirmed + 1,
            _ => 0,
        };
        self.ceiling = Some(found);
        let plateau = found * (1.0 - MARGIN);
        let from = self.bounded(found * BETA);
        let start = now + pause;
        let epoch = if certain { self.epoch(pause) } else { K_MIN };
        self.curve = Some(Curve::new(start, from, plateau, epoch, 1.0 - BETA));
        self.outgrown = 0;
        self.rate = from;
        if matches!(signal, Signal::RateLimited(_)) {
            // A hold is part of the server's allotment and stays in the
            // measured span; a pause is a penalty and does not.
            self.resumed_at = start;
        }
        tracing::debug!(
            ?signal,
            accepted,
            span_secs = span.as_secs_f64(),
            ceiling = found,
            rate = from,
            confirmed = self.confirmed,
            "rate signal"
        );
    }

    /// `K` for a signal whose pause was `pause`, doubled per confirmation.
    fn epoch(&self, pause: Duration) -> Duration {
        let base = pause.mul_f64(K_PER_PAUSE).clamp(K_MIN, K_MAX);
        base.saturating_mul(1 << self.confirmed.min(6)).min(K_MAX)
    }

    fn bounded(&self, rate: f64) -> f64 {
        rate.clamp(self.max * FLOOR_SHARE, self.max)
    }
}

/// Accepted answers per [`SLOT`] over the last [`MEASURE_SPAN`].
#[derive(Debug, Clone, Default)]
struct Delivery {
    slots: std::collections::VecDeque<(Instant, u64)>,
}

const SLOT: Duration = Duration::from_millis(10);

impl Delivery {
    fn count(&mut self, now: Instant) {
        match self.slots.back_mut() {
            Some((start, n)) if now.saturating_duration_since(*start) < SLOT => *n += 1,
            _ => self.slots.push_back((now, 1)),
        }
        while self
            .slots
            .front()
            .is_some_and(|(start, _)| now.saturating_duration_since(*start) > MEASURE_SPAN + SLOT)
        {
            self.slots.pop_front();
        }
    }

    /// Answers counted in slots that began at or after `from`.
    fn since(&self, from: Instant) -> u64 {
        self.slots
            .iter()
            .filter(|(start, _)| *start >= from)
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server limited to `limit` requests per second, seen through the
    /// controller on a virtual clock: the controller sends at its rate (in
    /// steps of 10 ms), every request within the token bucket is accepted,
    /// the first beyond it is a 429 that pauses for `pause` (or the exact
    /// wait when `pause` is `None`).
    struct Bench {
        now: Instant,
        tokens: f64,
        burst: f64,
        accepted: u64,
        refused: u64,
    }

    impl Bench {
        fn new(burst: f64) -> Bench {
            Bench {
                now: Instant::now(),
                tokens: burst,
                burst,
                accepted: 0,
                refused: 0,
            }
        }

        /// Runs `secs` of virtual time against a bucket whose rate `limit(t)`
        /// may change; returns the accepted count over the last `tail` secs.
        fn run(
            &mut self,
            c: &mut Controller,
            secs: f64,
            limit: impl Fn(f64) -> f64,
            pause: Option<Duration>,
        ) {
            let step = Duration::from_millis(1);
            let start = self.now;
            let end = start + Duration::from_secs_f64(secs);
            let mut credit = 0.0;
            let mut paused_until = self.now;
            while self.now < end {
                self.now += step;
                let t = (self.now - start).as_secs_f64();
                self.tokens = (self.tokens + limit(t) * step.as_secs_f64()).min(self.burst);
                if self.now < paused_until {
                    continue;
                }
                credit += c.rate() * step.as_secs_f64();
                while credit >= 1.0 {
                    credit -= 1.0;
                    if self.tokens >= 1.0 {
                        self.tokens -= 1.0;
                        self.accepted += 1;
                        c.on_accepted(self.now);
                    } else {
                        self.refused += 1;
                        let exact = Duration::from_secs_f64((1.0 - self.tokens) / limit(t));
                        let wait = pause.unwrap_or(exact);
                        c.on_signal(Signal::RateLimited(wait), self.now);
                        if std::env::var("CTRL_DEBUG").is_ok() {
                            eprintln!(
                                "t={:.2} limit={} refused -> ceiling {:?} rate {:.1}",
                                (self.now - start).as_secs_f64(),
                                limit(t),
                                c.ceiling(),
                                c.rate()
                            );
                        }
                        paused_until = self.now + wait;
                        credit = 0.0;
                    }
                }
            }
        }
    }

    fn share_of(limit: f64, accepted: u64, secs: f64) -> f64 {
        accepted as f64 / (limit * secs)
    }

    #[test]
    fn finds_a_token_bucket_that_always_asks_for_a_whole_second() {
        for factor in [5.0, 20.0] {
            let mut bench = Bench::new(5.0);
            let mut c = Controller::new(100.0 * factor, None, bench.now);
            bench.run(&mut c, 60.0, |_| 100.0, Some(Duration::from_secs(1)));
            let share = share_of(100.0, bench.accepted, 60.0);
            assert!(share >= 0.9, "at {factor}R: {share:.3} of R");
            assert!(
                bench.refused <= 8,
                "at {factor}R: {} refusals",
                bench.refused
            );
            let learned = c.ceiling().expect("a limit was learned");
            assert!((90.0..=110.0).contains(&learned), "learned {learned}");
        }
    }

    #[test]
    fn exact_waits_keep_refusals_rare() {
        let mut bench = Bench::new(5.0);
        let mut c = Controller::new(2000.0, None, bench.now);
        bench.run(&mut c, 60.0, |_| 100.0, None);
        let share = share_of(100.0, bench.accepted, 60.0);
        assert!(share >= 0.95, "{share:.3} of R");
        let refused = bench.refused as f64 / (bench.accepted + bench.refused) as f64;
        assert!(refused <= 0.02, "{refused:.4} refused");
    }

    #[test]
    fn follows_a_limit_that_halves_and_comes_back() {
        let mut bench = Bench::new(5.0);
        let mut c = Controller::new(500.0, None, bench.now);
        let limit = |t: f64| {
            if (20.0..60.0).contains(&t) {
                50.0
            } else {
                100.0
            }
        };
        let pause = Some(Duration::from_secs(1));
        bench.run(&mut c, 20.0, limit, pause);
        assert!(c.rate() <= 100.0);
        bench.run(&mut c, 5.0, |t| limit(t + 20.0), pause);
        assert!(
            c.rate() <= 50.0,
            "under the halved limit within 5 s: {}",
            c.rate()
        );
        let before = bench.accepted;
        bench.run(&mut c, 35.0, |t| limit(t + 25.0), pause);
        let share = share_of(50.0, bench.accepted - before, 35.0);
        assert!(share >= 0.9, "{share:.3} of the halved limit");
        // Recovery: once the ceiling is outgrown the probes speed up, and
        // the rate climbs back within a few minutes (probing is careful
        // against a server whose every 429 costs a second).
        bench.run(&mut c, 240.0, |_| 100.0, pause);
        assert!(c.rate() > 80.0, "climbed back to {}", c.rate());
    }

    #[test]
    fn a_remembered_limit_starts_on_its_plateau_and_never_exceeds_the_maximum() {
        let mut bench = Bench::new(5.0);
        let mut c = Controller::new(500.0, Some(100.0), bench.now);
        assert!(c.rate() < 100.0 && c.rate() >= 97.0);
        bench.run(&mut c, 20.0, |_| 100.0, Some(Duration::from_secs(1)));
        assert!(bench.refused <= 1, "{} refusals", bench.refused);
        let share = share_of(100.0, bench.accepted, 20.0);
        assert!(share >= 0.95, "{share:.3} of R");
        let capped = Controller::new(50.0, Some(100.0), bench.now);
        assert_eq!(capped.ceiling(), Some(50.0));
        assert!(capped.rate() <= 50.0);
        let mut fresh = Controller::new(50.0, None, bench.now);
        for _ in 0..1000 {
            bench.now += Duration::from_millis(100);
            fresh.on_accepted(bench.now);
        }
        assert_eq!(fresh.rate(), 50.0, "no signal, no change");
    }

    #[test]
    fn budget_holds_cut_without_a_pause() {
        let now = Instant::now();
        let mut c = Controller::new(1000.0, None, now);
        let mut t = now;
        for _ in 0..600 {
            t += Duration::from_millis(5);
            c.on_accepted(t);
        }
        // 600 accepted in 3 s: 200/s delivered.
        c.on_signal(Signal::BudgetLow(Duration::from_millis(500)), t);
        let ceiling = c.ceiling().unwrap();
        assert!((190.0..=210.0).contains(&ceiling), "{ceiling}");
        assert!((c.rate() - ceiling * BETA).abs() < 1.0);
    }
}
