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

/// Which algorithm enforces `rate_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LimiterKind {
    /// Tokens refill at the rate up to `rate_burst`; a 429 waits for the next token
    #[default]
    TokenBucket,
    /// ceil(rate * window) requests per window, windows aligned to whole multiples of
    /// `rate_window` since the epoch; a 429 waits for the window end
    FixedWindow,
    /// ceil(rate * window) requests in any trailing `rate_window` (a sliding log); a 429 waits
    /// until the oldest counted request leaves
    SlidingWindow,
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
    /// Enforce this many requests per second over both endpoints (with `limiter`); unset = unlimited
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// Which algorithm enforces `rate_limit`
    #[arg(long, value_enum, default_value_t = LimiterKind::default())]
    pub limiter: LimiterKind,
    /// Token bucket capacity; default max(1, rate_limit / 10) rounded
    #[arg(long)]
    pub rate_burst: Option<u32>,
    /// Window length of the fixed- and sliding-window limiters
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub rate_window: Duration,
    /// Which headers a 429 carries
    #[arg(long, value_enum, default_value_t = RateLimitStyle::default())]
    pub rate_limit_style: RateLimitStyle,
    /// Every rate-limit 429 announces exactly this wait (rounded up as its style requires)
    /// instead of the limiter's own, and enforces it; scripted 429s keep `scripted_pause`
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retry_after: Option<Duration>,
    /// Send X-RateLimit-Limit, -Remaining and -Reset (epoch seconds) on every answer of the
    /// generation endpoints, not only on 429s
    #[arg(long)]
    pub rate_headers: bool,
    /// From this long after the first request on, enforce half of `rate_limit`
    #[arg(long, value_parser = humantime::parse_duration)]
    pub rate_halve_after: Option<Duration>,
    /// From this long after the first request on, enforce the whole `rate_limit` again
    /// (after `rate_halve_after`)
    #[arg(long, value_parser = humantime::parse_duration)]
    pub rate_recover_after: Option<Duration>,
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
    /// Answer 404 while the generation is younger than this (age from the `gen-<unix>-` prefix,
    /// or from the end of a long generation)
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub young_not_found: Duration,
    /// Fraction of `gen-<unix>-` IDs, chosen by a hash of the part after the prefix, whose
    /// generation runs long: they answer 404 until prefix + its duration
    #[arg(long, default_value_t = 0.0)]
    pub long_generation_share: f64,
    /// Longest duration of a long generation (each one's is a hashed fraction of this, in
    /// whole seconds)
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m")]
    pub long_generation_max: Duration,
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
    /// Every stored prompt is this many bytes of random text (fixed per ID, as incompressible as
    /// printable text gets), as agents send; unset = short prompts
    #[arg(long)]
    pub content_prompt_bytes: Option<usize>,
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
    /// The management key `/api/v1/activity` takes (any other key: 403, none: 401)
    #[arg(long, env = "GENLEDGER_SIM_MANAGEMENT_KEY", hide_env_values = true)]
    pub management_key: Option<String>,
    /// IDs the account made (one per line), counted by `/api/v1/activity` whether or not
    /// anyone fetched them; the IDs the metadata endpoint answers are counted too
    #[arg(long, value_name = "PATH")]
    pub activity_ids: Option<std::path::PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            rate_limit: None,
            limiter: LimiterKind::default(),
            rate_burst: None,
            rate_window: Duration::from_secs(1),
            rate_limit_style: RateLimitStyle::default(),
            retry_after: None,
            rate_headers: false,
            rate_halve_after: None,
            rate_recover_after: None,
            scripted_429_every: None,
            scripted_pause: Duration::from_secs(1),
            error_rate: 0.0,
            reset_rate: 0.0,
            truncate_rate: 0.0,
            young_not_found: Duration::ZERO,
            long_generation_share: 0.0,
            long_generation_max: Duration::from_secs(30 * 60),
            missing_rate: 0.0,
            unauthorized_after: None,
            payment_required_after: None,
            content_forbidden_rate: 0.0,
            content_missing_rate: 0.0,
            content_prompt_bytes: None,
            seed: 1,
            track_ids: true,
            api_key: None,
            management_key: None,
            activity_ids: None,
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
            .field("limiter", &self.limiter)
            .field("rate_burst", &self.rate_burst)
            .field("rate_window", &self.rate_window)
            .field("rate_limit_style", &self.rate_limit_style)
            .field("retry_after", &self.retry_after)
            .field("rate_headers", &self.rate_headers)
            .field("rate_halve_after", &self.rate_halve_after)
            .field("rate_recover_after", &self.rate_recover_after)
            .field("scripted_429_every", &self.scripted_429_every)
            .field("scripted_pause", &self.scripted_pause)
            .field("error_rate", &self.error_rate)
            .field("reset_rate", &self.reset_rate)
            .field("truncate_rate", &self.truncate_rate)
            .field("young_not_found", &self.young_not_found)
            .field("long_generation_share", &self.long_generation_share)
            .field("long_generation_max", &self.long_generation_max)
            .field("missing_rate", &self.missing_rate)
            .field("unauthorized_after", &self.unauthorized_after)
            .field("payment_required_after", &self.payment_required_after)
            .field("content_forbidden_rate", &self.content_forbidden_rate)
            .field("content_missing_rate", &self.content_missing_rate)
            .field("content_prompt_bytes", &self.content_prompt_bytes)
            .field("seed", &self.seed)
            .field("track_ids", &self.track_ids)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "management_key",
                &self.management_key.as_ref().map(|_| "<redacted>"),
            )
            .field("activity_ids", &self.activity_ids)
            .finish()
    }
}

impl SimConfig {
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
            "--content-prompt-bytes",
            "204800",
        ])
        .expect("flags parse");
        assert_eq!(cli.sim.content_prompt_bytes, Some(204_800));
        assert_eq!(cli.sim.latency, Duration::from_millis(20));
        assert_eq!(cli.sim.burst(), 5);
        assert_eq!(cli.sim.rate_limit_style, RateLimitStyle::RetryAfterDate);
        assert!(!cli.sim.track_ids);
        assert!(!format!("{:?}", cli.sim).contains("sk-secret"));
    }

    #[test]
    fn limiter_and_generation_flags_parse() {
        let cli = Cli::try_parse_from([
            "sim",
            "--rate-limit",
            "3",
            "--limiter",
            "sliding-window",
            "--rate-window",
            "10s",
            "--retry-after",
            "1s",
            "--rate-headers",
            "--rate-halve-after",
            "1m",
            "--rate-recover-after",
            "2m",
            "--long-generation-share",
            "0.1",
            "--long-generation-max",
            "5m",
        ])
        .expect("flags parse");
        let sim = cli.sim;
        assert_eq!(sim.limiter, LimiterKind::SlidingWindow);
        assert_eq!(sim.rate_window, Duration::from_secs(10));
        assert_eq!(sim.retry_after, Some(Duration::from_secs(1)));
        assert!(sim.rate_headers);
        assert_eq!(sim.rate_halve_after, Some(Duration::from_secs(60)));
        assert_eq!(sim.rate_recover_after, Some(Duration::from_secs(120)));
        assert_eq!(sim.long_generation_share, 0.1);
        assert_eq!(sim.long_generation_max, Duration::from_secs(300));
        assert_eq!(sim.burst(), 1);
        assert!(format!("{sim:?}").contains("rate_recover_after: Some(120s)"));
    }
}
