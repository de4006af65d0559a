//! Request pacing: a governor rate limiter paced at the rate the
//! [`Controller`] finds, the global pause that one 429 imposes on every
//! worker, and the budget a server announces in `X-RateLimit-*` headers.
//!
//! - **Pause.** A 429 pauses every request until the instant it announced;
//!   no worker sends before then.
//! - **Budget.** When answers carry `X-RateLimit-Remaining` (and `-Reset`),
//!   no request is sent that the server would have to refuse: requests
//!   already on the wire are counted against what it said was left, and
//!   sending holds until the reset once nothing is (see `budget`; a reset
//!   in whole seconds is asked about early, by one request at a time). A
//!   hold is a signal too, so the rate settles where the budget lasts.
//! - **Rate.** The controller (see `control`) learns the server's real limit
//!   from 429s and holds; it never exceeds `fetch.requests_per_second`. A
//!   budget left over a steady stretch (see `headroom`) sets it, up or down.
//!   Below that rate the burst is at most two, and every new limiter (after
//!   a pause, an idle spell, or when the rate moves) starts with its burst
//!   spent.
//!
//! Signals are taken once per episode: answers to requests sent before the
//! last cut (an older [`Ticket`] epoch) extend a pause but do not cut again.

mod budget;
mod control;
mod curve;
mod delivery;
mod headroom;
mod reading;

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use budget::Budget;
use control::{Controller, Signal};
use headroom::Headroom;

/// The limiter is rebuilt when the rate moved by more than this share; each
/// rebuild costs up to one period of sending, so small moves wait...
const REINSTALL_SHARE: f64 = 0.01;
/// ... unless they have waited this long (so a plateau is paced at itself,
/// not up to a share below it).
const REINSTALL_AFTER: Duration = Duration::from_secs(1);

/// What an answer's `X-RateLimit-*` headers said about the budget left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allowance {
    pub remaining: u64,
    /// `X-RateLimit-Limit`, if sent.
    pub limit: Option<u64>,
    /// When the budget is restored, if announced.
    pub reset: Option<Instant>,
    /// The reset was announced in whole seconds (see `retry::Announced`).
    pub reset_rounded: bool,
}

/// Shared by every fetch worker.
pub struct Pacer {
    burst: NonZeroU32,
    /// Wakes workers held on a budget when a probe's answer lands.
    changed: tokio::sync::Notify,
    state: Mutex<State>,
    limiter: RwLock<Arc<DefaultDirectRateLimiter>>,
}

struct State {
    control: Controller,
    /// The rate the current governor limiter paces at, and since when.
    installed: f64,
    installed_at: Instant,
    /// Bumped on every signal; a ticket from an older epoch was sent before it.
    epoch: u64,
    paused_until: Option<Instant>,
    budget: Option<Budget>,
    /// A probe into a held budget is on the wire.
    probing: bool,
    /// Probes refused in a row.
    probes_refused: u32,
    headroom: Headroom,
    /// Requests sent so far, and when the latest of them were.
    sent: u64,
    sends: VecDeque<Instant>,
}

/// Proof that a request may be sent: the epoch it was sent in and its number.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
    number: u64,
    /// Sent into a held budget to ask whether it is back.
    probe: bool,
}

impl Pacer {
    /// A pacer for at most `max_rate` requests per second, starting from the
    /// ceiling `learned` by an earlier run when there is one.
    pub fn new(max_rate: f64, burst: NonZeroU32, learned: Option<f64>) -> Pacer {
        let control = Controller::new(max_rate, learned, Instant::now());
        let rate = control.rate();
        let burst_now = burst_for(rate, max_rate, burst);
        Pacer {
            burst,
            changed: tokio::sync::Notify::new(),
            limiter: RwLock::new(Arc::new(build_limiter(rate, burst_now))),
            state: Mutex::new(State {
                control,
                installed: rate,
                installed_at: Instant::now(),
                epoch: 0,
                paused_until: None,
                budget: None,
                probing: false,
                probes_refused: 0,
                headroom: Headroom::default(),
                sent: 0,
                sends: VecDeque::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent (every
        // update is a plain field store), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request may be sent: after any pause, within the
    /// announced budget, within the rate.
    pub async fn acquire(&self) -> Ticket {
        loop {
            // Created first, so a probe's answer landing meanwhile wakes it.
            let changed = self.changed.notified();
            if let Some(until) = self.hold() {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = changed => {}
                }
                continue;
            }
            let limiter = self.current_limiter();
            limiter.until_ready().await;
            // A pause may have begun, the budget run out, or the rate changed
            // while this worker waited; a replaced limiter no longer paces
            // anyone, so a cell from it does not count.
            let mut state = self.state();
            let now = Instant::now();
            let held = state.budget_hold(now).is_some();
            let probe = held && state.probe_at().is_some_and(|at| at <= now);
            if state.paused_until.is_some_and(|t| t > now)
                || (held && !probe)
                || !Arc::ptr_eq(&limiter, &self.current_limiter())
            {
                continue;
            }
            state.probing |= probe;
            state.note_sent(now);
            return Ticket {
                epoch: state.epoch,
                number: state.sent,
                probe,
            };
        }
    }

    /// When sending may go on, if it must wait: a pause, or a spent budget
    /// (which is a signal the first time it holds anyone).
    fn hold(&self) -> Option<Instant> {
        let mut state = self.state();
        let now = Instant::now();
        if let Some(until) = state.paused_until {
            if until > now {
                return Some(until);
            }
            state.paused_until = None;
            state.control.on_resumed(until);
            // The limiter filled up during the pause; a fresh one sends no
            // burst into a server that has just refilled a single token.
            self.follow(&mut state, now, true);
        } else if self.refilled(&state, now) {
            // Idle long enough (start-up behind the ledger's admission, a
            // daemon between ticks) for the limiter to refill its burst:
            // measured, that burst arriving at once drew a 429 in the first
            // second of a run at the server's exact limit.
            self.follow(&mut state, now, true);
        }
        let until = state.budget_hold(now)?;
        let wait = until - now;
        // A spent budget means sending too fast, once per episode (not again
        // on what a probe was told); but a hold shorter than two requests'
        // spacing is the budget's own end.
        let rate = state.control.rate();
        // For a second after a signal a spent budget is no new signal: the
        // log it was announced from still holds requests sent before the
        // cut (a whole-second reset speaks of a window of a second or more).
        // Measured: a sliding log's budget, spent again 42 ms after a mild
        // cut, read as a second episode with nothing accepted and cut the
        // rate from 95 to 18 per second.
        let quiet = state
            .control
            .signalled_at
            .is_some_and(|at| now < at + budget::ROUNDING);
        let signalled = state.budget.filter(|b| {
            b.epoch == state.epoch && !b.from_probe && !quiet && wait.as_secs_f64() * rate > 2.0
        });
        if let Some(budget) = signalled {
            let rounded = budget.reset_rounded;
            self.signal(
                &mut state,
                Signal::BudgetLow {
                    hold: wait,
                    rounded,
                },
                now,
            );
        }
        match state.probe_at() {
            Some(at) if at <= now => None,
            Some(at) => Some(at.min(until)),
            None => Some(until),
        }
    }

    /// Nothing was sent, nor the limiter rebuilt, for longer than the
    /// limiter takes to refill its whole burst (by one cell more, so a
    /// worker whose cell is due but who woke late keeps it).
    fn refilled(&self, state: &State, now: Instant) -> bool {
        let last = state
            .sends
            .back()
            .map_or(state.installed_at, |&sent| sent.max(state.installed_at));
        let burst = burst_for(state.installed, state.control.max(), self.burst);
        now.saturating_duration_since(last).as_secs_f64() * state.installed
            > f64::from(burst.get()) + 1.0
    }

    /// A 429 arrived for a request sent with `ticket`: pause everyone for
    /// `wait` and, once per episode, tell the controller.
    pub fn on_rate_limited(&self, ticket: Ticket, wait: Duration) {
        let now = Instant::now();
        let mut state = self.state();
        let until = now + wait;
        state.headroom.restart();
        if state.paused_until.is_none_or(|t| t < until) {
            state.paused_until = Some(until);
        }
        if ticket.probe {
            // The budget was not back yet: its hold has signalled already.
            state.probing = false;
            state.probes_refused += 1;
            self.changed.notify_waiters();
        } else if ticket.epoch == state.epoch {
            self.signal(&mut state, Signal::RateLimited(wait), now);
            tracing::debug!(
                rate = state.control.rate(),
                wait_ms = wait.as_millis() as u64,
                "rate limited; pausing every request"
            );
        }
    }

    /// An answer that was not a 429 arrived, with the budget its headers
    /// announced, if any.
    pub fn on_answer(&self, ticket: Ticket, allowance: Option<Allowance>) {
        let now = Instant::now();
        let mut state = self.state();
        let sent_before = ticket.epoch < state.epoch;
        if ticket.probe {
            state.probing = false;
            state.probes_refused = 0;
            // Should the hold go on (an answer without a budget), the next
            // probe waits its spacing again: probes never come faster.
            if let Some(budget) = &mut state.budget {
                budget.held_since = Some(now);
            }
        }
        if let Some(a) = allowance {
            state.note_budget(ticket, a, now);
            // Answers sent before the last signal speak for the old rate.
            if !sent_before {
                let rate = state.control.rate();
                let room = state
                    .headroom
                    .on_answer(now, rate, a.remaining, a.limit, a.reset);
                if let Some(room) = room {
                    state.control.on_headroom(room, now);
                }
            }
        }
        state.control.on_accepted(now, sent_before);
        self.follow(&mut state, now, false);
        if ticket.probe {
            self.changed.notify_waiters();
        }
    }

    fn signal(&self, state: &mut State, signal: Signal, now: Instant) {
        state.epoch += 1;
        state.headroom.restart();
        state.control.on_signal(signal, now);
        self.follow(state, now, true);
    }

    /// Rebuilds the limiter when the controller's rate moved far enough.
    fn follow(&self, state: &mut State, now: Instant, force: bool) {
        state.control.advance(now);
        let rate = state.control.rate();
        let moved = (rate - state.installed).abs();
        let due = moved > state.installed * REINSTALL_SHARE
            || (moved > state.installed * REINSTALL_SHARE / 10.0
                && now.saturating_duration_since(state.installed_at) >= REINSTALL_AFTER);
        if !(force || due) {
            return;
        }
        state.installed = rate;
        state.installed_at = now;
        let limiter = build_limiter(rate, burst_for(rate, state.control.max(), self.burst));
        *self.limiter.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(limiter);
    }

    /// The current adaptive rate, requests per second.
    pub fn rate(&self) -> f64 {
        self.state().control.rate()
    }

    /// The ceiling learned so far (or remembered), requests per second.
    pub fn learned(&self) -> Option<f64> {
        self.state().control.ceiling()
    }

    fn current_limiter(&self) -> Arc<DefaultDirectRateLimiter> {
        self.limiter
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The burst below the configured rate: two, not one. A limiter with no
/// tolerance turns every late timer wake-up (tokio's timers round up to the
/// millisecond) into lost sending time, measured at 3 % of the rate at
/// 100/s; a second cell absorbs it. At the configured rate, `fetch.burst`.
fn burst_for(rate: f64, max: f64, burst: NonZeroU32) -> NonZeroU32 {
    if rate >= max {
        burst
    } else {
        burst.min(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN))
    }
}

/// A limiter pacing `rate` with `burst`, its burst already spent: a new
/// limiter never lets a burst through, at start-up (the server's own bucket
/// is then left its slack for jitter) or when the rate changes.
fn build_limiter(rate: f64, burst: NonZeroU32) -> DefaultDirectRateLimiter {
    let limiter = RateLimiter::direct(quota(rate, burst));
    let _ = limiter.check_n(burst);
    limiter
}

fn quota(rate: f64, burst: NonZeroU32) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    // `with_period` only refuses a zero period, excluded just above.
    Quota::with_period(period).map_or_else(
        || Quota::per_second(NonZeroU32::MIN),
        |q| q.allow_burst(burst),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn quota_paces_at_the_rate_with_the_burst() {
        let clock = FakeRelativeClock::default();
        let burst = NonZeroU32::new(5).unwrap();
        let limiter = RateLimiter::direct_with_clock(quota(100.0, burst), clock.clone());
        for _ in 0..5 {
            assert!(limiter.check().is_ok());
        }
        assert!(limiter.check().is_err(), "burst exhausted");
        clock.advance(Duration::from_millis(10));
        assert!(limiter.check().is_ok(), "one cell per 10 ms at 100/s");
        assert!(limiter.check().is_err());
        // Over one simulated second at most 100 more cells pass.
        let mut passed = 0;
        for _ in 0..1000 {
            clock.advance(Duration::from_millis(1));
            passed += usize::from(limiter.check().is_ok());
        }
        assert_eq!(passed, 100);
    }

    // On the real clock, as governor paces on it; the bound is a lower one,
    // so a loaded machine cannot break it.
    #[tokio::test]
    async fn an_idle_spell_sends_no_burst() {
        let pacer = Pacer::new(100.0, NonZeroU32::new(5).unwrap(), None);
        // Start-up behind the ledger, then a daemon between ticks.
        for idle in [Duration::from_millis(300), Duration::from_millis(200)] {
            tokio::time::sleep(idle).await;
            let first = Instant::now();
            for _ in 0..6 {
                pacer.acquire().await;
            }
            // Spaced by the rate, not five at once.
            assert!(
                Instant::now() - first >= Duration::from_millis(50),
                "six sends within {:?} after {idle:?} idle",
                Instant::now() - first
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_worker_and_an_episode_cuts_once() {
        let pacer = Arc::new(Pacer::new(1000.0, NonZeroU32::new(10).unwrap(), None));
        let early = pacer.acquire().await;
        let also_early = pacer.acquire().await;
        let start = Instant::now();
        pacer.on_rate_limited(early, Duration::from_secs(3));
        let cut = pacer.rate();
        assert!(cut < 1000.0);
        // A 429 for a request sent before the cut is the same episode.
        pacer.on_rate_limited(also_early, Duration::from_secs(3));
        assert_eq!(pacer.rate(), cut, "one cut per episode");
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    pacer.acquire().await;
                    Instant::now()
                })
            })
            .collect();
        for worker in workers {
            let sent_at = worker.await.unwrap();
            assert!(sent_at >= start + Duration::from_secs(3));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_announced_budget_is_never_overspent() {
        let pacer = Pacer::new(1000.0, NonZeroU32::MIN, None);
        let first = pacer.acquire().await;
        // Three requests left in this window, which ends in two seconds.
        let reset = Instant::now() + Duration::from_secs(2);
        let allowance = Allowance {
            remaining: 3,
            limit: None,
            reset: Some(reset),
            reset_rounded: false,
        };
        pacer.on_answer(first, Some(allowance));
        for _ in 0..3 {
            pacer.acquire().await;
        }
        assert!(Instant::now() < reset, "the budget was spent at the rate");
        pacer.acquire().await;
        assert!(Instant::now() >= reset, "the fourth waits for the reset");
        assert!(pacer.rate() < 1000.0, "running out early slows the rate");
        assert!(pacer.learned().is_some());
    }

    /// Spends a budget of 100 at the pacer's rate; the last answer says
    /// none is left until 900 ms later, announced in whole seconds
    /// (`rounded`) or to the millisecond. Returns that answer.
    async fn spend(pacer: &Pacer, reset_rounded: bool) -> Allowance {
        let mut allowance = None;
        for remaining in (0..100).rev() {
            // The governor paces in real time; the paused clock must move too.
            tokio::time::sleep(Duration::from_secs_f64(1.0 / pacer.rate())).await;
            let ticket = pacer.acquire().await;
            let announced = Allowance {
                remaining,
                limit: Some(100),
                reset: Some(Instant::now() + Duration::from_millis(900)),
                reset_rounded,
            };
            pacer.on_answer(ticket, Some(announced));
            allowance = Some(announced);
        }
        allowance.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_rounded_reset_is_probed_one_request_at_a_time() {
        let pacer = Arc::new(Pacer::new(100.0, NonZeroU32::MIN, None));
        let spent = spend(&pacer, true).await;
        let reset = spent.reset.unwrap();
        let probe = pacer.acquire().await;
        assert!(
            Instant::now() + Duration::from_millis(500) < reset,
            "asked early"
        );
        let waiter = {
            let pacer = pacer.clone();
            tokio::spawn(async move {
                pacer.acquire().await;
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "one probe at a time");
        // The probe's answer says the budget is back: the others go on.
        let back = Allowance {
            remaining: 5,
            ..spent
        };
        pacer.on_answer(probe, Some(back));
        assert!(waiter.await.unwrap() < reset);
        // Announced to the millisecond, the same hold is waited out.
        let exact = Pacer::new(100.0, NonZeroU32::MIN, None);
        let spent = spend(&exact, false).await;
        exact.acquire().await;
        assert!(Instant::now() >= spent.reset.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_spent_within_a_second_is_probed_once_its_oldest_request_is_a_second_old() {
        // At twice the budget's rate, 100 requests go in half a second: a
        // one-second log frees no slot before the first of them is a second
        // old, however soon the reset's rounding allows asking.
        let pacer = Pacer::new(200.0, NonZeroU32::MIN, None);
        let mut first = None;
        for remaining in (0..100).rev() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let ticket = pacer.acquire().await;
            first.get_or_insert(Instant::now());
            let announced = Allowance {
                remaining,
                limit: Some(100),
                reset: Some(Instant::now() + Duration::from_millis(900)),
                reset_rounded: true,
            };
            pacer.on_answer(ticket, Some(announced));
        }
        let reset = Instant::now() + Duration::from_millis(900);
        let probe = pacer.acquire().await;
        assert!(probe.probe);
        let asked = Instant::now();
        assert!(
            asked >= first.unwrap() + budget::ROUNDING,
            "asked too early"
        );
        assert!(asked < reset, "asked only at the reset");
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_spent_again_within_a_second_of_a_cut_cuts_no_more() {
        let pacer = Pacer::new(100.0, NonZeroU32::MIN, None);
        spend(&pacer, true).await;
        let probe = pacer.acquire().await;
        let cut = pacer.rate();
        assert!(cut < 100.0, "the hold was a signal");
        // The probe took the slot that freed, and one more freed meanwhile.
        let back = |remaining, ms| Allowance {
            remaining,
            limit: Some(100),
            reset: Some(Instant::now() + Duration::from_millis(ms)),
            reset_rounded: true,
        };
        pacer.on_answer(probe, Some(back(1, 900)));
        let next = pacer.acquire().await;
        assert!(!next.probe);
        pacer.on_answer(next, Some(back(0, 300)));
        let held = pacer.acquire().await;
        assert!(held.probe, "still held, and asked about");
        assert_eq!(pacer.rate(), cut, "the log still holds the old requests");
    }

    #[tokio::test(start_paused = true)]
    async fn probes_never_come_faster_than_their_spacing() {
        let pacer = Pacer::new(100.0, NonZeroU32::MIN, None);
        spend(&pacer, true).await;
        let probe = pacer.acquire().await;
        // An answer without a budget (an error page) leaves the hold on.
        let answered = Instant::now();
        pacer.on_answer(probe, None);
        let again = pacer.acquire().await;
        assert!(again.probe);
        let spacing = budget::PROBE_SPACINGS / pacer.rate();
        let waited = (Instant::now() - answered).as_secs_f64();
        assert!(waited >= spacing * 0.99, "{waited} s, spacing {spacing} s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_probe_pauses_everyone_without_a_second_cut() {
        let pacer = Pacer::new(100.0, NonZeroU32::MIN, None);
        spend(&pacer, true).await;
        let probe = pacer.acquire().await;
        let cut = pacer.rate();
        assert!(cut < 100.0, "the hold was a signal");
        let until = Instant::now() + Duration::from_millis(800);
        pacer.on_rate_limited(probe, Duration::from_millis(800));
        assert_eq!(pacer.rate(), cut, "a refused probe is no new signal");
        let second = pacer.acquire().await;
        assert!(Instant::now() >= until, "its 429 pauses everyone");
        // The hold goes on past the pause: asked once more, refused again,
        // and the server is taken to refuse every probe.
        assert!(second.probe);
        pacer.on_rate_limited(second, Duration::from_millis(800));
        assert_eq!(pacer.state().probes_refused, budget::REFUSED_PROBES);
        assert_eq!(pacer.state().probe_at(), None, "no more probes");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_on_the_wire_count_against_the_budget() {
        let pacer = Pacer::new(1000.0, NonZeroU32::MIN, None);
        let first = pacer.acquire().await;
        for _ in 0..4 {
            pacer.acquire().await;
        }
        // The first answer says 5 were left, but 4 more were sent since.
        let reset = Instant::now() + Duration::from_secs(1);
        pacer.on_answer(
            first,
            Some(Allowance {
                remaining: 5,
                limit: None,
                reset: Some(reset),
                reset_rounded: false,
            }),
        );
        pacer.acquire().await;
        assert!(Instant::now() < reset);
        pacer.acquire().await;
        assert!(Instant::now() >= reset);
    }
}
