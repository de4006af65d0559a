//! The retry decision: what one answer, with the ID's tries so far, leads to
//! next. It neither sends nor sleeps nor touches the run's counters, so every
//! retry rule reads (and is tested) as one table; only the jitter of a wait
//! is drawn at random.

use std::time::{Duration, SystemTime};

use super::retry::{self, NotFoundWindow};
use super::{Endpoint, Failure, Reason};
use crate::config::FetchSettings;
use crate::stop::{NetworkFault, StopReason};

/// What one HTTP exchange came to.
pub(super) enum Answer<T> {
    Record(T),
    /// A 429. `announced`: the wait its headers named; `episodes`: the run's
    /// 429s so far (both endpoints, this one included), which a wait that
    /// was not announced backs off by.
    RateLimited {
        announced: Option<Duration>,
        episodes: u64,
    },
    NotFound,
    Refused(u16, String),
    Transient {
        status: Option<u16>,
        message: String,
        wait: Option<Duration>,
    },
    Rejected(u16, String),
    Unusable(Reason, String),
    /// No answer, for a reason no retry heals.
    Unreachable(NetworkFault),
}

/// What a fetch does after an answer.
#[derive(Debug)]
pub(super) enum Step<T> {
    /// Done: the answer's record.
    Record(T),
    /// Ask again after `wait`. `pause`: a 429's wait, which holds every
    /// request (both endpoints) at the pacer rather than only this ID.
    Retry { wait: Duration, pause: bool },
    /// Final: retrying will not help.
    Fail(Failure),
    /// Not done; a later run tries again.
    Pending(Failure),
    /// The API refused the key or the credits, or cannot be reached: the run
    /// stops, and this ID is left pending.
    Stop {
        reason: StopReason,
        pending: Failure,
    },
}

/// One ID's tries in this run, and what earlier runs left of them.
#[derive(Debug, Clone, Copy)]
pub(super) struct RetryState {
    pub endpoint: Endpoint,
    /// When the generation began, if known: the start its 404 window trusts.
    pub started: Option<SystemTime>,
    /// When the first 404 came, in this run or an earlier one.
    pub first_404: Option<SystemTime>,
    /// Requests answered (or failed on the wire), 429s included.
    pub attempts: u32,
    /// Transient failures.
    pub transient: u32,
    /// 404s in this run.
    pub not_found: u32,
}

impl RetryState {
    pub fn new(
        endpoint: Endpoint,
        started: Option<SystemTime>,
        first_404: Option<SystemTime>,
    ) -> RetryState {
        RetryState {
            endpoint,
            started,
            first_404,
            attempts: 0,
            transient: 0,
            not_found: 0,
        }
    }

    /// Counts `answer`, which came at `now`, among the tries, as
    /// [`next_step`] expects.
    pub fn count<T>(&mut self, answer: &Answer<T>, now: SystemTime) {
        self.attempts += 1;
        match answer {
            Answer::NotFound => {
                self.not_found += 1;
                self.first_404.get_or_insert(now);
            }
            Answer::Transient { .. } => self.transient += 1,
            _ => {}
        }
    }

    /// The failure that leaves the ID pending when the run stops first.
    pub fn stopped(&self) -> Failure {
        self.failure(Reason::Stopped, None, "run stopped before this ID was done")
    }

    /// A failure for `reason` as this endpoint words it, keeping when the
    /// first 404 came.
    fn failure(&self, reason: Reason, status: Option<u16>, message: &str) -> Failure {
        Failure {
            first_404: self.first_404,
            ..failure(self.endpoint.reason(reason), status, self.attempts, message)
        }
    }
}

/// What `answer`, which came at `now`, leads to. `state` already counts it
/// ([`RetryState::count`]); `fetch` holds the limits on retries and waits.
pub(super) fn next_step<T>(
    answer: Answer<T>,
    state: &RetryState,
    fetch: &FetchSettings,
    now: SystemTime,
) -> Step<T> {
    let attempts = state.attempts;
    match answer {
        Answer::Record(record) => Step::Record(record),
        Answer::RateLimited {
            announced,
            episodes,
        } => Step::Retry {
            wait: rate_limit_wait(announced, episodes, fetch),
            pause: true,
        },
        Answer::NotFound => not_found(state, fetch.not_found_grace, now),
        Answer::Refused(status, message) => Step::Stop {
            reason: StopReason::Refused { status, message },
            pending: state.failure(
                Reason::Stopped,
                Some(status),
                "the API refused the key or credits",
            ),
        },
        Answer::Unreachable(fault) => {
            let message = format!("stopped: {}", fault.kind());
            Step::Stop {
                pending: state.failure(Reason::Stopped, None, &message),
                reason: StopReason::Unreachable(fault),
            }
        }
        Answer::Rejected(403, excerpt) if state.endpoint == Endpoint::Content => Step::Fail(
            failure(Reason::ContentForbidden, Some(403), attempts, &excerpt),
        ),
        Answer::Rejected(status, excerpt) => {
            let reason = state.endpoint.reason(Reason::HttpError);
            Step::Fail(failure(reason, Some(status), attempts, &excerpt))
        }
        Answer::Unusable(reason, message) => {
            let reason = state.endpoint.reason(reason);
            Step::Fail(failure(reason, Some(200), attempts, &message))
        }
        Answer::Transient {
            status,
            message,
            wait,
        } => transient(state, fetch, status, &message, wait),
    }
}

/// A 429's pause: the announced wait, or else a backoff that grows with the
/// run's 429s; never longer than `fetch.max_retry_after`.
fn rate_limit_wait(announced: Option<Duration>, episodes: u64, fetch: &FetchSettings) -> Duration {
    announced
        .unwrap_or_else(|| {
            let episodes = episodes.min(16) as u32;
            retry::full_jitter(retry::backoff_ceiling(
                fetch.backoff_initial,
                fetch.backoff_max,
                episodes,
            ))
        })
        .min(fetch.max_retry_after)
}

/// A 404 is final once its window has passed, left for a later run after
/// this run's tries, and otherwise asked again when the window says.
fn not_found<T>(state: &RetryState, grace: Duration, now: SystemTime) -> Step<T> {
    let first = state.first_404.unwrap_or(now);
    let window = NotFoundWindow::new(state.started, first, grace);
    match window.next_try(now) {
        None => {
            let message = format!(
                "still 404 after {} tries; the first 404 and the generation's start are older than the grace period",
                state.attempts
            );
            Step::Fail(state.failure(Reason::NotFound, Some(404), &message))
        }
        Some(_) if state.not_found >= retry::NOT_FOUND_TRIES => {
            let message = format!(
                "404 on each of {} tries in this run; left for a later run",
                state.not_found
            );
            Step::Pending(state.failure(Reason::NotYetFound, Some(404), &message))
        }
        Some(wait) => Step::Retry { wait, pause: false },
    }
}

/// A transient failure is tried again after a backoff (or the wait a 503
/// announced) until `fetch.max_attempts` of them; then the ID is left for a
/// later run.
fn transient<T>(
    state: &RetryState,
    fetch: &FetchSettings,
    status: Option<u16>,
    message: &str,
    wait: Option<Duration>,
) -> Step<T> {
    if state.transient >= fetch.max_attempts {
        let message = format!(
            "gave up after {} transient failures; last: {message}",
            state.transient
        );
        return Step::Pending(state.failure(Reason::RetriesExhausted, status, &message));
    }
    let ceiling = retry::backoff_ceiling(
        fetch.backoff_initial,
        fetch.backoff_max,
        state.transient.saturating_sub(1),
    );
    let wait = wait.map_or_else(
        || retry::full_jitter(ceiling),
        |w| w.min(fetch.max_retry_after),
    );
    Step::Retry { wait, pause: false }
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

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::UNIX_EPOCH;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// What a step must be; a wait drawn with jitter is checked against its range.
    #[derive(Debug)]
    enum Expect {
        Record,
        Retry {
            at_least: Duration,
            at_most: Duration,
            pause: bool,
        },
        Fail(Reason, Option<u16>, &'static str),
        Pending(Reason, Option<u16>, &'static str),
        Stop(u16),
        /// The run stops for a network fault; the ID is pending for this reason.
        Unreachable(Reason),
    }

    fn waits(at_least: Duration, at_most: Duration) -> Expect {
        Expect::Retry {
            at_least,
            at_most,
            pause: false,
        }
    }

    fn pauses(at_least: Duration, at_most: Duration) -> Expect {
        Expect::Retry {
            at_least,
            at_most,
            pause: true,
        }
    }

    fn fetch() -> FetchSettings {
        FetchSettings {
            concurrency: 4,
            requests_per_second: 10.0,
            burst: NonZeroU32::MIN,
            max_attempts: 3,
            timeout: 30 * SECOND,
            not_found_grace: 128 * SECOND,
            max_retry_after: 60 * SECOND,
            backoff_initial: Duration::from_millis(100),
            backoff_max: 2 * SECOND,
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_764_704_000 + secs)
    }

    /// The state before the answer: `transient` and `not_found` tries so far,
    /// and the first 404, if one came.
    fn before(
        endpoint: Endpoint,
        transient: u32,
        not_found: u32,
        first_404: Option<u64>,
    ) -> RetryState {
        RetryState {
            endpoint,
            started: None,
            first_404: first_404.map(at),
            attempts: transient + not_found,
            transient,
            not_found,
        }
    }

    fn transient_answer(status: Option<u16>, message: &str, wait: Option<Duration>) -> Answer<u8> {
        Answer::Transient {
            status,
            message: message.to_owned(),
            wait,
        }
    }

    fn check(step: Step<u8>, expect: &Expect) -> bool {
        match (step, expect) {
            (Step::Record(7), Expect::Record) => true,
            (
                Step::Retry { wait, pause },
                Expect::Retry {
                    at_least,
                    at_most,
                    pause: expected,
                },
            ) => pause == *expected && *at_least <= wait && wait <= *at_most,
            (Step::Fail(f), Expect::Fail(reason, status, message))
            | (Step::Pending(f), Expect::Pending(reason, status, message)) => {
                f.reason == *reason && f.http_status == *status && f.message.contains(message)
            }
            (Step::Stop { reason, pending }, Expect::Stop(code)) => {
                matches!(reason, StopReason::Refused { status, .. } if status == *code)
                    && pending.reason == Reason::Stopped
                    && pending.http_status == Some(*code)
                    && pending.message == "the API refused the key or credits"
            }
            (Step::Stop { reason, pending }, Expect::Unreachable(expected)) => {
                matches!(&reason, StopReason::Unreachable(fault) if pending.message == format!("stopped: {}", fault.kind()))
                    && pending.reason == *expected
                    && pending.http_status.is_none()
            }
            _ => false,
        }
    }

    fn untrusted() -> NetworkFault {
        NetworkFault::UntrustedCertificate {
            host: "openrouter.ai".into(),
            problem: "it is signed by a CA this machine does not trust".into(),
            roots: None,
        }
    }

    #[test]
    fn every_answer_leads_to_its_step() {
        use Endpoint::{Content, Metadata};
        let now = at(1_000);
        let fresh = before(Metadata, 0, 0, None);
        let ceiling =
            |retry| retry::backoff_ceiling(fetch().backoff_initial, fetch().backoff_max, retry);
        // The first 404 opens the window now; its first try is at grace/64.
        let first_try = 2 * SECOND;
        let cases: Vec<(&str, Answer<u8>, RetryState, Expect)> = vec![
            (
                "200 with a record",
                Answer::Record(7),
                fresh,
                Expect::Record,
            ),
            (
                "429 with an announced wait",
                Answer::RateLimited {
                    announced: Some(3 * SECOND),
                    episodes: 1,
                },
                fresh,
                pauses(3 * SECOND, 3 * SECOND),
            ),
            (
                "429 announcing more than max_retry_after",
                Answer::RateLimited {
                    announced: Some(600 * SECOND),
                    episodes: 1,
                },
                fresh,
                pauses(60 * SECOND, 60 * SECOND),
            ),
            (
                "429 without a wait backs off by the run's 429s",
                Answer::RateLimited {
                    announced: None,
                    episodes: 3,
                },
                fresh,
                pauses(Duration::ZERO, ceiling(3)),
            ),
            (
                "first 404, inside the window",
                Answer::NotFound,
                fresh,
                waits(
                    first_try,
                    first_try.mul_f64(1.05) + Duration::from_millis(1),
                ),
            ),
            (
                "404 outside the window",
                Answer::NotFound,
                before(Metadata, 0, 2, Some(800)),
                Expect::Fail(Reason::NotFound, Some(404), "still 404 after 3 tries"),
            ),
            (
                "content 404 outside the window",
                Answer::NotFound,
                before(Content, 0, 1, Some(800)),
                Expect::Fail(
                    Reason::ContentNotFound,
                    Some(404),
                    "still 404 after 2 tries",
                ),
            ),
            (
                "404 inside the window after this run's tries",
                Answer::NotFound,
                before(Metadata, 0, retry::NOT_FOUND_TRIES - 1, Some(999)),
                Expect::Pending(Reason::NotYetFound, Some(404), "404 on each of 8 tries"),
            ),
            (
                "401 refuses the key",
                Answer::Refused(401, "no key".into()),
                fresh,
                Expect::Stop(401),
            ),
            (
                "402 refuses the credits",
                Answer::Refused(402, "no credits".into()),
                fresh,
                Expect::Stop(402),
            ),
            (
                "an untrusted certificate stops the run",
                Answer::Unreachable(untrusted()),
                fresh,
                Expect::Unreachable(Reason::Stopped),
            ),
            (
                "a refused proxy stops the run, whatever tries are left",
                Answer::Unreachable(NetworkFault::ProxyRefused {
                    proxy: "127.0.0.1:9".into(),
                    var: "HTTPS_PROXY".into(),
                    host: "openrouter.ai".into(),
                }),
                before(Metadata, 2, 0, None),
                Expect::Unreachable(Reason::Stopped),
            ),
            (
                "an unknown host stops the run, content",
                Answer::Unreachable(NetworkFault::UnknownHost {
                    host: "openrouter.invalid".into(),
                    proxy_var: None,
                }),
                before(Content, 0, 0, None),
                Expect::Unreachable(Reason::ContentStopped),
            ),
            (
                "5xx with attempts left",
                transient_answer(Some(502), "bad gateway", None),
                before(Metadata, 1, 0, None),
                waits(Duration::ZERO, ceiling(1)),
            ),
            (
                "503 with an announced wait",
                transient_answer(Some(503), "overloaded", Some(5 * SECOND)),
                fresh,
                waits(5 * SECOND, 5 * SECOND),
            ),
            (
                "503 announcing more than max_retry_after",
                transient_answer(Some(503), "overloaded", Some(600 * SECOND)),
                fresh,
                waits(60 * SECOND, 60 * SECOND),
            ),
            (
                "5xx with attempts exhausted",
                transient_answer(Some(502), "bad gateway", None),
                before(Metadata, 2, 0, None),
                Expect::Pending(
                    Reason::RetriesExhausted,
                    Some(502),
                    "gave up after 3 transient failures; last: bad gateway",
                ),
            ),
            (
                "connection error with attempts left",
                transient_answer(None, "could not connect", None),
                fresh,
                waits(Duration::ZERO, ceiling(0)),
            ),
            (
                "connection error with attempts exhausted, content",
                transient_answer(None, "could not connect", None),
                before(Content, 2, 0, None),
                Expect::Pending(
                    Reason::ContentRetriesExhausted,
                    None,
                    "last: could not connect",
                ),
            ),
            (
                "a cut or garbled 200 body is transient",
                transient_answer(Some(200), "answer body is not a JSON object", None),
                fresh,
                waits(Duration::ZERO, ceiling(0)),
            ),
            (
                "a 200 body that parses but cannot be used is final",
                Answer::Unusable(Reason::InvalidMoney, "field `total_cost`".into()),
                fresh,
                Expect::Fail(Reason::InvalidMoney, Some(200), "field `total_cost`"),
            ),
            (
                "other 4xx is rejected",
                Answer::Rejected(400, "bad request".into()),
                fresh,
                Expect::Fail(Reason::HttpError, Some(400), "bad request"),
            ),
            (
                "content 4xx is rejected as content",
                Answer::Rejected(400, "bad request".into()),
                before(Content, 0, 0, None),
                Expect::Fail(Reason::ContentHttpError, Some(400), "bad request"),
            ),
            (
                "403 on metadata is an HTTP error",
                Answer::Rejected(403, "forbidden".into()),
                fresh,
                Expect::Fail(Reason::HttpError, Some(403), "forbidden"),
            ),
            (
                "403 on content is forbidden content",
                Answer::Rejected(403, "forbidden".into()),
                before(Content, 0, 0, None),
                Expect::Fail(Reason::ContentForbidden, Some(403), "forbidden"),
            ),
        ];
        for (case, answer, mut state, expect) in cases {
            state.count(&answer, now);
            let step = next_step(answer, &state, &fetch(), now);
            let shown = format!("{step:?}");
            assert!(check(step, &expect), "{case}: {shown}, expected {expect:?}");
        }
    }

    #[test]
    fn the_first_404_is_kept_and_travels_with_the_failure() {
        let mut state = RetryState::new(Endpoint::Metadata, None, None);
        state.count(&Answer::<u8>::NotFound, at(10));
        state.count(&Answer::<u8>::NotFound, at(20));
        assert_eq!(state.first_404, Some(at(10)));
        assert_eq!((state.attempts, state.not_found), (2, 2));
        let Step::Fail(failure) = next_step(Answer::<u8>::NotFound, &state, &fetch(), at(500))
        else {
            panic!("a 404 past its window is final");
        };
        assert_eq!(failure.first_404, Some(at(10)));
        assert_eq!(state.stopped().first_404, Some(at(10)));
        assert_eq!(state.stopped().reason, Reason::Stopped);
    }
}
