//! How one ID's fetch ends: a record, a failure or pending, and the reason
//! written in the failures file.

use crate::record::Generation;

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
    /// Pending: still 404 after this run's tries, but the 404 window (from
    /// the first 404 and the generation's start) has not passed yet.
    NotYetFound,
    /// The content endpoint answered 403 (not allowed to see it: ZDR or
    /// regional traffic, or not an organisation admin).
    ContentForbidden,
    /// The content endpoint kept answering 404 (stored content never existed).
    ContentNotFound,
    ContentHttpError,
    ContentInvalidResponse,
    /// Content pending: transient failures used up `fetch.max_attempts`.
    ContentRetriesExhausted,
    /// Content pending: the run stopped before the content was fetched.
    ContentStopped,
    /// Content pending: still 404 inside its window after this run's tries.
    ContentNotYetFound,
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
            Reason::NotYetFound => "not_yet_found",
            Reason::ContentForbidden => "content_forbidden",
            Reason::ContentNotFound => "content_not_found",
            Reason::ContentHttpError => "content_http_error",
            Reason::ContentInvalidResponse => "content_invalid_response",
            Reason::ContentRetriesExhausted => "content_retries_exhausted",
            Reason::ContentStopped => "content_stopped",
            Reason::ContentNotYetFound => "content_not_yet_found",
        }
    }

    /// Whether the reason is about an ID's stored content, not its metadata.
    pub fn is_content(self) -> bool {
        matches!(
            self,
            Reason::ContentForbidden
                | Reason::ContentNotFound
                | Reason::ContentHttpError
                | Reason::ContentInvalidResponse
                | Reason::ContentRetriesExhausted
                | Reason::ContentStopped
                | Reason::ContentNotYetFound
        )
    }
}

/// Why one ID ended unexported.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub message: String,
    /// When the first 404 for the ID came, if one did (kept across runs).
    pub first_404: Option<std::time::SystemTime>,
}

/// The end of one ID's fetch: `T` is the metadata record, or its content.
#[derive(Debug)]
pub enum Fetched<T = Box<Generation>> {
    Record(T),
    /// Will not succeed by retrying.
    Failed(Failure),
    /// Not done; a later run tries again.
    Pending(Failure),
}
