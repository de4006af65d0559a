//! The configuration as the user writes it: TOML keys, `GENLEDGER_*` variables
//! and flags, merged by figment. Every field's `///` doc is the user reference;
//! `config/genledger.example.toml` mirrors it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::schema::MoneyMode;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub api: RawApi,
    pub input: RawInput,
    pub fetch: RawFetch,
    pub output: RawOutput,
    pub state: RawState,
    pub export: RawExport,
    pub focus: RawFocus,
    pub reconcile: RawReconcile,
    pub schedule: RawSchedule,
    pub metrics: RawMetrics,
    /// How long a signalled shutdown may take to finish in-flight work.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

/// `[api]`: where and how to reach OpenRouter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawApi {
    /// Base URL of the API, up to and including `/api/v1`.
    pub base_url: String,
    /// File holding the API key (a mounted secret). `OPENROUTER_API_KEY` wins when set.
    pub key_file: Option<PathBuf>,
    /// File holding a management key, which `genledger reconcile` needs for the
    /// Activity API. `OPENROUTER_MANAGEMENT_KEY` wins when set.
    pub management_key_file: Option<PathBuf>,
    /// Allow plain `http://` to hosts other than loopback.
    pub allow_insecure_http: bool,
    /// Sent as `HTTP-Referer` for attribution.
    pub referer: Option<String>,
    /// Sent as `X-OpenRouter-Title` for attribution.
    pub title: Option<String>,
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            base_url: "https://openrouter.ai/api/v1".into(),
            key_file: None,
            management_key_file: None,
            allow_insecure_http: false,
            referer: None,
            title: None,
        }
    }
}

/// `[input]`: where IDs come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawInput {
    /// Queue files to read, `-` for stdin.
    pub paths: Vec<String>,
}

/// `[fetch]`: concurrency, pacing and retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawFetch {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Highest request rate, requests per second; the adaptive rate never exceeds it.
    pub requests_per_second: f64,
    /// Requests that may be sent back to back before pacing applies.
    pub burst: u32,
    /// Tries per ID for transient failures (5xx, resets, timeouts, cut bodies); then the ID stays pending.
    pub max_attempts: u32,
    /// Timeout of one request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a 404 is retried: final only once both the generation's start (its `gen-<unix>-`
    /// prefix, when trusted) and the first 404 for it are older than this.
    #[serde(with = "humantime_serde")]
    pub not_found_grace: Duration,
    /// Longest pause a 429 answer may impose.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// First retry delay; later delays double, with full jitter.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
}

impl Default for RawFetch {
    fn default() -> Self {
        RawFetch {
            concurrency: 16,
            requests_per_second: 20.0,
            burst: 5,
            max_attempts: 6,
            timeout: Duration::from_secs(30),
            not_found_grace: Duration::from_secs(120),
            max_retry_after: Duration::from_secs(300),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Parquet,
    Csv,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
        }
    }
}

/// Parquet compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    None,
}

/// `[output]`: the files written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOutput {
    /// Root directory of the export.
    pub dir: PathBuf,
    /// `parquet` or `csv`.
    pub format: Format,
    /// A data file is closed and a new one started after this many rows.
    pub max_rows_per_file: u64,
    /// Parquet money columns: `decimal` (DECIMAL(38,18), exact) or `float64`.
    pub money: MoneyMode,
    /// Parquet compression: `zstd`, `snappy` or `none` (CSV is written uncompressed).
    pub compression: Compression,
    /// Tables to write: `generations` (always), and `focus`, the FinOps
    /// Foundation's FOCUS 1.2 cost and usage schema, one row per generation
    /// (needs `focus.billing_account_id`).
    pub tables: Vec<String>,
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            dir: PathBuf::from("genledger-out"),
            format: Format::Parquet,
            max_rows_per_file: 250_000,
            money: MoneyMode::Decimal,
            compression: Compression::Zstd,
            tables: vec!["generations".into()],
        }
    }
}

/// `[state]`: the state ledger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawState {
    /// Path of the ledger database; default `<output.dir>/_state/genledger.db`.
    pub path: Option<PathBuf>,
    /// How long the ledger remembers exported IDs, by their generation's day
    /// (e.g. "400days"); unset: for ever.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
}

/// `[export]`: what is exported besides metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawExport {
    /// Also export stored prompts and completions (sensitive).
    pub content: bool,
}

/// `[focus]`: the FOCUS table's billing account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawFocus {
    /// `BillingAccountId` of every FOCUS row: your OpenRouter account or
    /// organisation ID. Required when `output.tables` includes `focus`.
    pub billing_account_id: Option<String>,
    /// `BillingAccountName` of every FOCUS row; null when unset.
    pub billing_account_name: Option<String>,
}

/// `[reconcile]`: the daemon's check of the export against the Activity API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawReconcile {
    /// Six-field cron expression (UTC) on which the daemon compares the
    /// export with OpenRouter's daily totals over the last 30 completed days
    /// and exposes the result in `/metrics`; needs a management key. Unset: never.
    pub cron: Option<String>,
}

/// `[schedule]`: the daemon's timetable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSchedule {
    /// Six-field cron expression, seconds first, evaluated in UTC.
    pub cron: Option<String>,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMetrics {
    /// Address to serve `/metrics` and `/healthz` on, e.g. `127.0.0.1:9464`.
    pub listen: Option<String>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            api: RawApi::default(),
            input: RawInput::default(),
            fetch: RawFetch::default(),
            output: RawOutput::default(),
            state: RawState::default(),
            export: RawExport::default(),
            focus: RawFocus::default(),
            reconcile: RawReconcile::default(),
            schedule: RawSchedule::default(),
            metrics: RawMetrics::default(),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}
