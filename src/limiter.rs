//! Request pacing: a governor rate limiter whose rate adapts to 429 answers, and
//! the global pause that one 429 imposes on every worker.
//!
//! The rate starts at the configured maximum. Each 429 cuts it by [`DECREASE`]
//! (once per episode: answers to requests sent before the cut do not cut again)
//! and pauses all sending until the server's announced instant. While answers
//! are good the rate climbs back by a fixed step per [`INCREASE_EVERY`], never
//! above the configured rate. Below the configured rate the burst is one: a
//! server that just said 429 has an empty bucket, and a burst released at the
//! end of a pause would only earn more 429s.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Factor applied to the rate on a 429.
pub const DECREASE: f64 = 0.9;
/// How often the rate may climb while answers are good.
pub const INCREASE_EVERY: Duration = Duration::from_millis(250);
/// Each climb adds this share of the configured rate.
pub const INCREASE_SHARE: f64 = 0.01;
/// The rate never drops below this share of the configured rate.
pub const FLOOR_SHARE: f64 = 0.001;

/// Shared by every fetch worker.
pub struct Pacer {
    max_rate: f64,
    burst: NonZeroU32,
    state: Mutex<State>,
    limiter: RwLock<Arc<DefaultDirectRateLimiter>>,
}

struct State {
    rate: f64,
    /// Bumped on every decrease; a ticket from an older epoch was sent before it.
    epoch: u64,
    paused_until: Option<Instant>,
    last_change: Instant,
}

/// Proof that a request may be sent, carrying the rate epoch it was sent in.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
}

impl Pacer {
    pub fn new(max_rate: f64, burst: NonZeroU32) -> Pacer {
        let limiter = build_limiter(max_rate, burst, false);
        Pacer {
            max_rate,
            burst,
            state: Mutex::new(State {
                rate: max_rate,
                epoch: 0,
                paused_until: None,
                last_change: Instant::now(),
            }),
            limiter: RwLock::new(Arc::new(limiter)),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent (every
        // update is a plain field store), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request may be sent: after any pause, within the rate.
    pub async fn acquire(&self) -> Ticket {
        loop {
            let paused_until = self.state().paused_until;
            if let Some(until) = paused_until.filter(|t| *t > Instant::now()) {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let limiter = self.current_limiter();
            limiter.until_ready().await;
            // A pause may have begun, or the rate changed, while this worker
            // waited; a replaced limiter no longer paces anyone, so a cell
            // from it does not count.
            let state = self.state();
            if state.paused_until.is_some_and(|t| t > Instant::now())
                || !Arc::ptr_eq(&limiter, &self.current_limiter())
            {
                continue;
            }
            return Ticket { epoch: state.epoch };
        }
    }

    /// A 429 arrived for a request sent with `ticket`: pause everyone for `wait`
    /// and, once per episode, cut the rate.
    pub fn on_rate_limited(&self, ticket: Ticket, wait: Duration) {
        let now = Instant::now();
        let mut state = self.state();
        let until = now + wait;
        if state.paused_until.is_none_or(|t| t < until) {
            state.paused_until = Some(until);
        }
        if ticket.epoch == state.epoch {
            state.epoch += 1;
            state.rate = (state.rate * DECREASE).max(self.max_rate * FLOOR_SHARE);
            state.last_change = now;
            self.install(state.rate);
            tracing::debug!(
                rate = state.rate,
                wait_ms = wait.as_millis() as u64,
                "rate limited; slowing down"
            );
        }
    }

    /// A good answer arrived: climb back towards the configured rate.
    pub fn on_success(&self) {
        let now = Instant::now();
        let mut state = self.state();
        if state.rate >= self.max_rate || now.duration_since(state.last_change) < INCREASE_EVERY {
            return;
        }
        state.rate = (state.rate + self.max_rate * INCREASE_SHARE).min(self.max_rate);
        state.last_change = now;
        self.install(state.rate);
    }

    /// The current adaptive rate, requests per second.
    pub fn rate(&self) -> f64 {
        self.state().rate
    }

    fn current_limiter(&self) -> Arc<DefaultDirectRateLimiter> {
        self.limiter
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn install(&self, rate: f64) {
        let burst = if rate >= self.max_rate {
            self.burst
        } else {
            NonZeroU32::MIN
        };
        let limiter = Arc::new(build_limiter(rate, burst, true));
        *self.limiter.write().unwrap_or_else(|e| e.into_inner()) = limiter;
    }
}

/// A limiter for `rate`; a replacement starts with its burst spent, so changing
/// the rate never lets a fresh burst through.
fn build_limiter(rate: f64, burst: NonZeroU32, drained: bool) -> DefaultDirectRateLimiter {
    let quota = quota(rate, burst);
    let limiter = RateLimiter::direct(quota);
    if drained {
        let _ = limiter.check_n(burst);
    }
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

    #[tokio::test(start_paused = true)]
    async fn rate_drops_once_per_episode_and_climbs_back_to_the_cap() {
        let pacer = Pacer::new(100.0, NonZeroU32::MIN);
        let early = pacer.acquire().await;
        let also_early = pacer.acquire().await;
        pacer.on_rate_limited(early, Duration::from_millis(50));
        pacer.on_rate_limited(also_early, Duration::from_millis(50));
        assert!(
            (pacer.rate() - 90.0).abs() < 1e-9,
            "in-flight 429s of one episode cut once"
        );
        let later = pacer.acquire().await;
        assert!(
            Instant::now() >= pacer.state().last_change + Duration::from_millis(50),
            "paused"
        );
        pacer.on_rate_limited(later, Duration::ZERO);
        assert!((pacer.rate() - 81.0).abs() < 1e-9);
        for _ in 0..2000 {
            tokio::time::advance(INCREASE_EVERY).await;
            pacer.on_success();
        }
        assert_eq!(pacer.rate(), 100.0, "never above the configured rate");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_worker() {
        let pacer = Arc::new(Pacer::new(1000.0, NonZeroU32::new(10).unwrap()));
        let ticket = pacer.acquire().await;
        let start = Instant::now();
        pacer.on_rate_limited(ticket, Duration::from_secs(3));
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
}
