//! [`Settings`]: the validated configuration. Rates are non-zero, the base URL is
//! parsed and allowed, paths are resolved and the key is masked.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::raw::RawFetch;
use super::{Compression, ConfigError, Format, Input, RawConfig, Schedule, paths};
use crate::layout;
use crate::objstore::{self, Location, RemoteUrl};
use crate::record::FocusAccount;
use crate::schema::MoneyMode;
use crate::shard::Shard;

/// The OpenRouter API key. It prints as `****` everywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> ApiKey {
        ApiKey(key)
    }

    /// The secret itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Ends without a slash: `https://openrouter.ai/api/v1`.
    pub base_url: Url,
    pub key: Option<ApiKey>,
    pub referer: Option<String>,
    pub title: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub concurrency: usize,
    pub requests_per_second: f64,
    pub burst: NonZeroU32,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub not_found_grace: Duration,
    pub max_retry_after: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone)]
pub struct OutputSettings {
    /// Where files are written: `output.dir` itself, or for a remote output
    /// the local spool beside the ledger, where each file is written whole
    /// before it is uploaded (see [`layout::spool_dir`]).
    pub dir: PathBuf,
    /// The bucket and prefix, when `output.dir` is `s3://`, `gs://` or `az://`.
    pub remote: Option<RemoteUrl>,
    pub format: Format,
    pub max_rows_per_file: u64,
    pub money: MoneyMode,
    pub compression: Compression,
    /// The `focus` table's billing account, when the table is on.
    pub focus: Option<Arc<FocusAccount>>,
}

/// Everything a run needs to know, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: ApiSettings,
    pub inputs: Vec<Input>,
    pub fetch: FetchSettings,
    pub output: OutputSettings,
    pub state_path: PathBuf,
    /// How long settled IDs are remembered (`state.retention`); `None`: for ever.
    pub retention: Option<Duration>,
    /// Also export each generation's stored prompt and completion.
    pub content: bool,
    /// The daemon's schedule (`schedule.cron`), parsed.
    pub schedule: Option<Schedule>,
    /// The management key for the Activity API (`reconcile`), masked.
    pub management_key: Option<ApiKey>,
    /// When the daemon reconciles (`reconcile.cron`), parsed.
    pub reconcile_schedule: Option<Schedule>,
    pub metrics_listen: Option<SocketAddr>,
    pub shutdown_timeout: Duration,
    /// The slice of IDs this process owns (the whole space unless `--shard`).
    pub shard: Shard,
}

impl Settings {
    /// Validates `raw`; `origin` names where a key's value came from, for messages.
    pub fn resolve(
        raw: &RawConfig,
        key: Option<ApiKey>,
        origin: impl Fn(&str) -> String,
    ) -> Result<Settings, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            key: key.into(),
            origin: origin(key),
            message,
        };
        let fetch = resolve_fetch(&raw.fetch).map_err(|(key, message)| invalid(key, message))?;
        let base_url = parse_base_url(&raw.api.base_url, raw.api.allow_insecure_http)
            .map_err(|message| invalid("api.base_url", message))?;
        let schedule = match &raw.schedule.cron {
            Some(expr) => {
                Some(Schedule::parse(expr).map_err(|message| invalid("schedule.cron", message))?)
            }
            None => None,
        };
        let reconcile_schedule = match &raw.reconcile.cron {
            Some(expr) => {
                Some(Schedule::parse(expr).map_err(|message| invalid("reconcile.cron", message))?)
            }
            None => None,
        };
        let metrics_listen = match &raw.metrics.listen {
            Some(addr) => Some(
                addr.parse()
                    .map_err(|e| invalid("metrics.listen", format!("`{addr}`: {e}")))?,
            ),
            None => None,
        };
        let (location, state_path) =
            resolve_location(raw).map_err(|(key, message)| invalid(key, message))?;
        Ok(Settings {
            api: ApiSettings {
                base_url,
                key,
                referer: raw.api.referer.clone(),
                title: raw.api.title.clone(),
            },
            inputs: raw.input.paths.iter().map(|p| Input::from_arg(p)).collect(),
            fetch,
            output: resolve_output(raw, location, &state_path)
                .map_err(|(key, message)| invalid(key, message))?,
            state_path,
            retention: raw.state.retention,
            content: raw.export.content,
            schedule,
            management_key: None,
            reconcile_schedule,
            metrics_listen,
            shutdown_timeout: raw.shutdown_timeout,
            shard: Shard::default(),
        })
    }

    /// Checks, before anything is created, that `output.dir` is a directory
    /// or can be created as one and that `state.path` is a file or can be
    /// created as one. Resolving the layered configuration runs it (so
    /// `check-config`, `export` and `daemon` refuse early, naming where the
    /// path came from); a run calls it again just before it creates anything.
    pub fn check_paths(&self) -> Result<(), ConfigError> {
        self.check_paths_from(|_| None)
    }

    /// [`Settings::check_paths`], naming each path's origin when known.
    pub(super) fn check_paths_from(
        &self,
        origin: impl Fn(&'static str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        // A remote output's spool sits beside the ledger: `state.path` covers it.
        let dir_problem = match self.output.remote {
            Some(_) => None,
            None => paths::dir_problem(&self.output.dir),
        };
        let checks = [
            ("output.dir", &self.output.dir, dir_problem),
            (
                "state.path",
                &self.state_path,
                paths::file_problem(&self.state_path),
            ),
        ];
        match checks.into_iter().find(|(_, _, problem)| problem.is_some()) {
            Some((key, path, Some(problem))) => Err(ConfigError::Path {
                key,
                path: path.clone(),
                origin: origin(key),
                problem,
            }),
            _ => Ok(()),
        }
    }

    /// Narrows the settings to one shard: its share of the request rate, and
    /// its own ledger (`genledger-2of3.db` beside the configured path), so
    /// shards never share state even when they share a volume.
    pub fn for_shard(mut self, shard: Shard) -> Settings {
        if shard.is_whole() {
            return self;
        }
        self.fetch.requests_per_second /= f64::from(shard.count);
        let stem = self
            .state_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "genledger".into());
        let name = match self.state_path.extension() {
            Some(ext) => format!("{stem}-{}.{}", shard.label(), ext.to_string_lossy()),
            None => format!("{stem}-{}", shard.label()),
        };
        self.state_path.set_file_name(name);
        if self.output.remote.is_some() {
            self.output.dir = layout::spool_dir(&self.state_path);
        }
        self.shard = shard;
        self
    }
}

/// Where `output.dir` points, and the ledger's path: `state.path`, or by
/// default under a local output. A remote output needs `state.path`: the
/// ledger is SQLite and stays on a local disk.
fn resolve_location(raw: &RawConfig) -> Result<(Location, PathBuf), (&'static str, String)> {
    let location = match raw.output.dir.to_str() {
        Some(text) => objstore::parse_location(text).map_err(|m| ("output.dir", m))?,
        None => Location::Local(raw.output.dir.clone()),
    };
    let state = raw.state.path.as_ref().and_then(|p| p.to_str());
    if let Some(Ok(Location::Remote(url))) = state.map(objstore::parse_location) {
        return Err((
            "state.path",
            format!(
                "`{url}` is in object storage; the ledger is a SQLite file and must be on a local disk"
            ),
        ));
    }
    let state_path = match (&location, &raw.state.path) {
        (_, Some(path)) => path.clone(),
        (Location::Local(dir), None) => layout::default_ledger_path(dir),
        (Location::Remote(url), None) => {
            return Err((
                "output.dir",
                format!(
                    "`{url}` is in object storage, but the ledger must stay on a local disk: \
                     set `state.path` (or `GENLEDGER_STATE__PATH`) to a local file, \
                     e.g. `/var/lib/genledger/genledger.db`"
                ),
            ));
        }
    };
    Ok((location, state_path))
}

/// Validates the `output` section.
fn resolve_output(
    raw: &RawConfig,
    location: Location,
    state_path: &std::path::Path,
) -> Result<OutputSettings, (&'static str, String)> {
    if raw.output.max_rows_per_file == 0 {
        return Err(("output.max_rows_per_file", "must be at least 1".into()));
    }
    let (dir, remote) = match location {
        Location::Local(dir) => (dir, None),
        Location::Remote(url) => (layout::spool_dir(state_path), Some(url)),
    };
    Ok(OutputSettings {
        dir,
        remote,
        format: raw.output.format,
        max_rows_per_file: raw.output.max_rows_per_file,
        money: raw.output.money,
        compression: raw.output.compression,
        focus: resolve_focus(raw)?,
    })
}

/// The `focus` table's account when `output.tables` lists it; it needs
/// `focus.billing_account_id`, and it is derived from `generations`.
fn resolve_focus(raw: &RawConfig) -> Result<Option<Arc<FocusAccount>>, (&'static str, String)> {
    let mut focus = false;
    for table in &raw.output.tables {
        match table.as_str() {
            "generations" => {}
            "focus" => focus = true,
            other => {
                return Err((
                    "output.tables",
                    format!(
                        "`{other}` is not a table genledger writes: use `generations` and `focus` (content is `export.content`)"
                    ),
                ));
            }
        }
    }
    if !raw.output.tables.iter().any(|t| t == "generations") {
        return Err((
            "output.tables",
            "must include `generations`: the other tables are derived from it".into(),
        ));
    }
    if !focus {
        return Ok(None);
    }
    let id = raw.focus.billing_account_id.as_deref().map(str::trim);
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return Err((
            "focus.billing_account_id",
            "is required when the `focus` table is on (`output.tables` includes `focus`, or `--focus`): \
             set it to your OpenRouter account or organisation ID, which FOCUS calls BillingAccountId"
                .into(),
        ));
    };
    Ok(Some(Arc::new(FocusAccount {
        billing_account_id: id.to_owned(),
        billing_account_name: raw.focus.billing_account_name.clone(),
    })))
}

/// Validates the `fetch` section; an error names the key and the problem.
fn resolve_fetch(f: &RawFetch) -> Result<FetchSettings, (&'static str, String)> {
    if f.concurrency == 0 || f.concurrency > 4096 {
        return Err((
            "fetch.concurrency",
            format!("{} is not between 1 and 4096", f.concurrency),
        ));
    }
    if !(f.requests_per_second.is_finite() && f.requests_per_second > 0.0) {
        return Err((
            "fetch.requests_per_second",
            format!("{} is not a positive rate", f.requests_per_second),
        ));
    }
    let burst = NonZeroU32::new(f.burst).ok_or(("fetch.burst", "must be at least 1".into()))?;
    if f.max_attempts == 0 {
        return Err(("fetch.max_attempts", "must be at least 1".into()));
    }
    if f.timeout.is_zero() {
        return Err(("fetch.timeout", "must be longer than zero".into()));
    }
    if f.backoff_initial > f.backoff_max {
        return Err((
            "fetch.backoff_initial",
            "is longer than `fetch.backoff_max`".into(),
        ));
    }
    Ok(FetchSettings {
        concurrency: f.concurrency,
        requests_per_second: f.requests_per_second,
        burst,
        max_attempts: f.max_attempts,
        timeout: f.timeout,
        not_found_grace: f.not_found_grace,
        max_retry_after: f.max_retry_after,
        backoff_initial: f.backoff_initial,
        backoff_max: f.backoff_max,
    })
}

/// Plain HTTP would send the key in the clear, so it is only allowed to loopback
/// unless the user says otherwise.
fn parse_base_url(text: &str, allow_insecure_http: bool) -> Result<Url, String> {
    let url = Url::parse(text.trim_end_matches('/'))
        .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_insecure_http || is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "`{text}` is plain http to a non-loopback host; use https or set `api.allow_insecure_http = true`"
        )),
        other => Err(format!(
            "`{text}` has scheme `{other}`; only https (or http to loopback) works"
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_output_spools_beside_each_shards_own_ledger() {
        let mut raw = RawConfig::default();
        raw.output.dir = "s3://acme/usage/".into();
        raw.state.path = Some("/var/lib/genledger/genledger.db".into());
        let settings = Settings::resolve(&raw, None, |_| String::new()).unwrap();
        let url = settings.output.remote.clone().unwrap();
        assert_eq!(url.to_string(), "s3://acme/usage");
        assert_eq!(
            settings.output.dir,
            std::path::Path::new("/var/lib/genledger/genledger.db.spool")
        );
        let shard = Shard::parse_with("1/3", None).unwrap();
        let sharded = settings.for_shard(shard);
        assert_eq!(
            sharded.output.dir,
            std::path::Path::new("/var/lib/genledger/genledger-1of3.db.spool")
        );
        raw.output.dir = "file:///srv/out".into();
        raw.state.path = None;
        let local = Settings::resolve(&raw, None, |_| String::new()).unwrap();
        assert_eq!(local.output.dir, std::path::Path::new("/srv/out"));
        assert_eq!(
            local.state_path,
            std::path::Path::new("/srv/out/_state/genledger.db")
        );
    }

    #[test]
    fn key_never_prints() {
        let key = ApiKey::new("sk-or-v1-secret".into());
        assert_eq!(format!("{key} {key:?}"), "**** ****");
        let api = ApiSettings {
            base_url: Url::parse("https://x").unwrap(),
            key: Some(key),
            referer: None,
            title: None,
        };
        assert!(!format!("{api:?}").contains("secret"));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(parse_base_url("http://127.0.0.1:8080/api/v1/", false).is_ok());
        assert!(parse_base_url("http://localhost/api/v1", false).is_ok());
        assert!(parse_base_url("http://[::1]:1/api/v1", false).is_ok());
        assert!(parse_base_url("http://example.com/api/v1", false).is_err());
        assert!(parse_base_url("http://example.com/api/v1", true).is_ok());
        assert!(parse_base_url("ftp://example.com", true).is_err());
        assert_eq!(
            parse_base_url("https://openrouter.ai/api/v1/", false)
                .unwrap()
                .as_str(),
            "https://openrouter.ai/api/v1"
        );
    }

    #[test]
    fn zero_rates_are_refused_with_their_origin() {
        let mut raw = RawConfig::default();
        raw.fetch.requests_per_second = 0.0;
        let err = Settings::resolve(&raw, None, |k| format!("origin-of-{k}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fetch.requests_per_second")
                && err.contains("origin-of-fetch.requests_per_second"),
            "{err}"
        );
    }
}
