//! Which simulator knobs make sense together: `SimConfig::validate` and its error.

use std::time::Duration;

use super::config::{LimiterKind, SimConfig};

/// The longest sliding log the simulator keeps (one `Instant` per counted request).
const MAX_SLIDING_LOG: f64 = 1_000_000.0;

/// A knob outside its meaningful range.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimConfigError {
    #[error("`{name}` must be a probability between 0 and 1, got {value}")]
    Probability { name: &'static str, value: f64 },
    #[error("`rate_limit` must be a positive number of requests per second, got {0}")]
    RateLimit(f64),
    #[error("`{0}` must be at least 1")]
    Zero(&'static str),
    #[error("`{0}` must be longer than zero")]
    ZeroDuration(&'static str),
    #[error("`long_generation_max` must be at least 1s (durations are whole seconds), got {}", humantime::format_duration(*.0))]
    LongGenerationMax(Duration),
    #[error("`{0}` has no effect without `rate_limit`")]
    NeedsRateLimit(&'static str),
    #[error("`rate_recover_after` needs `rate_halve_after`")]
    RecoverWithoutHalve,
    #[error(
        "`rate_recover_after` ({}) must come after `rate_halve_after` ({})",
        humantime::format_duration(*recover),
        humantime::format_duration(*halve)
    )]
    RecoverBeforeHalve { halve: Duration, recover: Duration },
    #[error("a sliding window of {0} requests is too large (at most 1000000)")]
    SlidingLogTooLarge(f64),
}

impl SimConfig {
    /// Checks every knob; `Simulator::start` refuses a config that fails this.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        let probabilities = [
            ("error_rate", self.error_rate),
            ("reset_rate", self.reset_rate),
            ("truncate_rate", self.truncate_rate),
            ("missing_rate", self.missing_rate),
            ("content_forbidden_rate", self.content_forbidden_rate),
            ("content_missing_rate", self.content_missing_rate),
            ("long_generation_share", self.long_generation_share),
        ];
        for (name, value) in probabilities {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimConfigError::Probability { name, value });
            }
        }
        if self.rate_burst == Some(0) {
            return Err(SimConfigError::Zero("rate_burst"));
        }
        if self.scripted_429_every == Some(0) {
            return Err(SimConfigError::Zero("scripted_429_every"));
        }
        if self.rate_window.is_zero() {
            return Err(SimConfigError::ZeroDuration("rate_window"));
        }
        if self.retry_after.is_some_and(|d| d.is_zero()) {
            return Err(SimConfigError::ZeroDuration("retry_after"));
        }
        if self.long_generation_max < Duration::from_secs(1) {
            return Err(SimConfigError::LongGenerationMax(self.long_generation_max));
        }
        self.validate_rate_limit()
    }

    /// The knobs that only shape `rate_limit`.
    fn validate_rate_limit(&self) -> Result<(), SimConfigError> {
        match (self.rate_halve_after, self.rate_recover_after) {
            (None, Some(_)) => return Err(SimConfigError::RecoverWithoutHalve),
            (Some(halve), Some(recover)) if recover <= halve => {
                return Err(SimConfigError::RecoverBeforeHalve { halve, recover });
            }
            _ => {}
        }
        let Some(rate) = self.rate_limit else {
            let needs = [
                ("limiter", self.limiter != LimiterKind::TokenBucket),
                ("retry_after", self.retry_after.is_some()),
                ("rate_headers", self.rate_headers),
                ("rate_halve_after", self.rate_halve_after.is_some()),
            ];
            return match needs.into_iter().find(|(_, set)| *set) {
                Some((name, _)) => Err(SimConfigError::NeedsRateLimit(name)),
                None => Ok(()),
            };
        };
        if !(rate.is_finite() && rate > 0.0) {
            return Err(SimConfigError::RateLimit(rate));
        }
        let log = (rate * self.rate_window.as_secs_f64()).ceil();
        if self.limiter == LimiterKind::SlidingWindow && log > MAX_SLIDING_LOG {
            return Err(SimConfigError::SlidingLogTooLarge(log));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited() -> SimConfig {
        SimConfig {
            rate_limit: Some(10.0),
            ..SimConfig::default()
        }
    }

    #[test]
    fn rejects_out_of_range_knobs() {
        let bad = SimConfig {
            error_rate: 1.5,
            ..SimConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(SimConfigError::Probability {
                name: "error_rate",
                ..
            })
        ));
        let bad = SimConfig {
            rate_limit: Some(0.0),
            ..SimConfig::default()
        };
        assert_eq!(bad.validate(), Err(SimConfigError::RateLimit(0.0)));
        assert_eq!(SimConfig::default().validate(), Ok(()));
        assert_eq!(
            SimConfig {
                rate_limit: Some(3.0),
                ..SimConfig::default()
            }
            .burst(),
            1
        );
    }

    #[test]
    fn rejects_nonsense_limiter_and_generation_knobs() {
        let cases = [
            (
                SimConfig {
                    long_generation_share: -0.1,
                    ..SimConfig::default()
                },
                SimConfigError::Probability {
                    name: "long_generation_share",
                    value: -0.1,
                },
            ),
            (
                SimConfig {
                    rate_window: Duration::ZERO,
                    ..limited()
                },
                SimConfigError::ZeroDuration("rate_window"),
            ),
            (
                SimConfig {
                    retry_after: Some(Duration::ZERO),
                    ..limited()
                },
                SimConfigError::ZeroDuration("retry_after"),
            ),
            (
                SimConfig {
                    long_generation_max: Duration::from_millis(500),
                    ..SimConfig::default()
                },
                SimConfigError::LongGenerationMax(Duration::from_millis(500)),
            ),
            (
                SimConfig {
                    limiter: LimiterKind::FixedWindow,
                    ..SimConfig::default()
                },
                SimConfigError::NeedsRateLimit("limiter"),
            ),
            (
                SimConfig {
                    rate_headers: true,
                    ..SimConfig::default()
                },
                SimConfigError::NeedsRateLimit("rate_headers"),
            ),
            (
                SimConfig {
                    rate_recover_after: Some(Duration::from_secs(5)),
                    ..limited()
                },
                SimConfigError::RecoverWithoutHalve,
            ),
            (
                SimConfig {
                    rate_halve_after: Some(Duration::from_secs(5)),
                    rate_recover_after: Some(Duration::from_secs(5)),
                    ..limited()
                },
                SimConfigError::RecoverBeforeHalve {
                    halve: Duration::from_secs(5),
                    recover: Duration::from_secs(5),
                },
            ),
            (
                SimConfig {
                    rate_limit: Some(1_000.0),
                    rate_window: Duration::from_secs(3_600),
                    limiter: LimiterKind::SlidingWindow,
                    ..SimConfig::default()
                },
                SimConfigError::SlidingLogTooLarge(3_600_000.0),
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected));
        }
        let good = SimConfig {
            limiter: LimiterKind::FixedWindow,
            retry_after: Some(Duration::from_secs(1)),
            rate_headers: true,
            rate_halve_after: Some(Duration::ZERO),
            rate_recover_after: Some(Duration::from_secs(1)),
            long_generation_share: 1.0,
            ..limited()
        };
        assert_eq!(good.validate(), Ok(()));
    }
}
