//! The rate controller: finds the server's real limit from its answers and
//! holds the sending rate just under it. Pure logic on instants it is given,
//! so its tests run on a virtual clock.
//!
//! It is built the way TCP congestion control is, with a 429 as the loss
//! signal and an announced budget running out (`X-RateLimit-Remaining`
//! spent, so sending holds without a 429) as the early, ECN-like one:
//!
//! - **Estimate from delivery, as BBR does.** At a signal the ceiling is set
//!   from the rate the server actually accepted since sending last resumed,
//!   not from the rate that was being sent: a client at 20× the limit learns
//!   the limit, not 90 % of 20×. A token bucket lets its burst through before
//!   refusing, which inflates a short measurement; the smallest number of
//!   answers accepted before a 429 that came at once bounds that burst and
//!   is taken off (answers still on the wire at the 429 count too). When a
//!   429 came at once, nothing was measured: the ceiling is quartered (unless
//!   the whole cycle since the last signal delivered more), and the rate
//!   searches the range below it on a straight ramp, as slow start does
//!   (see `curve::Ramp`), until the next 429 measures the limit. When a
//!   budget ran out with everything accepted, it is read as lasting its span
//!   plus the hold until its reset (a reset in whole seconds only bounds the
//!   hold).
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

use super::curve::{Curve, Ramp};
use super::delivery::Delivery;
use super::reading::{Found, Reading};

/// The rate restarts at this share of the ceiling after a signal.
pub const BETA: f64 = 0.95;
/// The plateau sits this share under the learned ceiling.
pub const MARGIN: f64 = 0.01;
/// The rate never drops below this share of the configured rate.
pub const FLOOR_SHARE: f64 = 0.001;
/// Epoch per second of pause: a probe per `K` costs ≤ 1/20 of the time.
const K_PER_PAUSE: f64 = 20.0;
const K_MIN: Duration = Duration::from_secs(2);
const K_MAX: Duration = Duration::from_secs(120);
/// Two ceilings within this share of each other confirm each other.
const CONFIRM_SHARE: f64 = 0.05;
/// After a blind cut the rate climbs from `1 / RAMP_FOOT` of the (quartered)
/// ceiling through it in this long, and on at that slope.
const RAMP: Duration = Duration::from_secs(1);
/// A thirty-second of the rate refused: from a sixteenth, a client at 20× the
/// limit began above it and its rough next reading wasted 10 % for 30 s.
const RAMP_FOOT: f64 = 8.0;
/// A rate raised to the room a budget showed gets there this fast: the
/// room was measured, not guessed.
const ROOM_CLIMB: Duration = Duration::from_secs(1);
/// Room within this share of the rate held leaves it as it is.
const ROOM_SAME: f64 = 0.002;
/// A 429 this soon after sending resumed bounds the server's burst.
const FAST: Duration = Duration::from_millis(50);

/// Why the rate is being cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// A 429 that paused every request for this long.
    RateLimited(Duration),
    /// The budget `X-RateLimit-Remaining` announced ran out `hold` before
    /// its reset: sending holds until then, with no request refused. A reset
    /// `rounded` up to a whole second may come up to a second sooner.
    BudgetLow { hold: Duration, rounded: bool },
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
    /// After a blind cut, the climb that replaces the curve until a signal.
    ramp: Option<Ramp>,
    /// Consecutive signals that found nearly the same ceiling.
    confirmed: u32,
    /// Consecutive climbs that passed their ceiling with no signal.
    outgrown: u32,
    /// Smallest count of answers a server accepted before a 429 that came
    /// at once: a bound on its burst, taken off short measurements.
    burst_seen: Option<f64>,
    /// The count of the latest such 429, still growing while answers to
    /// requests sent before it arrive.
    burst_probe: Option<f64>,
    /// What the last signal measured.
    reading: Option<Reading>,
    /// When sending last resumed after a pause (or began).
    resumed_at: Instant,
    /// How long that pause was: a bucket refills only so much during it.
    /// `None` at the start, when a bucket is full.
    refilled_for: Option<Duration>,
    /// When the last signal came.
    pub(super) signalled_at: Option<Instant>,
    /// A 429's pause has not ended yet (see [`Controller::on_resumed`]).
    pause_pending: bool,
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
            ramp: None,
            confirmed: 0,
            outgrown: 0,
            burst_seen: None,
            burst_probe: None,
            reading: None,
            resumed_at: now,
            refilled_for: None,
            signalled_at: None,
            pause_pending: false,
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

    /// An answer that was not a 429 arrived; `sent_before` the last signal,
    /// it was on the wire when the signal came, and the server accepted it
    /// before the signal's 429: it counts in that signal's reading.
    pub fn on_accepted(&mut self, now: Instant, sent_before: bool) {
        if sent_before {
            if let Some(probe) = &mut self.burst_probe {
                *probe += 1.0;
            }
            if let Some(mut reading) = self.reading.take() {
                reading.accepted += 1.0;
                // Only while the climb has not begun: later, it would undo
                // what the climb has done.
                if now < reading.start {
                    self.apply(&reading);
                }
                self.reading = Some(reading);
            }
        } else {
            self.accepted.count(now);
        }
        self.advance(now);
    }

    /// Sending resumes after a pause ended at `at`: delivery is measured from here.
    pub fn on_resumed(&mut self, at: Instant) {
        self.resumed_at = self.resumed_at.max(at);
        // A 429 answering a request sent just before the signal may have
        // announced a later end (a whole second later, in HTTP-dates): the
        // climb starts when sending does. A ramp started before it would
        // send from part-way up, and its reading counts from its foot.
        if std::mem::take(&mut self.pause_pending)
            && let Some(mut reading) = self.reading.take()
        {
            if at > reading.start {
                reading.start = at;
                self.apply(&reading);
            }
            self.reading = Some(reading);
        }
    }

    /// Moves the rate along its curve.
    pub fn advance(&mut self, now: Instant) {
        if let Some(ramp) = self.ramp {
            self.rate = self.bounded(ramp.rate_at(now));
            return;
        }
        let Some(curve) = self.curve else {
            return;
        };
        if curve.outgrown(now) && self.rate < self.max {
            // No signal for two epochs: the limit is higher than thought.
            // Probe on from here at once, each time sooner and twice as far,
            // as slow start searches.
            self.ceiling = Some(self.rate);
            self.outgrown += 1;
            self.confirmed = 0;
            let epoch = (curve.epoch / 2).max(K_MIN);
            let probe = (1.0 - BETA) * f64::from(1u32 << self.outgrown.min(4));
            let next = self.rate * (1.0 + probe);
            self.curve = Some(Curve::with_climb(now, self.rate, next, epoch, epoch, probe));
        }
        let target = self.curve.map_or(self.max, |c| c.rate_at(now));
        self.rate = self.bounded(target);
    }

    /// A signal (once per episode): learn a ceiling from what the server
    /// accepted and restart the climb. `now` is when the signal arrived;
    /// the climb starts when sending resumes (after a 429's pause).
    pub fn on_signal(&mut self, signal: Signal, now: Instant) {
        let (accepted, span) = self.accepted.recent(self.resumed_at, now);
        let (pause, burst) = self.pause_and_burst(signal);
        // At once means before the rate could have sent more than a few
        // beyond what was accepted: at 100/s, five answers in 50 ms are the
        // rate itself, not a burst let through.
        let at_once = (accepted as f64) < self.rate * FAST.as_secs_f64() / 2.0;
        let fast = matches!(signal, Signal::RateLimited(_)) && span < FAST && at_once;
        if fast {
            // Refused this soon after resuming, the server let through little
            // more than its burst: those answered so far, and those still on
            // the wire that it accepts.
            self.burst_probe = Some(accepted as f64);
        }
        // What the whole cycle since the last signal delivered, its pause
        // included, is a floor when nothing else can be measured.
        let floor = self.signalled_at.map_or(0.0, |at| {
            let cycle = now.saturating_duration_since(at).as_secs_f64();
            self.accepted.since(at) as f64 / cycle.max(f64::EPSILON)
        });
        self.signalled_at = Some(now);
        let refused = matches!(signal, Signal::RateLimited(_));
        let since_resumed = self.accepted.since(self.resumed_at) as f64;
        let reading = Reading {
            accepted: accepted as f64,
            span: (!fast).then_some(span),
            spent: matches!(signal, Signal::BudgetLow { .. }),
            rounded: matches!(signal, Signal::BudgetLow { rounded: true, .. }),
            budget_used: (
                since_resumed,
                now.saturating_duration_since(self.resumed_at),
            ),
            burst,
            sent: self.rate,
            floor,
            start: now + pause,
            pause,
            before: (self.ceiling, self.confirmed),
            ramp: self.refused_on_ramp(refused, burst, since_resumed),
        };
        // The next measurement starts when sending resumes.
        self.resumed_at = reading.start;
        self.pause_pending = refused;
        self.apply(&reading);
        tracing::debug!(
            ?signal,
            accepted,
            span_secs = span.as_secs_f64(),
            ceiling = self.ceiling,
            rate = self.rate,
            floor = reading.floor,
            confirmed = self.confirmed,
            ramp = ?reading.ramp,
            burst = reading.burst,
            sent = reading.sent,
            "rate signal"
        );
        self.reading = Some(reading);
    }

    /// A 429 on a ramp `accepted` answers in: its start, and the limit.
    fn refused_on_ramp(&mut self, refused: bool, burst: f64, accepted: f64) -> Option<(f64, f64)> {
        let ramp = self.ramp.take().filter(|_| refused)?;
        Some((ramp.from, ramp.limit_when_refused(burst, accepted)))
    }

    /// The pause a signal imposes and the server's burst to take off what
    /// it accepted since sending resumed.
    fn pause_and_burst(&mut self, signal: Signal) -> (Duration, f64) {
        if let Some(probe) = self.burst_probe.take() {
            self.burst_seen = Some(self.burst_seen.map_or(probe, |b| b.min(probe)));
        }
        // A bucket holds its burst only after a pause long enough to refill
        // it: after a wait of a few milliseconds it holds a token or two,
        // and taking off a whole burst would read the limit far too low.
        let refilled = self
            .refilled_for
            .map_or(f64::INFINITY, |p| 1.0 + self.rate * p.as_secs_f64());
        let (pause, burst) = match signal {
            Signal::RateLimited(wait) => (wait, self.burst_seen.unwrap_or(0.0).min(refilled)),
            Signal::BudgetLow { hold, .. } => (hold, 0.0),
        };
        self.refilled_for = Some(pause);
        (pause, burst)
    }

    /// Answers showed budget left at a steady rate: the server accepts
    /// `room` per second with a little to spare (see `headroom`). The rate
    /// moves there within [`ROOM_CLIMB`], up or down, and holds it unprobed:
    /// the next stretch's room is the probe (a limit that rises leaves more
    /// budget), and a probe past it only spends the budget. Measured on a
    /// sliding log: a plateau held 1 % under a ceiling read 2 % low, and a
    /// probe every 20 s, left 3 % of it unused.
    pub fn on_headroom(&mut self, room: f64, now: Instant) {
        // Room beyond the configured rate says only that the configured rate
        // is the limit; paced exactly at it, a budget of that size runs out.
        let room = self.bounded(room).min(self.max * (1.0 - MARGIN));
        let held = self.curve.is_some_and(|c| c.holds());
        if held && (room - self.rate).abs() <= self.rate * ROOM_SAME {
            return;
        }
        tracing::debug!(
            room,
            rate = self.rate,
            "budget left over; pacing at its room"
        );
        self.ceiling = Some(self.ceiling.map_or(room, |c| c.max(room)));
        self.ramp = None;
        self.confirmed = 0;
        self.outgrown = 0;
        self.curve = Some(Curve::with_climb(
            now, self.rate, room, ROOM_CLIMB, K_MAX, 0.0,
        ));
        self.advance(now);
    }

    /// Sets the ceiling and the climb from a reading (again, as answers that
    /// were on the wire at the signal come in).
    fn apply(&mut self, reading: &Reading) {
        let Found {
            limit,
            measured,
            rough,
            mild,
        } = reading.found();
        let found = self.bounded(limit);
        let (before, confirmed) = reading.before;
        self.confirmed = match before {
            Some(old) if (found - old).abs() <= old * CONFIRM_SHARE => confirmed + 1,
            _ => 0,
        };
        self.ceiling = Some(found);
        let plateau = found * (1.0 - MARGIN);
        // A mild cut restarts on its plateau: the hold has already paid for
        // the overspend.
        let from = self.bounded(if mild { plateau } else { found * BETA });
        // Nothing measured, or too little to tell the limit within 5 %:
        // probe again soon, where a longer climb measures it better, before
        // holding a plateau that may be low.
        let epoch = if measured && !rough {
            self.epoch(reading.pause)
        } else {
            K_MIN
        };
        let curve = Curve::new(reading.start, from, plateau, epoch, 1.0 - BETA);
        self.curve = Some(curve);
        self.outgrown = 0;
        self.rate = from;
        // Nothing measured: search the range below on a ramp.
        self.ramp = (!measured).then(|| {
            let ramp = Ramp::new(reading.start, found / RAMP_FOOT, found, RAMP);
            self.rate = self.bounded(ramp.from);
            ramp
        });
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
                        c.on_accepted(self.now, false);
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

    /// `n` accepted answers, one every `every` after `from`; returns the
    /// last one's instant.
    fn accept(c: &mut Controller, from: Instant, n: u32, every: Duration) -> Instant {
        let mut t = from;
        for _ in 0..n {
            t += every;
            c.on_accepted(t, false);
        }
        t
    }

    /// An announced budget spent at `at`, holding sending for `hold`.
    fn budget_low(c: &mut Controller, hold: Duration, rounded: bool, at: Instant) {
        c.on_signal(Signal::BudgetLow { hold, rounded }, at);
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
    fn far_above_a_whole_second_limiter_two_429s_find_it() {
        // At 20R the first 429 comes before anything is measured; a fixed
        // quarter cut (500/s) was refused at once again and read only a
        // rough limit, so a third pause followed. The ramp measures it.
        let mut bench = Bench::new(5.0);
        let mut c = Controller::new(2000.0, None, bench.now);
        bench.run(&mut c, 6.0, |_| 100.0, Some(Duration::from_secs(1)));
        assert_eq!(bench.refused, 2, "pauses at the start");
        let learned = c.ceiling().expect("a limit was learned");
        assert!((90.0..=105.0).contains(&learned), "learned {learned}");
    }

    #[test]
    fn exact_waits_keep_refusals_rare() {
        // At 5R the wait after the first 429 is a few milliseconds, so the
        // bucket holds a token or two when sending resumes, not its burst.
        for factor in [5.0, 20.0] {
            let mut bench = Bench::new(5.0);
            let mut c = Controller::new(100.0 * factor, None, bench.now);
            bench.run(&mut c, 60.0, |_| 100.0, None);
            let share = share_of(100.0, bench.accepted, 60.0);
            assert!(share >= 0.95, "at {factor}R: {share:.3} of R");
            let refused = bench.refused as f64 / (bench.accepted + bench.refused) as f64;
            assert!(refused <= 0.02, "at {factor}R: {refused:.4} refused");
        }
    }

    #[test]
    fn a_429_among_the_first_requests_at_the_rate_itself_is_no_blind_cut() {
        // At 100/s, five answers accepted in 45 ms, then a 429: that is the
        // rate itself, not a burst let through far above the limit.
        let start = Instant::now();
        let mut c = Controller::new(100.0, None, start);
        let t = accept(&mut c, start, 5, Duration::from_millis(9));
        c.on_signal(Signal::RateLimited(Duration::from_secs(1)), t);
        let ceiling = c.ceiling().unwrap();
        assert!(ceiling >= 90.0, "cut blindly to {ceiling}");
        // Far above, the same five answers are a burst: a blind cut.
        let mut fast = Controller::new(2000.0, None, start);
        let t = accept(&mut fast, start, 5, Duration::from_micros(500));
        fast.on_signal(Signal::RateLimited(Duration::from_secs(1)), t);
        assert_eq!(fast.ceiling(), Some(500.0));
    }

    #[test]
    fn a_ramp_begins_when_a_lengthened_pause_ends() {
        // A blind cut from 500/s: a ramp from 15.625/s. A 429 answering a
        // request sent just before announced a pause half a second longer
        // (an HTTP-date a second later): sending resumes from the ramp's
        // foot, not from where it would have climbed meanwhile.
        let start = Instant::now();
        let mut c = Controller::new(500.0, None, start);
        let t = accept(&mut c, start, 5, Duration::from_micros(500));
        c.on_signal(Signal::RateLimited(Duration::from_secs(1)), t);
        assert_eq!(c.rate(), 15.625);
        let resumed = t + Duration::from_millis(1500);
        c.on_resumed(resumed);
        c.advance(resumed);
        assert_eq!(c.rate(), 15.625);
        c.advance(resumed + Duration::from_millis(500));
        assert!((70.0..80.0).contains(&c.rate()), "{}", c.rate());
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
        accept(&mut fresh, bench.now, 1000, Duration::from_millis(100));
        assert_eq!(fresh.rate(), 50.0, "no signal, no change");
    }

    #[test]
    fn budget_holds_cut_without_a_pause() {
        let now = Instant::now();
        let mut c = Controller::new(1000.0, None, now);
        let t = accept(&mut c, now, 600, Duration::from_millis(5));
        // 600 accepted in 3 s: 200/s delivered.
        budget_low(&mut c, Duration::from_millis(500), false, t);
        let ceiling = c.ceiling().unwrap();
        assert!((190.0..=210.0).contains(&ceiling), "{ceiling}");
        assert!((c.rate() - ceiling * BETA).abs() < 1.0);
    }

    #[test]
    fn a_budget_spent_after_a_long_stretch_at_the_maximum_cuts_mildly() {
        // 100/s (the maximum) accepted for 10 s, then a hold of 0.9 s to a
        // whole-second reset: the rate was only a little too fast.
        let start = Instant::now();
        let mut c = Controller::new(100.0, None, start);
        let t = accept(&mut c, start, 1000, Duration::from_millis(10));
        budget_low(&mut c, Duration::from_millis(900), true, t);
        let ceiling = c.ceiling().unwrap();
        assert!((97.0..=100.0).contains(&ceiling), "{ceiling}");
    }

    #[test]
    fn a_rounded_reset_hides_a_short_hold_so_the_cut_stays_mild() {
        // 100 accepted at the maximum in 0.99 s spend a one-second log; the
        // reset, rounded up to a whole second, says 530 ms when the oldest
        // request really leaves within a few.
        let start = Instant::now();
        let hold = Duration::from_millis(530);
        let mut rounded = Controller::new(100.0, None, start);
        let t = accept(
            &mut rounded,
            start,
            100,
            Duration::from_millis(10) - Duration::from_micros(100),
        );
        budget_low(&mut rounded, hold, true, t);
        let ceiling = rounded.ceiling().unwrap();
        assert!(ceiling >= 97.0, "cut to {ceiling}");
        assert!(
            rounded.rate() >= ceiling * (1.0 - MARGIN) - 0.01,
            "restarts on the plateau, not under it: {}",
            rounded.rate()
        );
        // Announced to the millisecond, the same hold is real: the budget
        // lasted 1.5 s.
        let mut exact = Controller::new(100.0, None, start);
        let t = accept(
            &mut exact,
            start,
            100,
            Duration::from_millis(10) - Duration::from_micros(100),
        );
        budget_low(&mut exact, hold, false, t);
        assert!(exact.ceiling().unwrap() < 70.0);
        // Far above the limit, a rounded hold still reads the budget: 100
        // spent in 0.2 s at 500/s and held 1.7 s.
        let mut fast = Controller::new(500.0, None, start);
        let t = accept(&mut fast, start, 100, Duration::from_millis(2));
        let hold = Duration::from_millis(1700);
        budget_low(&mut fast, hold, true, t);
        assert!(fast.ceiling().unwrap() < 60.0);
    }

    #[test]
    fn a_budget_spent_in_under_a_second_with_a_rounded_reset_reads_its_size_per_second() {
        // A client held to 66/s by its own round trips spends a fresh
        // sliding log of 40 a second in 0.6 s; the reset, rounded up, says
        // 700 ms.
        let start = Instant::now();
        let mut c = Controller::new(1000.0, None, start);
        let t = accept(&mut c, start, 40, Duration::from_millis(15));
        budget_low(&mut c, Duration::from_millis(700), true, t);
        let ceiling = c.ceiling().unwrap();
        assert!(ceiling <= 41.0, "learned {ceiling} from a budget of 40");
    }

    #[test]
    fn jitter_on_a_long_plateau_cuts_mildly_and_room_beyond_the_maximum_is_not_probed() {
        let start = Instant::now();
        let mut c = Controller::new(100.0, None, start);
        // The room shows the server would take more than the maximum.
        c.on_headroom(140.0, start);
        let t = accept(&mut c, start, 6000, Duration::from_millis(10));
        assert!(
            (98.9..=99.0).contains(&c.rate()),
            "held just under the maximum, unprobed: {}",
            c.rate()
        );
        // After a minute there, jitter spends the budget 65 ms early.
        let hold = Duration::from_millis(65);
        budget_low(&mut c, hold, true, t);
        let ceiling = c.ceiling().unwrap();
        assert!(ceiling >= 96.0, "cut to {ceiling}");
        assert!(c.rate() >= 95.0, "restarted at {}", c.rate());
    }

    #[test]
    fn room_above_a_plateau_held_under_a_higher_ceiling_raises_the_rate() {
        // A one-second log spent at start-up reads 98 and holds 1 % under.
        let start = Instant::now();
        let mut c = Controller::new(100.0, None, start);
        let t = accept(&mut c, start, 100, Duration::from_micros(9_550));
        budget_low(&mut c, Duration::from_millis(460), true, t);
        let ceiling = c.ceiling().unwrap();
        assert!(c.rate() < 97.5, "plateau {}", c.rate());
        // Its answers then show room for 97.9 with two requests to spare.
        let later = t + Duration::from_secs(5);
        c.advance(later);
        c.on_headroom(97.9, later);
        c.advance(later + ROOM_CLIMB);
        assert!((c.rate() - 97.9).abs() < 0.01, "rate {}", c.rate());
        assert_eq!(c.ceiling(), Some(ceiling.max(97.9)));
        // It holds there unprobed; room found short of the rate lowers it.
        let much_later = later + Duration::from_secs(100);
        c.advance(much_later);
        assert!((c.rate() - 97.9).abs() < 0.01, "probed to {}", c.rate());
        c.on_headroom(97.0, much_later);
        c.advance(much_later + ROOM_CLIMB);
        assert!((c.rate() - 97.0).abs() < 0.01, "rate {}", c.rate());
    }

    #[test]
    fn a_sliding_window_read_low_is_corrected_by_the_room_it_shows() {
        use super::super::headroom::Headroom;
        use std::collections::VecDeque;
        const LIMIT: u64 = 100;
        let window = Duration::from_secs(1);
        // A burst at 20x the limit spends a one-second log of 100 in 50 ms;
        // its reset, rounded up to a whole second, holds sending 1.5 s.
        let start = Instant::now();
        let mut c = Controller::new(2000.0, None, start);
        let mut now = start;
        let mut log: VecDeque<Instant> = VecDeque::new();
        for _ in 0..LIMIT {
            now += Duration::from_micros(500);
            log.push_back(now);
            c.on_accepted(now, false);
        }
        let hold = Duration::from_millis(1500);
        budget_low(&mut c, hold, true, now);
        let low = c.ceiling().unwrap();
        assert!(low < 70.0, "the first reading is low: {low}");
        now += hold;
        let mut room = Headroom::default();
        let end = now + Duration::from_secs(8);
        let mut credit = 0.0;
        while now < end {
            now += Duration::from_millis(1);
            c.advance(now);
            credit += c.rate() * 0.001;
            while credit >= 1.0 {
                credit -= 1.0;
                while log.front().is_some_and(|&s| s + window <= now) {
                    log.pop_front();
                }
                assert!((log.len() as u64) < LIMIT, "overspent at {}", c.rate());
                log.push_back(now);
                c.on_accepted(now, false);
                let leaves = log[0] + window - start;
                let reset = start + Duration::from_secs(leaves.as_secs() + 1);
                let remaining = LIMIT - log.len() as u64;
                if let Some(r) = room.on_answer(now, c.rate(), remaining, Some(LIMIT), Some(reset))
                {
                    c.on_headroom(r, now);
                }
            }
        }
        let rate = c.rate();
        assert!((95.0..=99.0).contains(&rate), "settled at {rate}");
    }
}
