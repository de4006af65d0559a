//! What the source hands on: items of the ID stream, in chunks; its counts;
//! its errors.

use std::io;

use tokio::sync::mpsc;

use crate::ledger::LedgerError;

/// An item of the ID stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceItem {
    /// An ID to fetch. `seq` is its number in the ledger. `line` is `None`
    /// for IDs left pending by earlier runs. `content`: fetch its stored
    /// content too, once the metadata is in.
    Id {
        id: String,
        seq: i64,
        line: Option<u64>,
        /// When an earlier run first got a 404 for it.
        first_404_micros: Option<i64>,
        content: bool,
    },
    /// An ID whose metadata an earlier run exported but whose content is
    /// still due: fetch only the content.
    ContentOnly {
        id: String,
        seq: i64,
        created_at: Option<i64>,
    },
    Invalid {
        /// The input's name (`stdin` or the path).
        input: String,
        line: u64,
        reason: String,
    },
    /// An ID dated before `state.retention`: listed as failed with reason
    /// `outside_retention`, not fetched.
    OutsideRetention { id: String, line: u64 },
}

/// Totals of what the source read and decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    pub lines: u64,
    /// Distinct IDs the input offered.
    pub ids: u64,
    pub invalid: u64,
    /// Repeats within this run's input.
    pub duplicates: u64,
    pub already_exported: u64,
    pub previously_failed: u64,
    /// Pending IDs from earlier runs that this input did not list.
    pub resumed: u64,
    /// IDs that belong to other shards (`--shard`), left to them.
    pub other_shards: u64,
    /// IDs handed on to be fetched (new, pending from before, or resumed).
    pub to_fetch: u64,
    /// IDs handed on for their content only (metadata exported earlier).
    pub content_only: u64,
    /// IDs dated before `state.retention`, not fetched.
    pub outside_retention: u64,
}

/// Errors that stop reading.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("failed to open `{path}`")]
    Open { path: String, source: io::Error },
    #[error("failed to read `{path}` at line {line}")]
    Read {
        path: String,
        line: u64,
        source: io::Error,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the queue files are unusable after an earlier failure")]
    Poisoned,
}

/// Items per hand-off to the dispatcher.
pub const CHUNK: usize = 256;

/// Sends items to the dispatcher in chunks: one channel hand-off, and at most
/// one thread wake-up, per chunk instead of per ID.
pub struct ItemSender {
    tx: mpsc::Sender<Vec<SourceItem>>,
    chunk: Vec<SourceItem>,
}

impl ItemSender {
    pub fn new(tx: mpsc::Sender<Vec<SourceItem>>) -> ItemSender {
        ItemSender {
            tx,
            chunk: Vec::with_capacity(CHUNK),
        }
    }

    /// False when the dispatcher is gone.
    pub(super) fn send(&mut self, item: SourceItem) -> bool {
        self.chunk.push(item);
        self.chunk.len() < CHUNK || self.flush()
    }

    /// Hands over what is gathered; false when the dispatcher is gone.
    pub(super) fn flush(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(chunk).is_ok()
    }
}
