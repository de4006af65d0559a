//! One request and what its answer came to: the status, the body and the
//! rate-limit headers read into an [`Answer`], with the pacer told; a request
//! that got no answer, as transient or as a fault no retry heals.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};

use super::retry::{self, announced_wait, is_transient_status};
use super::step::Answer;
use super::transport;
use super::{Client, EXCERPT_CHARS, Endpoint, Reason};
use crate::limiter::{Allowance, Ticket};

/// Why a complete 200 body could not be used.
pub(super) struct Unparsed {
    /// A cut or garbled body: worth another try.
    pub transient: bool,
    pub reason: Reason,
    pub message: String,
}

impl Client {
    /// Sends one request and classifies the answer, telling the pacer of
    /// every answer but a 429, whose pause the caller decides.
    pub(super) async fn exchange<T>(
        &self,
        endpoint: Endpoint,
        id: &str,
        ticket: Ticket,
        parse: &impl Fn(&str) -> Result<T, Unparsed>,
    ) -> Answer<T> {
        let response = match self.http.get(self.url(endpoint, id)).send().await {
            Ok(response) => response,
            Err(e) => {
                self.counters.answered(None);
                if let Some(fault) = transport::unhealable(&e, e.is_timeout(), &self.route) {
                    return Answer::Unreachable(fault);
                }
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
            return Answer::RateLimited {
                announced: announced_wait(response.headers(), SystemTime::now()),
                episodes: self.counters.rate_limited.load(Ordering::Relaxed),
            };
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
        classify(code, &body, wait, parse)
    }

    fn url(&self, endpoint: Endpoint, id: &str) -> Url {
        let mut url = match endpoint {
            Endpoint::Metadata => self.generation_url.clone(),
            Endpoint::Content => self.content_url.clone(),
        };
        url.query_pairs_mut().append_pair("id", id);
        url
    }
}

/// What a whole answer with status `code` came to; `wait` is the one a 503
/// announced.
fn classify<T>(
    code: u16,
    body: &str,
    wait: Option<Duration>,
    parse: &impl Fn(&str) -> Result<T, Unparsed>,
) -> Answer<T> {
    if is_transient_status(code) {
        return Answer::Transient {
            status: Some(code),
            message: excerpt(body),
            wait,
        };
    }
    match code {
        200 => match parse(body) {
            Ok(record) => Answer::Record(record),
            Err(e) if e.transient => Answer::Transient {
                status: Some(200),
                message: e.message,
                wait: None,
            },
            Err(e) => Answer::Unusable(e.reason, e.message),
        },
        404 => Answer::NotFound,
        401 | 402 => Answer::Refused(code, excerpt(body)),
        _ => Answer::Rejected(code, excerpt(body)),
    }
}

/// The budget an answer's `X-RateLimit-*` headers announce, for the pacer.
fn allowance(headers: &HeaderMap, now: SystemTime) -> Option<Allowance> {
    let announced = retry::allowance(headers, now)?;
    Some(Allowance {
        remaining: announced.remaining,
        limit: announced.limit,
        reset: announced
            .reset
            .map(|wait| tokio::time::Instant::now() + wait),
        reset_rounded: announced.reset_rounded,
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

    /// The metadata endpoint's parse, as `Client::fetch` wraps it.
    fn parse(body: &str) -> Result<u8, Unparsed> {
        crate::record::parse_generation(body, "gen-1", "run", 0)
            .map(|_| 7)
            .map_err(|e| Unparsed {
                transient: e.is_transient(),
                reason: Reason::InvalidResponse,
                message: e.to_string(),
            })
    }

    #[test]
    fn a_cut_body_is_transient_and_an_unusable_one_final() {
        let answer = |code, body| classify(code, body, None, &parse);
        assert!(matches!(
            answer(200, r#"{"data":{"id":"gen-1"}}"#),
            Answer::Record(7)
        ));
        assert!(matches!(
            answer(200, r#"{"data":{"id":"gen"#),
            Answer::Transient {
                status: Some(200),
                ..
            }
        ));
        assert!(matches!(
            answer(200, r#"{"data":{"id":"gen-2"}}"#),
            Answer::Unusable(Reason::InvalidResponse, _)
        ));
        let wait = Some(Duration::from_secs(4));
        assert!(matches!(
            classify(503, "busy", wait, &parse),
            Answer::Transient { status: Some(503), wait: w, .. } if w == wait
        ));
        assert!(matches!(answer(404, ""), Answer::NotFound));
        assert!(matches!(answer(402, "{}"), Answer::Refused(402, _)));
        assert!(matches!(answer(403, "no"), Answer::Rejected(403, _)));
        assert!(matches!(answer(501, "no"), Answer::Rejected(501, _)));
    }
}
