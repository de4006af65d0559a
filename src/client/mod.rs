//! The OpenRouter client: one `GET /generation` per ID (and, with content
//! export on, one `GET /generation/content`), in one retry loop that both
//! endpoints share, so they spend one request budget. The loop sends, sleeps
//! and counts; `exchange` reads one answer, and `step` holds every retry rule
//! (429 pause, transient backoff, the 404 window, fatal 401/402, a network
//! that cannot heal) as a pure decision; `transport` tells which network
//! faults cannot heal.

mod activity;
mod counters;
mod exchange;
mod outcome;
mod retry;
mod step;
mod transport;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use reqwest::header::{self, HeaderMap, HeaderValue};
use tokio::sync::SemaphorePermit;

pub use activity::{ActivityError, ActivityItem, ActivityQuery, fetch_activity};
pub use counters::{RequestCounters, RequestTotals};
pub use outcome::{Failure, Fetched};
pub use retry::{NotFoundWindow, announced_wait, created_from_id, is_transient_status};

use crate::config::{ApiSettings, FetchSettings};
use crate::limiter::{Pacer, Ticket};
use crate::record::{Content, ParseError, Reason, parse_content, parse_generation};
use crate::stop::Stop;
use exchange::Unparsed;
use step::{Answer, RetryState, Step, next_step};
use transport::Route;

/// Longest body excerpt kept in a failure message.
pub const EXCERPT_CHARS: usize = 512;

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
    /// The proxy and CA store the requests use, to name in a fault.
    route: Route,
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
    /// Most likely none of the named files held a certificate.
    #[error(
        "failed to build the HTTP client with the CAs of {roots} alone (they replace the system store; check that they name readable PEM certificates)"
    )]
    BuildWithRoots {
        roots: String,
        #[source]
        source: reqwest::Error,
    },
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
        // Read from the same environment as the client below.
        let route = Route::from_env(&api.base_url);
        install_crypto();
        let http = reqwest::Client::builder()
            .user_agent(concat!("genledger/", env!("CARGO_PKG_VERSION")))
            .default_headers(default_headers(api, key.expose())?)
            .timeout(fetch.timeout)
            .connect_timeout(fetch.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(fetch.concurrency)
            .tcp_nodelay(true)
            // Every retry is ours (`fetch_from`), so each request passes the
            // pacer and is counted. The client's own retry, for HTTP/2
            // refusals, would also copy every request before sending it.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .build()
            .map_err(|source| match &route.roots {
                Some(roots) => ClientError::BuildWithRoots {
                    roots: roots.clone(),
                    source,
                },
                None => ClientError::Build(source),
            })?;
        let (generation_url, content_url) = endpoint_urls(&api.base_url)?;
        let inflight = tokio::sync::Semaphore::new(fetch.concurrency);
        Ok(Client {
            http,
            generation_url,
            content_url,
            route,
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

    /// The retry loop both endpoints share: it sends, sleeps and counts,
    /// and [`next_step`] decides. `started`: when the generation began, if
    /// known; `first_404`: when an earlier run first got a 404.
    async fn fetch_from<T>(
        &self,
        endpoint: Endpoint,
        id: &str,
        started: Option<SystemTime>,
        first_404: Option<SystemTime>,
        parse: impl Fn(&str) -> Result<T, Unparsed>,
    ) -> Fetched<T> {
        let mut state = RetryState::new(endpoint, started, first_404);
        loop {
            let Some((permit, ticket)) = self.admit().await else {
                return Fetched::Pending(state.stopped());
            };
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let answer = self.exchange(endpoint, id, ticket, &parse).await;
            let now = SystemTime::now();
            state.count(&answer, now);
            if let Answer::Transient {
                status, message, ..
            } = &answer
            {
                tracing::debug!(%id, endpoint = endpoint.name(), attempt = state.attempts, ?status, %message, "transient failure");
            }
            let step = next_step(answer, &state, &self.fetch, now);
            if let Step::Retry { wait, pause: true } = step {
                // Before the connection slot is freed, so no request slips
                // out ahead of the pause.
                tracing::debug!(%id, wait_ms = wait.as_millis() as u64, "429: pausing all requests");
                self.pacer.on_rate_limited(ticket, wait);
            }
            if let Step::Stop { reason, .. } = &step {
                // Also before the slot is freed: a fetch that takes it then
                // sees the stop, so no request starts after it.
                self.stop.trigger(reason.clone());
            }
            drop(permit);
            let wait = match step {
                Step::Record(record) => return Fetched::Record(record),
                Step::Fail(failure) => return Fetched::Failed(failure),
                Step::Pending(failure) => return Fetched::Pending(failure),
                Step::Stop { pending, .. } => return Fetched::Pending(pending),
                // The pacer holds the next request until the pause is over.
                Step::Retry { pause: true, .. } => continue,
                Step::Retry { wait, .. } => wait,
            };
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = self.stop.stopped() => return Fetched::Pending(state.stopped()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// A connection slot, then a rate token, so a token is never spent
    /// waiting for a slot; `None` once the run stops.
    async fn admit(&self) -> Option<(SemaphorePermit<'_>, Ticket)> {
        let permit = tokio::select! {
            biased;
            _ = self.stop.stopped() => return None,
            permit = self.inflight.acquire() => permit,
        };
        let ticket = tokio::select! {
            biased;
            _ = self.stop.stopped() => return None,
            ticket = self.pacer.acquire() => ticket,
        };
        if self.stop.is_stopped() {
            return None;
        }
        Some((permit.ok()?, ticket))
    }
}

/// The headers every request carries: the key, and the optional attribution.
fn default_headers(api: &ApiSettings, key: &str) -> Result<HeaderMap, ClientError> {
    let mut headers = HeaderMap::new();
    let mut auth = HeaderValue::from_str(&format!("Bearer {key}"))
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
            let value = HeaderValue::from_str(value).map_err(|_| ClientError::BadHeader(name))?;
            headers.insert(name, value);
        }
    }
    Ok(headers)
}

/// The metadata and content endpoints under `base`.
fn endpoint_urls(base: &Url) -> Result<(Url, Url), ClientError> {
    let mut generation_url = base.clone();
    generation_url
        .path_segments_mut()
        .map_err(|_| ClientError::BadHeader("base_url"))?
        .push("generation");
    let mut content_url = generation_url.clone();
    content_url
        .path_segments_mut()
        .map_err(|_| ClientError::BadHeader("base_url"))?
        .push("content");
    Ok((generation_url, content_url))
}

/// Installs ring as the process's TLS crypto provider (once; later calls are no-ops).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

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
