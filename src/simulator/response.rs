//! Answers on the wire: the body type, error texts, 429 headers and deliberately broken 200s.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use tracing::warn;

use super::faults::Cut;
use super::gate::Limited;
use super::json::Obj;

pub(crate) type SimResponse = Response<SimBody>;

const JSON: &str = "application/json";

/// Why the simulator broke a connection on purpose; hyper closes it on either.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SimError {
    #[error("connection reset by the simulator")]
    Reset,
    #[error("response body cut by the simulator")]
    BodyCut,
}

/// A whole body, or one that sends its bytes and then fails so hyper cuts the connection.
pub(crate) enum SimBody {
    Full(Option<Bytes>),
    Cut { data: Option<Bytes>, flushed: bool },
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = SimError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, SimError>>> {
        match self.get_mut() {
            SimBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            SimBody::Cut { data, flushed } => {
                if let Some(d) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                if !*flushed {
                    // Yield once so hyper flushes the partial body before the error aborts it.
                    *flushed = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(SimError::BodyCut)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            SimBody::Cut { .. } => SizeHint::default(),
        }
    }
}

fn build(
    status: u16,
    content_type: &'static str,
    headers: &[(&'static str, String)],
    body: SimBody,
) -> SimResponse {
    let mut builder = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type);
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder.body(body).unwrap_or_else(|err| {
        warn!(%err, status, "could not build a simulated answer");
        let mut fallback = Response::new(SimBody::Full(None));
        *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

/// A complete JSON answer.
pub(crate) fn json(status: u16, body: Bytes) -> SimResponse {
    build(status, JSON, &[], SimBody::Full(Some(body)))
}

/// An OpenRouter-style error: `{"error":{"code":…,"message":…,"metadata":null}}`.
pub(crate) fn error(code: u16, message: &str) -> SimResponse {
    json(code, Bytes::from(error_body(code, message)))
}

fn error_body(code: u16, message: &str) -> String {
    let mut out = String::with_capacity(96);
    let mut outer = Obj::open(&mut out);
    let mut inner = Obj::open(outer.key("error"));
    inner.opt_i64("code", Some(i64::from(code)));
    inner.str("message", message);
    inner.raw("metadata", "null");
    inner.close();
    if code == 402 {
        outer.str("user_id", "user_2simulated");
    }
    outer.close();
    out
}

/// The message OpenRouter gives with each status the simulator sends.
pub(crate) fn message(code: u16) -> &'static str {
    match code {
        400 => "Missing required parameter: id",
        401 => "No auth credentials found",
        402 => "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
        403 => "Only organization admins can view generation content",
        404 => "Generation not found",
        405 => "Method not allowed",
        429 => "Rate limit exceeded",
        502 => "Provider returned error",
        503 => "Service temporarily unavailable",
        529 => "Provider is overloaded",
        _ => "Internal Server Error",
    }
}

/// A 524 as an edge proxy sends it: HTML, not JSON.
pub(crate) fn edge_timeout() -> SimResponse {
    const PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en-US\"><head><title>openrouter.ai | 524: \
        A timeout occurred</title></head>\n<body><h1>A timeout occurred</h1>\
        <p>Error code 524</p><p>Cloudflare Ray ID: 8f3c2a1b9d7e6f54</p></body></html>\n";
    build(
        524,
        "text/html; charset=UTF-8",
        &[],
        SimBody::Full(Some(Bytes::from_static(PAGE.as_bytes()))),
    )
}

/// A 429 with the timing headers of the configured style.
pub(crate) fn rate_limited(limited: &Limited) -> SimResponse {
    let body = Bytes::from(error_body(429, message(429)));
    build(429, JSON, &limited.headers(), SimBody::Full(Some(body)))
}

/// Adds each header `answer` does not carry yet, so a 429's own timing headers win.
pub(crate) fn add_missing_headers(answer: &mut SimResponse, headers: &[(&'static str, String)]) {
    let map = answer.headers_mut();
    for (name, value) in headers {
        match HeaderValue::from_str(value) {
            Ok(value) => {
                map.entry(*name).or_insert(value);
            }
            Err(err) => warn!(%err, name, "could not add a simulated header"),
        }
    }
}

/// A 200 broken the way `cut` says; at least one byte is always withheld.
pub(crate) fn truncated(body: Bytes, cut: Cut) -> SimResponse {
    let half = body.slice(..body.len() / 2);
    match cut {
        Cut::ShortBody => {
            let promised = [(CONTENT_LENGTH.as_str(), body.len().to_string())];
            build(
                200,
                JSON,
                &promised,
                SimBody::Cut {
                    data: Some(half),
                    flushed: false,
                },
            )
        }
        Cut::BrokenJson => build(200, JSON, &[], SimBody::Full(Some(half))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_openrouter_json() {
        for code in [400, 401, 402, 403, 404, 429, 500, 502, 503, 529] {
            let value: serde_json::Value =
                serde_json::from_str(&error_body(code, message(code))).expect("JSON");
            assert_eq!(value["error"]["code"], code);
            assert!(value["error"]["message"].is_string());
            assert!(value["error"]["metadata"].is_null());
        }
    }

    #[test]
    fn truncated_answers_withhold_half() {
        let body = Bytes::from_static(b"{\"data\":{\"id\":\"x\"}}");
        let short = truncated(body.clone(), Cut::ShortBody);
        assert_eq!(
            short.headers()[CONTENT_LENGTH],
            body.len().to_string().as_str()
        );
        let broken = truncated(body.clone(), Cut::BrokenJson);
        assert_eq!(
            broken.body().size_hint().exact(),
            Some(body.len() as u64 / 2)
        );
    }

    #[test]
    fn added_headers_never_replace_existing_ones() {
        let mut answer = json(200, Bytes::from_static(b"{}"));
        answer
            .headers_mut()
            .insert("x-ratelimit-reset", HeaderValue::from_static("7"));
        let extra = [
            ("x-ratelimit-limit", "10".to_owned()),
            ("x-ratelimit-reset", "99".to_owned()),
        ];
        add_missing_headers(&mut answer, &extra);
        assert_eq!(answer.headers()["x-ratelimit-limit"], "10");
        assert_eq!(answer.headers()["x-ratelimit-reset"], "7");
        assert_eq!(
            answer.headers().get_all("x-ratelimit-reset").iter().count(),
            1
        );
    }
}
