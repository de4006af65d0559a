//! The HTTP side: accept loop, connections, routing and the flow of one request.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::activity::{self, Caller};
use super::dice::request_dice;
use super::faults::{self, Endpoint, Faults, Outcome};
use super::gate::Moment;
use super::record::{content_with_prompt, generation};
use super::response::{self, SimError, SimResponse};
use super::stats::{Counters, Stats};

/// How long shutdown lets in-flight answers finish before cutting connections.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// State every connection shares.
pub(crate) struct Shared {
    pub(crate) faults: Faults,
    pub(crate) counters: Counters,
    /// IDs the account made, for `/api/v1/activity` (`activity_ids`).
    pub(crate) account: BTreeSet<String>,
}

impl Shared {
    /// The counters, plus the rate limit in force right now.
    pub(crate) fn stats(&self) -> Stats {
        let now = Instant::now();
        let since_first = now.saturating_duration_since(self.counters.first_arrival(now));
        Stats {
            effective_rate: self.faults.config().effective_rate(since_first),
            ..self.counters.snapshot()
        }
    }
}

/// Accepts connections until `shutdown` flips (or its sender is dropped), then drains them.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared), shutdown.clone()));
                }
                Err(err) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(%err, "simulator failed to accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        debug!(
            open = connections.len(),
            "simulator cutting connections still open after the drain timeout"
        );
    }
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Answers are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(err) = result {
        debug!(%err, "simulator connection closed with an error");
    }
}

enum Route {
    Endpoint(Endpoint),
    Activity,
    Stats,
    Unknown,
}

fn route(path: &str) -> Route {
    if path.ends_with("/api/v1/generation") {
        Route::Endpoint(Endpoint::Metadata)
    } else if path.ends_with("/api/v1/generation/content") {
        Route::Endpoint(Endpoint::Content)
    } else if path.ends_with("/api/v1/activity") {
        Route::Activity
    } else if path == "/_sim/stats" {
        Route::Stats
    } else {
        Route::Unknown
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<SimResponse, SimError> {
    let endpoint = match route(req.uri().path()) {
        Route::Endpoint(endpoint) => endpoint,
        Route::Stats => return Ok(stats_answer(&shared)),
        Route::Activity => return Ok(activity_answer(&shared, &req)),
        Route::Unknown => return Ok(response::error(404, "Not Found")),
    };
    let counters = &shared.counters;
    let arrived = Instant::now();
    let seq = counters.arrive(endpoint == Endpoint::Metadata, arrived);
    let first = counters.first_arrival(arrived);
    let mut dice = request_dice(shared.faults.config().seed, seq);
    let delay = shared.faults.latency(&mut dice);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let at = Moment::new(Instant::now(), SystemTime::now(), first);
    let mut answer = if req.method() == Method::GET {
        let id = query_id(req.uri().query());
        let request = faults::Request {
            seq,
            endpoint,
            id: id.as_deref(),
            authorization: req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()),
        };
        let outcome = shared.faults.decide(&request, &mut dice, at);
        let id = id.as_deref().unwrap_or_default();
        render(&shared, seq, endpoint, id, outcome)?
    } else {
        response::error(405, response::message(405))
    };
    let status = answer.status().as_u16();
    if let Some(quota) = shared.faults.quota(at) {
        response::add_missing_headers(&mut answer, &quota.headers(status == 429));
    }
    counters.answered(status, at.now);
    Ok(answer)
}

fn render(
    shared: &Shared,
    seq: u64,
    endpoint: Endpoint,
    id: &str,
    outcome: Outcome,
) -> Result<SimResponse, SimError> {
    let counters = &shared.counters;
    let prompt_bytes = shared.faults.config().content_prompt_bytes;
    let answer = match outcome {
        Outcome::Reset => {
            counters.reset();
            debug!(seq, id, "simulator dropping the connection");
            return Err(SimError::Reset);
        }
        Outcome::Unauthorized => response::error(401, response::message(401)),
        Outcome::PaymentRequired => response::error(402, response::message(402)),
        Outcome::MissingId => response::error(400, response::message(400)),
        Outcome::RateLimited(limited) => {
            counters.rate_limited(limited.during_pause, limited.late);
            debug!(
                seq,
                id,
                during_pause = limited.during_pause,
                late = limited.late,
                "simulator answering 429"
            );
            response::rate_limited(&limited)
        }
        Outcome::ServerError(524) => response::edge_timeout(),
        Outcome::ServerError(code) => response::error(code, response::message(code)),
        Outcome::NotFound => response::error(404, response::message(404)),
        Outcome::Forbidden => response::error(403, response::message(403)),
        Outcome::Truncated(cut) => {
            counters.truncated();
            debug!(seq, id, ?cut, "simulator truncating the answer");
            response::truncated(answer_body(endpoint, id, prompt_bytes), cut)
        }
        Outcome::Ok => {
            counters.served_ok((endpoint == Endpoint::Metadata).then_some(id));
            response::json(200, answer_body(endpoint, id, prompt_bytes))
        }
    };
    Ok(answer)
}

/// `{"data": …}` for the endpoint, built in one buffer; content with its
/// prompt of `prompt_bytes` when set.
fn answer_body(endpoint: Endpoint, id: &str, prompt_bytes: Option<usize>) -> Bytes {
    let mut out = String::with_capacity(1_800 + prompt_bytes.unwrap_or(0));
    out.push_str("{\"data\":");
    match endpoint {
        Endpoint::Metadata => generation(id).write_json(&mut out),
        Endpoint::Content => content_with_prompt(id, prompt_bytes).write_json(&mut out),
    }
    out.push('}');
    Bytes::from(out)
}

/// The account's daily totals, for a management key only.
fn activity_answer(shared: &Shared, req: &Request<Incoming>) -> SimResponse {
    let config = shared.faults.config();
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|k| !k.is_empty());
    let caller = match bearer {
        Some(k) if config.management_key.as_deref() == Some(k) => Caller::Management,
        Some(k) if config.api_key.as_deref().is_none_or(|key| key == k) => Caller::Ordinary,
        _ => Caller::Unknown,
    };
    let mut ids = shared.account.clone();
    ids.extend(shared.counters.served_ids());
    activity::answer(caller, req.uri().query(), &ids, config.api_key.as_deref())
}

fn stats_answer(shared: &Shared) -> SimResponse {
    match serde_json::to_vec(&shared.stats()) {
        Ok(body) => response::json(200, Bytes::from(body)),
        Err(err) => {
            warn!(%err, "could not serialize simulator stats");
            response::error(500, response::message(500))
        }
    }
}

/// The decoded `id` query parameter (the first one), if present.
fn query_id(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let is_id = key == "id" || (key.contains('%') && percent_decode(key) == "id");
        is_id.then(|| percent_decode(value))
    })
}

/// Form-style decoding: `+` is a space, `%XX` a byte; malformed escapes stay as written.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

fn hex(b: &u8) -> Option<u8> {
    char::from(*b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_ids_like_a_form() {
        assert_eq!(
            query_id(Some("id=gen-1%2F2+x")),
            Some("gen-1/2 x".to_owned())
        );
        assert_eq!(query_id(Some("a=1&id=%E2%9C%93")), Some("✓".to_owned()));
        assert_eq!(query_id(Some("%69d=abc")), Some("abc".to_owned()));
        assert_eq!(query_id(Some("id=100%")), Some("100%".to_owned()));
        assert_eq!(query_id(Some("id=%zz")), Some("%zz".to_owned()));
        assert_eq!(query_id(Some("id")), Some(String::new()));
        assert_eq!(query_id(Some("ids=1")), None);
        assert_eq!(query_id(None), None);
    }

    #[test]
    fn routes_both_endpoints_under_any_prefix() {
        assert!(matches!(
            route("/api/v1/generation"),
            Route::Endpoint(Endpoint::Metadata)
        ));
        assert!(matches!(
            route("/proxy/api/v1/generation/content"),
            Route::Endpoint(Endpoint::Content)
        ));
        assert!(matches!(route("/_sim/stats"), Route::Stats));
        assert!(matches!(route("/api/v1/generations"), Route::Unknown));
    }
}
