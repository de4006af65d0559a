//! Why an ID was not exported, and the ID's state in the ledger: the shared
//! vocabulary of the client (which decides), the sink (which writes the
//! failures file) and the ledger (which keeps it).

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
    /// Dated before `state.retention`: the ledger no longer knows whether it
    /// was exported, so it was not fetched (`--include-old` fetches it).
    OutsideRetention,
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
            Reason::OutsideRetention => "outside_retention",
        }
    }

    /// The reason written as `text` in a failures file.
    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Every reason, for [`Reason::parse`].
    const ALL: [Reason; 16] = [
        Reason::OutsideRetention,
        Reason::InvalidId,
        Reason::NotFound,
        Reason::HttpError,
        Reason::InvalidMoney,
        Reason::InvalidResponse,
        Reason::RetriesExhausted,
        Reason::Stopped,
        Reason::NotYetFound,
        Reason::ContentForbidden,
        Reason::ContentNotFound,
        Reason::ContentHttpError,
        Reason::ContentInvalidResponse,
        Reason::ContentRetriesExhausted,
        Reason::ContentStopped,
        Reason::ContentNotYetFound,
    ];

    /// Whether an ID with this reason is left pending (a later run tries
    /// again) rather than failed for good.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            Reason::RetriesExhausted
                | Reason::Stopped
                | Reason::NotYetFound
                | Reason::ContentRetriesExhausted
                | Reason::ContentStopped
                | Reason::ContentNotYetFound
        )
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

/// An ID's state in the ledger (metadata and content each have one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStatus {
    Pending = 0,
    Exported = 1,
    Failed = 2,
}

/// One row of the failures file, and what the ledger keeps of it.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureRow {
    pub id: String,
    pub line: Option<u64>,
    pub reason: Reason,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub message: String,
    /// When the first 404 for the ID came (microseconds), kept in the
    /// ledger for the 404 window; not a column of the failures file.
    pub first_404_micros: Option<i64>,
}

impl FailureRow {
    /// The failures file's columns, in order.
    pub const COLUMNS: [&'static str; 6] =
        ["id", "line", "reason", "http_status", "attempts", "message"];

    /// The row's fields as the failures file writes them ([`Self::COLUMNS`]).
    pub fn fields(&self) -> [String; 6] {
        [
            self.id.clone(),
            self.line.map(|l| l.to_string()).unwrap_or_default(),
            self.reason.as_str().to_owned(),
            self.http_status.map(|s| s.to_string()).unwrap_or_default(),
            self.attempts.to_string(),
            self.message.clone(),
        ]
    }
}
