//! The OpenRouter client: one `GET /generation` per ID (and, with content
//! export on, one `GET /generation/content`), with every retry rule (429 pause,
//! transient backoff, the 404 window, fatal 401/402) in one loop that both
//! endpoints share, so they spend one request budget.

mod counters;
mod outcome;
mod retry;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};

pub use counters::{RequestCounters, RequestTotals};
pub use outcome::{Failure, Fetched};
pub use retry::{NotFoundWindow, announced_wait, created_from_id, is_transient_status};

use crate::config::{ApiSettings, FetchSettings};
use crate::limiter::{Allowance, Pacer, Ticket};
use crate::record::{Content, ParseError, Reason, parse_content, parse_generation};
use crate::stop::{Stop, StopReason};

/// Longest body excerpt kept in a failure message.
pub const EXCERPT_CHARS: usize = 512;

/// What one HTTP exchange came to.
enum Answer<T> {
    Record(T),
    RateLimited,
    NotFound,
    Refused(u16, String),
    Transient {
        status: Option<u16>,
        message: String,
        wait: Option<Duration>,
    },
    Rejected(u16, String),
    Unusable(Reason, String),
}

/// Why a complete 200 body could not be used.
struct Unparsed {
    /// A cut or garbled body: worth another try.
    transient: bool,
    reason: Reason,
    message: String,
}

/// The endpoint a fetch asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Metadata,
    Content,
}

impl Endpoint {
    /// The failures-file reason for this endpoint: content has its own
    /// reasons, so its failures never read as the metadata's.
    fn reason(self, metadata: Reason) -> Reason {
        match (self, metadata) {
            (Endpoint::Metadata, reason) => reason,
            (Endpoint::Content, Reason::NotFound) => Reason::ContentNotFound,
            (Endpoint::Content, Reason::RetriesExhausted) => Reason::ContentRetriesExhausted,
            (Endpoint::Content, Reason::Stopped) => Reason::ContentStopped,
            (Endpoint::Content, Reason::NotYetFound) => Reason::ContentNotYetFound,
            (Endpoint::Content, Reason::InvalidMoney | Reason::InvalidResponse) => {
                Reason::ContentInvalidResponse
            }
            (Endpoint::Content, _) => Reason::ContentHttpError,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Endpoint::Metadata => "metadata",
            Endpoint::Content => "content",
        }
    }
}

pub struct Client {
    http: reqwest::Client,
    generation_url: Url,
    content_url: Url,
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
            // Every retry is ours (`fetch_from`), so each request passes the
            // pacer and is counted. The client's own retry, for HTTP/2
            // refusals, would also copy every request before sending it.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .build()
            .map_err(ClientError::Build)?;
        let mut generation_url = api.base_url.clone();
        generation_url
            .path_segments_mut()
            .map_err(|_| ClientError::BadHeader("base_url"))?
            .push("generation");
        let mut content_url = generation_url.clone();
        content_url
            .path_segments_mut()
            .map_err(|_| ClientError::BadHeader("base_url"))?
            .push("content");
        let inflight = tokio::sync::Semaphore::new(fetch.concurrency);
        Ok(Client {
            http,
            generation_url,
            content_url,
            fetch: fetch.clone(),
            pacer,
            stop,
            counters,
            inflight,
            run_id,
        })
    }

    /// Fetches one ID's metadata to its end: a record, a failure, or
    /// pending. `first_404`: when an earlier run first got a 404 for it.
    pub async fn fetch(&self, id: &str, first_404: Option<SystemTime>) -> Fetched {
        let run_id = self.run_id.as_str();
        let started = created_from_id(id);
        self.fetch_from(Endpoint::Metadata, id, started, first_404, |body| {
            let now = chrono::Utc::now().timestamp_micros();
            parse_generation(body, id, run_id, now)
                .map(Box::new)
                .map_err(|e| Unparsed {
                    transient: e.is_transient(),
                    reason: match e {
                        ParseError::Money { .. } => Reason::InvalidMoney,
                        _ => Reason::InvalidResponse,
                    },
                    message: e.to_string(),
                })
        })
        .await
    }

    /// Fetches one ID's stored content to its end, under the same pacing,
    /// connection limit and retry rules as the metadata. `created_at` comes
    /// from the generation's metadata record (the content answer has none),
    /// and is the start its 404 window trusts.
    pub async fn fetch_content(&self, id: &str, created_at: Option<i64>) -> Fetched<Box<Content>> {
        let started = created_at
            .and_then(|micros| u64::try_from(micros).ok())
            .map(|micros| UNIX_EPOCH + Duration::from_micros(micros));
        self.fetch_from(Endpoint::Content, id, started, None, |body| {
            let now = chrono::Utc::now().timestamp_micros();
            parse_content(body, id, created_at, now)
                .map(Box::new)
                .map_err(|e| Unparsed {
                    transient: e.is_transient(),
                    reason: Reason::ContentInvalidResponse,
                    message: e.to_string(),
                })
        })
        .await
    }

    /// The retry loop both endpoints share. `started`: when the generation
    /// began, if known; `first_404`: when an earlier run first got a 404.
    async fn fetch_from<T>(
        &self,
        endpoint: Endpoint,
        id: &str,
        started: Option<SystemTime>,
        mut first_404: Option<SystemTime>,
        parse: impl Fn(&str) -> Result<T, Unparsed>,
    ) -> Fetched<T> {
        let mut attempts = 0u32;
        let mut transient = 0u32;
        let mut not_found = 0u32;
        let end = |reason: Reason, status: Option<u16>, attempts: u32, message: &str| {
            failure(endpoint.reason(reason), status, attempts, message)
        };
        let stopped = |attempts, first_404| {
            let message = "run stopped before this ID was done";
            let f = end(Reason::Stopped, None, attempts, message);
            Fetched::Pending(Failure { first_404, ..f })
        };
        loop {
            // The connection slot first, then the rate token, so a token is
            // never spent waiting for a slot.
            let permit = tokio::select! {
                biased;
                _ = self.stop.stopped() => return stopped(attempts, first_404),
                permit = self.inflight.acquire() => permit,
            };
            let ticket = tokio::select! {
                biased;
                _ = self.stop.stopped() => return stopped(attempts, first_404),
                ticket = self.pacer.acquire() => ticket,
            };
            if self.stop.is_stopped() || permit.is_err() {
                return stopped(attempts, first_404);
            }
            attempts += 1;
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let answer = self.exchange(endpoint, id, ticket, &parse).await;
            drop(permit);
            let delay = match answer {
                Answer::Record(record) => return Fetched::Record(record),
                Answer::RateLimited => continue,
                Answer::NotFound => {
                    not_found += 1;
                    let now = SystemTime::now();
                    let first = *first_404.get_or_insert(now);
                    let window = NotFoundWindow::new(started, first, self.fetch.not_found_grace);
                    match window.next_try(now) {
                        None => {
                            let message = format!(
                                "still 404 after {attempts} tries; the first 404 and the generation's start are older than the grace period"
                            );
                            let f = end(Reason::NotFound, Some(404), attempts, &message);
                            return Fetched::Failed(Failure { first_404, ..f });
                        }
                        Some(_) if not_found >= retry::NOT_FOUND_TRIES => {
                            let message = format!(
                                "404 on each of {not_found} tries in this run; left for a later run"
                            );
                            let f = end(Reason::NotYetFound, Some(404), attempts, &message);
                            return Fetched::Pending(Failure { first_404, ..f });
                        }
                        Some(delay) => delay,
                    }
                }
                Answer::Refused(status, message) => {
                    self.stop.trigger(StopReason::Refused { status, message });
                    let message = "the API refused the key or credits";
                    let f = end(Reason::Stopped, Some(status), attempts, message);
                    return Fetched::Pending(Failure { first_404, ..f });
                }
                Answer::Rejected(403, excerpt) if endpoint == Endpoint::Content => {
                    let f = failure(Reason::ContentForbidden, Some(403), attempts, &excerpt);
                    return Fetched::Failed(f);
                }
                Answer::Rejected(status, excerpt) => {
                    let f = end(Reason::HttpError, Some(status), attempts, &excerpt);
                    return Fetched::Failed(f);
                }
                Answer::Unusable(reason, message) => {
                    return Fetched::Failed(end(reason, Some(200), attempts, &message));
                }
                Answer::Transient {
                    status,
                    message,
                    wait,
                } => {
                    transient += 1;
                    tracing::debug!(%id, endpoint = endpoint.name(), attempt = attempts, ?status, %message, "transient failure");
                    if transient >= self.fetch.max_attempts {
                        let message = format!(
                            "gave up after {transient} transient failures; last: {message}"
                        );
                        let f = end(Reason::RetriesExhausted, status, attempts, &message);
                        return Fetched::Pending(Failure { first_404, ..f });
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
                _ = self.stop.stopped() => return stopped(attempts, first_404),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Sends one request and classifies the answer, telling the pacer.
    async fn exchange<T>(
        &self,
        endpoint: Endpoint,
        id: &str,
        ticket: Ticket,
        parse: &impl Fn(&str) -> Result<T, Unparsed>,
    ) -> Answer<T> {
        let mut url = match endpoint {
            Endpoint::Metadata => self.generation_url.clone(),
            Endpoint::Content => self.content_url.clone(),
        };
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
            self.rate_limited(id, ticket, response.headers());
            return Answer::RateLimited;
        }
        // Every other answer counts against the server's limit, errors too.
        self.pacer
            .on_answer(ticket, allowance(response.headers(), SystemTime::now()));
        let wait = (code == 503)
            .then(|| announced_wait(response.headers(), SystemTime::now()))
            .flatten();
        // The API answers UTF-8 JSON; reading bytes skips charset sniffing,
        // and a stray invalid byte still leaves the rest readable.
        let body = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                let message = format!("answer {code} cut short: {}", describe(&e));
                return Answer::Transient {
                    status: Some(code),
                    message,
                    wait: None,
                };
            }
        };
        let body = match std::str::from_utf8(&body) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&body),
        };
        if is_transient_status(code) {
            return Answer::Transient {
                status: Some(code),
                message: excerpt(&body),
                wait,
            };
        }
        match code {
            200 => match parse(&body) {
                Ok(record) => Answer::Record(record),
                Err(e) if e.transient => Answer::Transient {
                    status: Some(200),
                    message: e.message,
                    wait: None,
                },
                Err(e) => Answer::Unusable(e.reason, e.message),
            },
            404 => Answer::NotFound,
            401 | 402 => Answer::Refused(code, excerpt(&body)),
            _ => Answer::Rejected(code, excerpt(&body)),
        }
    }

    /// A 429: counts it and pauses every request (both endpoints) for the
    /// announced wait, or a backoff when none is announced.
    fn rate_limited(&self, id: &str, ticket: Ticket, headers: &HeaderMap) {
        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        let announced = announced_wait(headers, SystemTime::now());
        let wait = announced
            .unwrap_or_else(|| {
                let episodes = self.counters.rate_limited.load(Ordering::Relaxed).min(16) as u32;
                retry::full_jitter(retry::backoff_ceiling(
                    self.fetch.backoff_initial,
                    self.fetch.backoff_max,
                    episodes,
                ))
            })
            .min(self.fetch.max_retry_after);
        tracing::debug!(%id, wait_ms = wait.as_millis() as u64, "429: pausing all requests");
        self.pacer.on_rate_limited(ticket, wait);
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
        first_404: None,
    }
}

/// The budget an answer's `X-RateLimit-*` headers announce, for the pacer.
fn allowance(headers: &HeaderMap, now: SystemTime) -> Option<Allowance> {
    let (remaining, reset) = retry::allowance(headers, now)?;
    Some(Allowance {
        remaining,
        reset: reset.map(|wait| tokio::time::Instant::now() + wait),
    })
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

    #[test]
    fn content_failures_have_reasons_of_their_own() {
        let pairs = [
            (Reason::NotFound, "content_not_found"),
            (Reason::HttpError, "content_http_error"),
            (Reason::InvalidResponse, "content_invalid_response"),
            (Reason::RetriesExhausted, "content_retries_exhausted"),
            (Reason::Stopped, "content_stopped"),
            (Reason::NotYetFound, "content_not_yet_found"),
        ];
        for (metadata, content) in pairs {
            assert_eq!(Endpoint::Metadata.reason(metadata), metadata);
            assert!(!metadata.is_content());
            let mapped = Endpoint::Content.reason(metadata);
            assert_eq!(mapped.as_str(), content);
            assert!(mapped.is_content());
        }
        assert!(Reason::ContentForbidden.is_content());
        assert_eq!(Reason::ContentForbidden.as_str(), "content_forbidden");
    }
}
