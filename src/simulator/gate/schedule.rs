//! The enforced rate over time: `rate_limit`, halved from `rate_halve_after`, whole again from
//! `rate_recover_after`, both counted from the first request.

use std::time::Duration;

use super::super::config::SimConfig;

/// The longest wait a limiter announces, so an absurdly slow rate cannot overflow an `Instant`.
const MAX_WAIT_SECS: f64 = 365.0 * 86_400.0;

/// A piecewise-constant rate in requests per second; times are seconds since the first request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    rate: f64,
    halve: Option<f64>,
    /// Only set together with `halve`, and later than it (`SimConfig::validate`).
    recover: Option<f64>,
}

impl Schedule {
    pub(crate) fn new(config: &SimConfig) -> Option<Self> {
        Some(Self {
            rate: config.rate_limit?,
            halve: config.rate_halve_after.map(|d| d.as_secs_f64()),
            recover: config
                .rate_halve_after
                .and(config.rate_recover_after)
                .map(|d| d.as_secs_f64()),
        })
    }

    /// The rate in force `t` after the first request.
    pub(crate) fn rate_at(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        let halved = self.halve.is_some_and(|h| t >= h) && !self.recover.is_some_and(|r| t >= r);
        if halved { self.rate / 2.0 } else { self.rate }
    }

    /// The requests the rate allows from the first request until `t` seconds: its integral.
    pub(crate) fn credit(&self, t: f64) -> f64 {
        let Some(halve) = self.halve.filter(|&h| t >= h) else {
            return self.rate * t;
        };
        let before = self.rate * halve;
        match self.recover {
            Some(recover) if t >= recover => {
                before + self.rate / 2.0 * (recover - halve) + self.rate * (t - recover)
            }
            _ => before + self.rate / 2.0 * (t - halve),
        }
    }

    /// The first time, in seconds since the first request, at which `credit` reaches `c`.
    pub(crate) fn time_for_credit(&self, c: f64) -> f64 {
        let Some(halve) = self.halve.filter(|&h| c > self.rate * h) else {
            return c / self.rate;
        };
        let after = c - self.rate * halve;
        let half = self.rate / 2.0;
        match self.recover {
            Some(recover) if after > half * (recover - halve) => {
                recover + (after - half * (recover - halve)) / self.rate
            }
            _ => halve + after / half,
        }
    }
}

/// `secs` as a duration, clamped to `[0, one year]`.
pub(crate) fn wait_from_secs(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.clamp(0.0, MAX_WAIT_SECS)).unwrap_or_default()
}

impl SimConfig {
    /// The rate limit in force `since_first` after the simulator's first request: `rate_limit`,
    /// or half of it between `rate_halve_after` and `rate_recover_after`. None when unlimited.
    pub fn effective_rate(&self, since_first: Duration) -> Option<f64> {
        Schedule::new(self).map(|s| s.rate_at(since_first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(halve: Option<u64>, recover: Option<u64>) -> Schedule {
        Schedule::new(&SimConfig {
            rate_limit: Some(10.0),
            rate_halve_after: halve.map(Duration::from_secs),
            rate_recover_after: recover.map(Duration::from_secs),
            ..SimConfig::default()
        })
        .expect("limited")
    }

    #[test]
    fn halves_then_recovers() {
        let s = schedule(Some(10), Some(20));
        let rate = |secs| s.rate_at(Duration::from_secs(secs));
        assert_eq!(
            (rate(0), rate(9), rate(10), rate(19), rate(20)),
            (10.0, 10.0, 5.0, 5.0, 10.0)
        );
        assert_eq!(schedule(None, None).rate_at(Duration::from_secs(99)), 10.0);
        assert_eq!(
            schedule(Some(1), None).rate_at(Duration::from_secs(99)),
            5.0
        );
    }

    #[test]
    fn credit_integrates_the_rate_and_inverts() {
        let s = schedule(Some(10), Some(20));
        assert_eq!(s.credit(5.0), 50.0);
        assert_eq!(s.credit(15.0), 125.0);
        assert_eq!(s.credit(25.0), 200.0);
        for t in [0.0, 3.5, 10.0, 12.25, 20.0, 31.0] {
            assert!((s.time_for_credit(s.credit(t)) - t).abs() < 1e-9, "{t}");
        }
        let open = schedule(Some(10), None);
        assert_eq!(open.credit(30.0), 200.0);
        assert!((open.time_for_credit(200.0) - 30.0).abs() < 1e-9);
        assert_eq!(wait_from_secs(-1.0), Duration::ZERO);
        assert_eq!(wait_from_secs(f64::NAN), Duration::ZERO);
    }

    #[test]
    fn effective_rate_is_none_without_a_limit() {
        assert_eq!(SimConfig::default().effective_rate(Duration::ZERO), None);
    }
}
