//! Simulator knobs: what faults to inject and how fast to answer, as CLI flags and a struct.

use std::fmt;
use std::time::Duration;

/// Which timing headers a simulated 429 carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RateLimitStyle {
    /// `retry-after-ms: <milliseconds>`
    #[default]
    RetryAfterMs,
    /// `Retry-After: <whole seconds, rounded up>`
    RetryAfterSeconds,
    /// `Retry-After: <IMF-fixdate>` (the instant rounded up to a whole second)
    RetryAfterDate,
    /// `X-RateLimit-Reset: <epoch seconds, rounded up>` with limit and remaining
    ResetSeconds,
    /// `X-RateLimit-Reset: <epoch milliseconds>` with limit and remaining
    ResetMillis,
    /// No timing header at all
    Bare,
}

/// How the simulator behaves; `Default` is a fault-free, unlimited, instant server.
#[derive(Clone, clap::Args)]
pub struct SimConfig {
    /// Fixed latency added to every answer, errors included ("20ms")
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub latency: Duration,
    /// Extra random latency, uniform in [0, latency_jitter]
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub latency_jitter: Duration,
    /// Enforce this many requests per second over both endpoints (token bucket); unset = unlimited
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// Token bucket capacity; default max(1, rate_limit / 10) rounded
    #[arg(long)]
    pub rate_burst: Option<u32>,
    /// Which headers a 429 carries
    #[arg(long, value_enum, default_value_t = RateLimitStyle::default())]
    pub rate_limit_style: RateLimitStyle,
    /// Answer every Nth request (counting all requests) with a 429 announcing `scripted_pause`;
    /// until the announced instant every request is answered 429
    #[arg(long)]
    pub scripted_429_every: Option<u64>,
    /// Length of the pause a scripted 429 announces
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub scripted_pause: Duration,
    /// Probability per request of a 5xx (500, 502, 503, 524 or 529)
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Probability per request of dropping the connection without any answer
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Probability per request of a truncated 200 (short body or JSON cut in the middle)
    #[arg(long, default_value_t = 0.0)]
    pub truncate_rate: f64,
    /// Answer 404 while the generation is younger than this (age from the `gen-<unix>-` prefix)
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub young_not_found: Duration,
    /// Fraction of IDs, chosen by hash, that are permanently 404
    #[arg(long, default_value_t = 0.0)]
    pub missing_rate: f64,
    /// Answer 401 to every request after this many requests
    #[arg(long)]
    pub unauthorized_after: Option<u64>,
    /// Answer 402 to every metadata request after this many requests
    #[arg(long)]
    pub payment_required_after: Option<u64>,
    /// Fraction of IDs, chosen by hash, whose content endpoint answers 403
    #[arg(long, default_value_t = 0.0)]
    pub content_forbidden_rate: f64,
    /// Fraction of IDs, chosen by hash, whose content endpoint answers 404
    #[arg(long, default_value_t = 0.0)]
    pub content_missing_rate: f64,
    /// Seed for the per-request fault dice (records depend only on the ID)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep per-ID counters for duplicate detection; turn off for huge benchmark runs
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub track_ids: bool,
    /// Require `Authorization: Bearer <key>` on every request, else 401
    #[arg(
        long = "require-api-key",
        id = "sim_api_key",
        env = "GENLEDGER_SIM_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            rate_limit: None,
            rate_burst: None,
            rate_limit_style: RateLimitStyle::default(),
            scripted_429_every: None,
            scripted_pause: Duration::from_secs(1),
            error_rate: 0.0,
            reset_rate: 0.0,
            truncate_rate: 0.0,
            young_not_found: Duration::ZERO,
            missing_rate: 0.0,
            unauthorized_after: None,
            payment_required_after: None,
            content_forbidden_rate: 0.0,
            content_missing_rate: 0.0,
            seed: 1,
            track_ids: true,
            api_key: None,
        }
    }
}

/// Written by hand so the API key never reaches a log line.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("latency", &self.latency)
            .field("latency_jitter", &self.latency_jitter)
            .field("rate_limit", &self.rate_limit)
            .field("rate_burst", &self.rate_burst)
            .field("rate_limit_style", &self.rate_limit_style)
            .field("scripted_429_every", &self.scripted_429_every)
            .field("scripted_pause", &self.scripted_pause)
            .field("error_rate", &self.error_rate)
            .field("reset_rate", &self.reset_rate)
            .field("truncate_rate", &self.truncate_rate)
            .field("young_not_found", &self.young_not_found)
            .field("missing_rate", &self.missing_rate)
            .field("unauthorized_after", &self.unauthorized_after)
            .field("payment_required_after", &self.payment_required_after)
            .field("content_forbidden_rate", &self.content_forbidden_rate)
            .field("content_missing_rate", &self.content_missing_rate)
            .field("seed", &self.seed)
            .field("track_ids", &self.track_ids)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A knob outside its meaningful range.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimConfigError {
    #[error("`{name}` must be a probability between 0 and 1, got {value}")]
    Probability { name: &'static str, value: f64 },
    #[error("`rate_limit` must be a positive number of requests per second, got {0}")]
    RateLimit(f64),
    #[error("`{0}` must be at least 1")]
    Zero(&'static str),
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
        ];
        for (name, value) in probabilities {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimConfigError::Probability { name, value });
            }
        }
        if let Some(rate) = self.rate_limit
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(SimConfigError::RateLimit(rate));
        }
        if self.rate_burst == Some(0) {
            return Err(SimConfigError::Zero("rate_burst"));
        }
        if self.scripted_429_every == Some(0) {
            return Err(SimConfigError::Zero("scripted_429_every"));
        }
        Ok(())
    }

    /// The token bucket capacity: `rate_burst`, else max(1, rate_limit / 10) rounded.
    pub fn burst(&self) -> u32 {
        match (self.rate_burst, self.rate_limit) {
            (Some(burst), _) => burst,
            (None, Some(rate)) => (rate / 10.0).round().max(1.0) as u32,
            (None, None) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimConfig,
    }

    #[test]
    fn cli_defaults_equal_default() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["sim"]).expect("no flags parse");
        assert_eq!(
            format!("{:?}", cli.sim),
            format!("{:?}", SimConfig::default())
        );
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "sim",
            "--latency",
            "20ms",
            "--rate-limit",
            "50",
            "--rate-limit-style",
            "retry-after-date",
            "--track-ids",
            "false",
            "--require-api-key",
            "sk-secret",
        ])
        .expect("flags parse");
        assert_eq!(cli.sim.latency, Duration::from_millis(20));
        assert_eq!(cli.sim.burst(), 5);
        assert_eq!(cli.sim.rate_limit_style, RateLimitStyle::RetryAfterDate);
        assert!(!cli.sim.track_ids);
        assert!(!format!("{:?}", cli.sim).contains("sk-secret"));
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
}
