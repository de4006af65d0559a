//! The OpenRouter client: one `GET /generation` per ID, with every retry rule
//! (429 pause, transient backoff, the 404 window, fatal 401/402) in one loop.

mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};

pub use retry::{announced_wait, created_from_id, is_transient_status};

use crate::config::{ApiSettings, FetchSettings};
use crate::limiter::{Pacer, Ticket};
use crate::record::{Generation, ParseError, parse_generation};
use crate::stop::{Stop, StopReason};

/// Longest body excerpt kept in a failure message.
pub const EXCERPT_CHARS: usize = 512;

/// Why an ID was not exported, as written in the failures file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    InvalidId,
    NotFound,
    HttpError,
    InvalidMoney,
    InvalidResponse,
    /// Pending: transient failures used up `fetch.max_attempts`.
    RetriesExhausted,
    /// Pending: the run stopped (401/402 or a signal) before the ID was done.
    Stopped,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidId => "invalid_id",
            Reason::NotFound => "not_found",
            Reason::HttpError => "http_error",
            Reason::InvalidMoney => "invalid_money",
            Reason::InvalidResponse => "invalid_response",
            Reason::RetriesExhausted => "retries_exhausted",
            Reason::Stopped => "stopped",
        }
    }
}

/// Why one ID ended unexported.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub message: String,
}

/// The end of one ID's fetch.
#[derive(Debug)]
pub enum Fetched {
    Record(Box<Generation>),
    /// Will not succeed by retrying.
    Failed(Failure),
    /// Not done; a later run tries again.
    Pending(Failure),
}

/// Request counters, shared with progress, the summary and `/metrics`.
#[derive(Debug)]
pub struct RequestCounters {
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub retries: AtomicU64,
    /// Answers by HTTP status (100 to 599); index 0 counts requests that got
    /// no answer (connect errors, resets, timeouts).
    by_status: Box<[AtomicU64]>,
}

impl Default for RequestCounters {
    fn default() -> RequestCounters {
        RequestCounters {
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            by_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTotals {
    pub requests: u64,
    pub rate_limited: u64,
    pub retries: u64,
}

impl RequestTotals {
    /// What was counted between `before` and `self`.
    pub fn since(&self, before: &RequestTotals) -> RequestTotals {
        RequestTotals {
            requests: self.requests - before.requests,
            rate_limited: self.rate_limited - before.rate_limited,
            retries: self.retries - before.retries,
        }
    }
}

impl RequestCounters {
    pub fn snapshot(&self) -> RequestTotals {
        RequestTotals {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    fn answered(&self, status: Option<u16>) {
        let slot = status.map_or(0, usize::from).min(self.by_status.len() - 1);
        self.by_status[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// `(status, count)` for every status seen; status `None` is no answer.
    pub fn by_status(&self) -> Vec<(Option<u16>, u64)> {
        self.by_status
            .iter()
            .enumerate()
            .filter_map(|(slot, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then_some(((slot > 0).then_some(slot as u16), n))
            })
            .collect()
    }
}

/// What one HTTP exchange came to.
enum Answer {
    Record(Box<Generation>),
    RateLimited,
    NotFound,
    Refused(u16, String),
    Transient {
        status: Option<u16>,
        message: String,
        wait: Option<Duration>,
    },
    Rejected(u16, String),
    Unusable(ParseError),
}

pub struct Client {
    http: reqwest::Client,
    generation_url: Url,
    fetch: FetchSettings,
    pacer: Arc<Pacer>,
    stop: Arc<Stop>,
    counters: Arc<RequestCounters>,
    /// Requests on the wire at once (`fetch.concurrency`); held only while a
    /// request is in flight, not while a fetch waits out a backoff.
    inflight: tokio::sync::Semaphore,
    run_id: String,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no API key: set OPENROUTER_API_KEY or `api.key_file`")]
    NoKey,
    #[error("header `{0}` has a value that cannot be sent")]
    BadHeader(&'static str),
    #[error("failed to build the HTTP client")]
    Build(#[source] reqwest::Error),
}

impl Client {
    pub fn try_new(
        api: &ApiSettings,
        fetch: &FetchSettings,
        pacer: Arc<Pacer>,
        stop: Arc<Stop>,
        counters: Arc<RequestCounters>,
        run_id: String,
    ) -> Result<Client, ClientError> {
        let key = api.key.as_ref().ok_or(ClientError::NoKey)?;
        install_crypto();
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
            .map_err(|_| ClientError::BadHeader("Authorization"))?;
        auth.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, auth);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let optional = [
            ("HTTP-Referer", &api.referer),
            ("X-OpenRouter-Title", &api.title),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                let value =
                    HeaderValue::from_str(value).map_err(|_| ClientError::BadHeader(name))?;
                headers.insert(name, value);
            }
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("genledger/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(fetch.timeout)
            .connect_timeout(fetch.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(fetch.concurrency)
            .tcp_nodelay(true)
            .build()
            .map_err(ClientError::Build)?;
        let mut generation_url = api.base_url.clone();
        generation_url
            .path_segments_mut()
            .map_err(|_| ClientError::BadHeader("base_url"))?
            .push("generation");
        let inflight = tokio::sync::Semaphore::new(fetch.concurrency);
        Ok(Client {
            http,
            generation_url,
            fetch: fetch.clone(),
            pacer,
            stop,
            counters,
            inflight,
            run_id,
        })
    }

    /// Fetches one ID to its end: a record, a failure, or pending.
    pub async fn fetch(&self, id: &str, first_seen: SystemTime) -> Fetched {
        let mut attempts = 0u32;
        let mut transient = 0u32;
        let mut not_found = 0u32;
        loop {
            let stopped = |attempts| {
                Fetched::Pending(failure(
                    Reason::Stopped,
                    None,
                    attempts,
                    "run stopped before this ID was done",
                ))
            };
            // The connection slot first, then the rate token, so a token is
            // never spent waiting for a slot.
            let permit = tokio::select! {
                biased;
                _ = self.stop.stopped() => return stopped(attempts),
                permit = self.inflight.acquire() => permit,
            };
            let ticket = tokio::select! {
                biased;
                _ = self.stop.stopped() => return stopped(attempts),
                ticket = self.pacer.acquire() => ticket,
            };
            if self.stop.is_stopped() || permit.is_err() {
                return stopped(attempts);
            }
            attempts += 1;
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let answer = self.exchange(id, ticket).await;
            drop(permit);
            let delay = match answer {
                Answer::Record(record) => return Fetched::Record(record),
                Answer::RateLimited => continue,
                Answer::NotFound => {
                    let created = created_from_id(id).unwrap_or(first_seen);
                    let age = SystemTime::now()
                        .duration_since(created)
                        .unwrap_or_default();
                    let Some(left) = self
                        .fetch
                        .not_found_grace
                        .checked_sub(age)
                        .filter(|d| !d.is_zero())
                    else {
                        let message = format!(
                            "still 404 after {attempts} tries; generation is older than the grace period"
                        );
                        return Fetched::Failed(failure(
                            Reason::NotFound,
                            Some(404),
                            attempts,
                            &message,
                        ));
                    };
                    not_found += 1;
                    let ceiling = retry::backoff_ceiling(
                        self.fetch.backoff_initial,
                        self.fetch.backoff_max,
                        not_found - 1,
                    );
                    // The last try lands just after the grace period ends.
                    retry::equal_jitter(ceiling).min(left + Duration::from_millis(1))
                }
                Answer::Refused(status, message) => {
                    self.stop.trigger(StopReason::Refused { status, message });
                    return Fetched::Pending(failure(
                        Reason::Stopped,
                        Some(status),
                        attempts,
                        "the API refused the key or credits",
                    ));
                }
                Answer::Rejected(status, excerpt) => {
                    return Fetched::Failed(failure(
                        Reason::HttpError,
                        Some(status),
                        attempts,
                        &excerpt,
                    ));
                }
                Answer::Unusable(error) => {
                    let reason = match error {
                        ParseError::Money { .. } => Reason::InvalidMoney,
                        _ => Reason::InvalidResponse,
                    };
                    return Fetched::Failed(failure(
                        reason,
                        Some(200),
                        attempts,
                        &error.to_string(),
                    ));
                }
                Answer::Transient {
                    status,
                    message,
                    wait,
                } => {
                    transient += 1;
                    tracing::debug!(%id, attempt = attempts, ?status, %message, "transient failure");
                    if transient >= self.fetch.max_attempts {
                        let message = format!(
                            "gave up after {transient} transient failures; last: {message}"
                        );
                        return Fetched::Pending(failure(
                            Reason::RetriesExhausted,
                            status,
                            attempts,
                            &message,
                        ));
                    }
                    let ceiling = retry::backoff_ceiling(
                        self.fetch.backoff_initial,
                        self.fetch.backoff_max,
                        transient - 1,
                    );
                    wait.map_or_else(
                        || retry::full_jitter(ceiling),
                        |w| w.min(self.fetch.max_retry_after),
                    )
                }
            };
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = self.stop.stopped() => return stopped(attempts),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Sends one request and classifies the answer, telling the pacer.
    async fn exchange(&self, id: &str, ticket: Ticket) -> Answer {
        let mut url = self.generation_url.clone();
        url.query_pairs_mut().append_pair("id", id);
        let response = match self.http.get(url).send().await {
            Ok(response) => response,
            Err(e) => {
                self.counters.answered(None);
                return Answer::Transient {
                    status: None,
                    message: describe(&e),
                    wait: None,
                };
            }
        };
        let status = response.status();
        let code = status.as_u16();
        self.counters.answered(Some(code));
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            let announced = announced_wait(response.headers(), SystemTime::now());
            let wait = announced
                .unwrap_or_else(|| {
                    let episodes =
                        self.counters.rate_limited.load(Ordering::Relaxed).min(16) as u32;
                    retry::full_jitter(retry::backoff_ceiling(
                        self.fetch.backoff_initial,
                        self.fetch.backoff_max,
                        episodes,
                    ))
                })
                .min(self.fetch.max_retry_after);
            tracing::debug!(%id, wait_ms = wait.as_millis() as u64, "429: pausing all requests");
            self.pacer.on_rate_limited(ticket, wait);
            return Answer::RateLimited;
        }
        let wait = (code == 503)
            .then(|| announced_wait(response.headers(), SystemTime::now()))
            .flatten();
        let body = match response.text().await {
            Ok(body) => body,
            Err(e) => {
                let message = format!("answer {code} cut short: {}", describe(&e));
                return Answer::Transient {
                    status: Some(code),
                    message,
                    wait: None,
                };
            }
        };
        if is_transient_status(code) {
            return Answer::Transient {
                status: Some(code),
                message: excerpt(&body),
                wait,
            };
        }
        self.pacer.on_success();
        match code {
            200 => {
                let now = chrono::Utc::now().timestamp_micros();
                match parse_generation(&body, id, &self.run_id, now) {
                    Ok(record) => Answer::Record(Box::new(record)),
                    Err(e) if e.is_transient() => Answer::Transient {
                        status: Some(200),
                        message: e.to_string(),
                        wait: None,
                    },
                    Err(e) => Answer::Unusable(e),
                }
            }
            404 => Answer::NotFound,
            401 | 402 => Answer::Refused(code, excerpt(&body)),
            _ => Answer::Rejected(code, excerpt(&body)),
        }
    }
}

/// Installs ring as the process's TLS crypto provider (once; later calls are no-ops).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn failure(reason: Reason, http_status: Option<u16>, attempts: u32, message: &str) -> Failure {
    Failure {
        reason,
        http_status,
        attempts,
        message: message.to_owned(),
    }
}

/// The error message of an OpenRouter error body, or the body's start.
fn excerpt(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: ErrorDetail,
    }
    #[derive(serde::Deserialize)]
    struct ErrorDetail {
        message: String,
    }
    let text = match serde_json::from_str::<ErrorBody>(body) {
        Ok(parsed) => parsed.error.message,
        Err(_) => body.trim().to_owned(),
    };
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

/// A transport error in words, without the URL's query (never secret, but noisy).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "body cut short"
    } else {
        "connection failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(err) = source {
        cause = err.to_string();
        source = err.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_prefer_the_api_message() {
        assert_eq!(
            excerpt(r#"{"error":{"code":403,"message":"Forbidden here","metadata":null}}"#),
            "Forbidden here"
        );
        assert_eq!(
            excerpt("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        let long = "é".repeat(2000);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS);
    }
}
