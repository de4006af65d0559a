//! Copying the write-ahead log back into the database on a thread of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the
//! threshold, on whichever thread made it: admission or the sink. On a large
//! ledger those copies were about a third of the ledger's time, and while the
//! admission thread copied pages the fetches ran out of IDs. The pipeline's
//! writers therefore leave checkpoints to a [`Checkpointer`], and keep a high
//! threshold of their own only as a safety net should it fall behind.
//!
//! A checkpoint moves data between two copies SQLite already keeps in sync, so
//! it never decides what is committed: a crash or a failed checkpoint loses
//! nothing, it only leaves the log longer until the next one.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Ledger, LedgerError};

/// How often the checkpointer copies what the log has gained.
const INTERVAL: Duration = Duration::from_millis(100);

/// Log pages at which a writer checkpoints on its own, should the
/// checkpointer fall behind: above what one admission batch writes into a
/// ledger of millions of IDs (about 11,000 pages), so normally never.
const WRITER_FALLBACK_PAGES: i64 = 32_768;

/// Once the log restarts, its file is cut back to this size.
const LOG_SIZE_LIMIT_BYTES: i64 = 16 << 20;

/// A thread that checkpoints the ledger every [`INTERVAL`] until dropped.
pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection of its own and starts checkpointing.
    pub fn start(path: &Path, out_dir: &Path) -> Result<Checkpointer, LedgerError> {
        // It commits nothing, so the admission connection's lighter sync
        // setting is enough: SQLite still syncs the database at every
        // checkpoint before the log can be reused.
        let ledger = Ledger::open_for_admission(path, out_dir)?;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("genledger-checkpoint".into())
            .spawn(move || run(&ledger, &stopped))
            .map_err(|source| LedgerError::io("start the checkpoint thread for", path, source))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(ledger: &Ledger, stopped: &mpsc::Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
        if let Err(error) = ledger.checkpoint() {
            // The writers' own threshold still bounds the log.
            let error = format!("{:#}", anyhow::Error::from(error));
            tracing::debug!(%error, "ledger checkpoint failed");
        }
    }
}

impl Ledger {
    /// Copies every log page no reader still needs into the database, without
    /// waiting for (or holding up) writers.
    pub fn checkpoint(&self) -> Result<(), LedgerError> {
        self.sql(|c| c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())))
    }

    /// For a connection that writes while a [`Checkpointer`] runs: checkpoint
    /// only as a safety net, far above the usual threshold.
    pub fn leave_checkpoints_to_background(&self) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.pragma_update(None, "wal_autocheckpoint", WRITER_FALLBACK_PAGES)?;
            c.pragma_update(None, "journal_size_limit", LOG_SIZE_LIMIT_BYTES)
        })
    }
}
