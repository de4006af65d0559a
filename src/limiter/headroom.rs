//! Unused budget: what `X-RateLimit-Remaining` says about a rate below the
//! server's limit. The signals of `control` only ever say "too fast"; this
//! says "this much too slow", so a ceiling read low (a whole-second reset
//! makes a one-second window's budget look twice as scarce as it is) is
//! corrected without waiting for a blind probe.
//!
//! Over a stretch at a steady rate `x`, a window or a sliding log holding
//! `L` requests per window `W` never has less than `L − x·W − e` left (`e`
//! the pacer's burst lets in beyond the rate), so the lowest Remaining `h`
//! gives `W = (L − h − e) / x` whatever `W` is, and the rate that leaves `k`
//! spare is `x · (L − k − e) / (L − h − e)`. A
//! stretch counts only when it covers two announced resets (a fixed window
//! is lowest just before its end), is at least [`STRETCH`] long, is sent at
//! one rate, and its lowest Remaining is the same before and after the first
//! reset: a log still filling or emptying is not yet at `L − x·W`.

use std::time::Duration;

use tokio::time::Instant;

/// The shortest stretch that can show room.
const STRETCH: Duration = Duration::from_secs(1);
/// Less than this share of the budget left unused is no room: pacing jitter
/// spends it.
const ROOM_SHARE: f64 = 0.01;
/// The shortest part after the first reset.
const PART: Duration = Duration::from_millis(500);
/// The pacing rate moved by less than this factor over a steady stretch.
const STEADY_RATE: f64 = 1.01;
/// Requests a window holds beyond its rate's share: the pacer's burst of
/// two (see `burst_for` in the parent module) lets one more in.
const EXTRA: f64 = 1.0;
/// Requests kept unused at the rate the room allows, beyond [`EXTRA`]...
const KEEP: f64 = 1.0;
/// ... and this share of a larger budget, for the timing noise of the many
/// requests a long window holds.
const KEEP_SHARE: f64 = 0.005;
/// One stretch raises the rate at most this many times (a budget far larger
/// than a window's, such as a daily quota, says little about the window).
const MAX_RAISE: f64 = 2.0;

/// The stretch being watched since the last signal or pause.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    start: Instant,
    /// Lowest Remaining announced before the first reset passed, once it has.
    low_before: Option<u64>,
    /// Lowest Remaining announced since.
    low: u64,
    accepted: u64,
    /// The lowest and highest pacing rate in it.
    rates: (f64, f64),
    /// When the first reset passed: the second part's start.
    second: Instant,
    /// The announced reset being waited for, and how many have passed.
    watched: Instant,
    passed: u32,
}

/// Watches announced budgets for room left unused.
#[derive(Debug, Clone, Default)]
pub(super) struct Headroom {
    stretch: Option<Stretch>,
    /// The budget's size: `X-RateLimit-Limit`, else the most ever remaining.
    size: u64,
}

impl Headroom {
    /// Forgets the stretch: a signal or a pause broke the steady rate.
    pub(super) fn restart(&mut self) {
        self.stretch = None;
    }

    /// An accepted answer announced `remaining` of a budget of `limit`,
    /// reset at `reset`, while pacing at `rate`. Returns the rate the server would accept with
    /// [`KEEP`] requests (or [`KEEP_SHARE`]) to spare, when a complete stretch
    /// shows room.
    pub(super) fn on_answer(
        &mut self,
        now: Instant,
        rate: f64,
        remaining: u64,
        limit: Option<u64>,
        reset: Option<Instant>,
    ) -> Option<f64> {
        self.size = limit.unwrap_or(self.size).max(remaining);
        let reset = reset.unwrap_or(now + Duration::from_secs(1));
        let Some(stretch) = &mut self.stretch else {
            self.stretch = Some(Stretch {
                start: now,
                low_before: None,
                second: now,
                low: remaining,
                accepted: 0,
                rates: (rate, rate),
                watched: reset,
                passed: 0,
            });
            return None;
        };
        stretch.accepted += 1;
        stretch.low = stretch.low.min(remaining);
        stretch.rates = (stretch.rates.0.min(rate), stretch.rates.1.max(rate));
        if now >= stretch.watched {
            stretch.passed += 1;
            // A reset announced as already past is watched a little later.
            stretch.watched = reset.max(now + PART / 4);
            if stretch.low_before.is_none() {
                stretch.low_before = Some(stretch.low);
                stretch.low = remaining;
                stretch.second = now;
            }
        }
        let span = now.saturating_duration_since(stretch.start);
        let second = now.saturating_duration_since(stretch.second);
        if stretch.passed < 2 || span < STRETCH || second < PART {
            return None;
        }
        let done = *stretch;
        self.stretch = None;
        let size = self.size as f64;
        let before = done.low_before.unwrap_or(done.low) as f64;
        let low = done.low as f64;
        // Only a steady rate into a steady Remaining shows `L − x·W`: a log
        // still filling (the rate rose within the last `W`) reads the limit
        // high, and one emptying may hide that it is.
        let steady =
            (low - before).abs() <= KEEP + EXTRA && done.rates.1 <= done.rates.0 * STEADY_RATE;
        let keep = KEEP.max(size * KEEP_SHARE);
        if !steady || size <= keep || low < keep || low < size * ROOM_SHARE {
            return None;
        }
        let delivered = done.accepted as f64 / span.as_secs_f64();
        let raise = ((size - keep - EXTRA) / (size - low - EXTRA).max(1.0)).min(MAX_RAISE);
        Some(delivered * raise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sliding log of `limit` per `window`, fed at `rate` for `secs`, its
    /// reset announced as the next whole second; returns the room found
    /// last, and every room found.
    fn sliding(limit: u64, window: f64, rate: f64, secs: f64) -> Option<f64> {
        sliding_after(limit, window, 0, rate, secs).last().copied()
    }

    fn sliding_after(limit: u64, window: f64, burst: u64, rate: f64, secs: f64) -> Vec<f64> {
        let start = Instant::now();
        let mut room = Headroom::default();
        let mut sent: Vec<f64> = vec![0.0; burst as usize];
        let mut found = Vec::new();
        let step = 1.0 / rate;
        let mut t = 0.0;
        while t < secs {
            sent.retain(|&s| s + window > t);
            sent.push(t);
            let remaining = limit.saturating_sub(sent.len() as u64);
            let at = start + Duration::from_secs_f64(t);
            let reset = start + Duration::from_secs_f64(t.floor() + 1.0);
            found.extend(room.on_answer(at, rate, remaining, Some(limit), Some(reset)));
            t += step;
        }
        found
    }

    #[test]
    fn a_sliding_log_used_at_sixty_percent_shows_its_limit() {
        // 100 per second, whatever the window.
        let one = sliding(100, 1.0, 61.0, 5.0).expect("room");
        assert!((96.0..=99.0).contains(&one), "{one}");
        let ten = sliding(1000, 10.0, 94.0, 25.0).expect("room");
        assert!((98.0..=100.5).contains(&ten), "{ten}");
    }

    #[test]
    fn a_log_filling_or_emptying_shows_room_only_once_steady() {
        // From empty, 94/s fills a 10 s log for 10 s: no reading until the
        // log holds only the steady rate.
        let filling = sliding_after(1000, 10.0, 0, 94.0, 30.0);
        assert!(!filling.is_empty());
        assert!(
            filling.iter().all(|r| (98.0..=100.5).contains(r)),
            "{filling:?}"
        );
        // A burst of 1,000 leaves after 10 s; the log then holds 500.
        let emptying = sliding_after(1000, 10.0, 1000, 50.0, 40.0);
        assert!(!emptying.is_empty());
        assert!(
            emptying.iter().all(|r| (98.0..=100.5).contains(r)),
            "{emptying:?}"
        );
    }

    #[test]
    fn a_budget_used_to_its_end_shows_no_room() {
        // (Its rate, at most: a log holding 99 of 100 leaves one spare.)
        let full = sliding(100, 1.0, 99.0, 10.0);
        assert!(full.is_none_or(|r| r <= 99.0 + 1e-6), "{full:?}");
        // A fixed window of 300 per 3 s, spent at 100/s: nearly nothing is
        // left just before each reset, however much was left mid-window.
        let start = Instant::now();
        let mut room = Headroom::default();
        for i in 0..900u64 {
            let t = i as f64 / 100.0;
            let window_end = (t / 3.0).floor() * 3.0 + 3.0;
            let used = (i % 300) + 1;
            let at = start + Duration::from_secs_f64(t);
            let reset = start + Duration::from_secs_f64(window_end);
            assert_eq!(
                room.on_answer(at, 100.0, 300 - used, Some(300), Some(reset)),
                None
            );
        }
    }

    #[test]
    fn a_stretch_broken_by_a_signal_starts_again() {
        let start = Instant::now();
        let mut room = Headroom::default();
        let mut t = start;
        for _ in 0..150 {
            t += Duration::from_millis(20);
            room.on_answer(t, 50.0, 50, Some(100), Some(t + Duration::from_millis(500)));
        }
        room.restart();
        t += Duration::from_millis(20);
        assert_eq!(room.on_answer(t, 50.0, 50, Some(100), Some(t)), None);
        // A daily quota far larger than any window raises at most twofold.
        let mut room = Headroom::default();
        let mut found = None;
        for _ in 0..150 {
            t += Duration::from_millis(20);
            found = found.or(room.on_answer(t, 50.0, 10_000, Some(10_000), Some(t)));
        }
        let raised = found.expect("room");
        assert!((99.0..=101.0).contains(&raised), "{raised}");
    }
}
