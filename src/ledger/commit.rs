//! The file commit protocol, in one place. The sink writes the bytes; the
//! steps that make a file part of the output are these:
//!
//! 1. a data file is registered as `open` when created ([`Ledger::open_file`]),
//!    and the IDs of its rows are linked to it as they are written;
//! 2. complete, it is synced under its hidden name and marked `staged`;
//! 3. it is renamed into place and the directory synced
//!    (2 and 3: [`Ledger::publish_file`], with `atomic_file`'s primitives);
//!    for a remote output (object storage has no rename) it is uploaded
//!    under its final name instead: in one request, or above
//!    [`MULTIPART_BYTES`] as a multipart upload whose ID is recorded before
//!    the first part is sent; the object appears only once complete;
//! 4. it is marked `committed` and its IDs `exported`, in one transaction
//!    ([`Ledger::mark_committed`]; files finished together share it).
//!
//! Content files (`files.kind = 'content'`) follow the same protocol; their
//! commit marks the IDs' *content* exported (`ids.content_status`), never the
//! metadata, so each table is exactly-once on its own. At start-up,
//! [`Ledger::reconcile`](super::reconcile) settles what a dead process left.

use rusqlite::{TransactionBehavior, params};

use super::content::CONTENT_KIND;
use super::settled::{self, Settling};
use super::{FILE_COMMITTED, FILE_OPEN, FILE_STAGED, Ledger, LedgerError};
use crate::atomic_file::{FinishedFile, HashingWriter, PendingFile, SealedFile};
use crate::objstore::{MULTIPART_BYTES, Remote};

/// Facts about a file being committed.
pub struct FileFacts {
    pub rows: u64,
    pub min_created_at: i64,
    pub max_created_at: i64,
}

impl Ledger {
    /// Registers a data file about to be written (protocol step 1).
    pub fn open_file(
        &mut self,
        run_id: &str,
        kind: &str,
        pending: &PendingFile,
    ) -> Result<i64, LedgerError> {
        let (path, temp) = (
            self.relative(&pending.final_path),
            self.relative(&pending.temp_path),
        );
        self.sql(|c| {
            c.execute(
                "INSERT INTO files (run_id, kind, path, temp_path, status) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run_id, kind, path, temp, FILE_OPEN],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Links written rows, by their IDs' numbers (with their generation's
    /// `created_at`), to their (still open) file.
    pub fn link(&mut self, file_id: i64, rows: &[(i64, Option<i64>)]) -> Result<(), LedgerError> {
        self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut link = tx.prepare_cached(
                    "INSERT INTO file_rows (file_id, seq, created_at) VALUES (?1, ?2, ?3)",
                )?;
                for (seq, created_at) in rows {
                    link.execute(params![file_id, seq, created_at])?;
                }
            }
            tx.commit()
        })
    }

    /// Protocol steps 2 and 3 for a complete file: sync, stage, publish. The
    /// file is in place but not committed until [`Ledger::mark_committed`];
    /// should the process die first, start-up reconciliation commits it.
    pub fn publish_file(
        &mut self,
        file_id: i64,
        pending: PendingFile,
        writer: HashingWriter,
        facts: &FileFacts,
    ) -> Result<FinishedFile, LedgerError> {
        let sealed = pending.seal(writer)?;
        let staged = self.sql(|c| {
            c.execute(
                "UPDATE files SET status = ?2, rows = ?3, bytes = ?4, sha256 = ?5, min_created_at = ?6,
                 max_created_at = ?7 WHERE file_id = ?1",
                params![
                    file_id,
                    FILE_STAGED,
                    facts.rows as i64,
                    sealed.finished.bytes as i64,
                    sealed.finished.sha256,
                    facts.min_created_at,
                    facts.max_created_at
                ],
            )
        });
        if let Err(e) = staged {
            sealed.abandon();
            return Err(e);
        }
        match self.remote.clone() {
            None => Ok(sealed.publish()?),
            Some(remote) => {
                let uploaded = self.upload(file_id, &remote, &sealed);
                let finished = sealed.finished.clone();
                // Uploaded or not, the local copy is done with: a file left
                // staged is settled against the bucket at the next start.
                sealed.abandon();
                uploaded.map(|()| finished)
            }
        }
    }

    /// Protocol step 3 for a remote output: the staged file uploaded under
    /// its final name, whole or not at all.
    fn upload(
        &mut self,
        file_id: i64,
        remote: &Remote,
        sealed: &SealedFile,
    ) -> Result<(), LedgerError> {
        let relative = self.relative(&sealed.finished.path);
        if sealed.finished.bytes <= MULTIPART_BYTES {
            return Ok(remote.put_file(&relative, &sealed.temp_path, false)?);
        }
        let upload_id = remote.start_upload(&relative)?;
        self.sql(|c| {
            c.execute(
                "UPDATE files SET upload_id = ?2 WHERE file_id = ?1",
                params![file_id, upload_id],
            )
        })?;
        let finished = remote.finish_upload(&relative, &upload_id, &sealed.temp_path);
        if finished.is_err() {
            // Best effort; the next start aborts it again if this fails.
            let _ = remote.abort_upload(&relative, &upload_id);
        }
        Ok(finished?)
    }

    /// Protocol step 4 for published files: they are committed and their IDs
    /// exported, all in one transaction. A content file marks its IDs' content
    /// exported and leaves their metadata status alone.
    ///
    /// Files committed together cost one pass over the IDs instead of one
    /// each. The pass visits IDs by number, the order they were admitted in
    /// and roughly the order their rows were written, so it walks the table
    /// nearly sequentially.
    pub fn mark_committed(&mut self, file_ids: &[i64]) -> Result<(), LedgerError> {
        if file_ids.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let marked = self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (mut content, mut generations) = (Vec::new(), Vec::new());
            for &file_id in file_ids {
                let kind: String = tx.query_row(
                    "UPDATE files SET status = ?2 WHERE file_id = ?1 RETURNING kind",
                    params![file_id, FILE_COMMITTED],
                    |r| r.get(0),
                )?;
                match kind.as_str() {
                    CONTENT_KIND => content.push(file_id),
                    _ => generations.push(file_id),
                }
            }
            if !content.is_empty() {
                tx.execute(
                    &format!(
                        "UPDATE ids SET content_status = 1, content_reason = NULL
                         WHERE seq IN (SELECT seq FROM file_rows WHERE file_id IN ({}))",
                        placeholders(content.len())
                    ),
                    rusqlite::params_from_iter(&content),
                )?;
            }
            if !generations.is_empty() {
                // Only the IDs that stay in `ids` (content still due); the
                // others settle below, straight from the file's links.
                tx.execute(
                    &format!(
                        "UPDATE ids SET status = 1, reason = NULL, last_error = NULL,
                         created_at = f.created_at
                         FROM (SELECT seq, created_at FROM file_rows WHERE file_id IN ({})
                               ORDER BY seq) AS f
                         WHERE ids.seq = f.seq AND coalesce(ids.content_status, 0) != 1
                         AND coalesce(ids.content_wanted, 0) != 0",
                        placeholders(generations.len())
                    ),
                    rusqlite::params_from_iter(&generations),
                )?;
            }
            settle_committed(&tx, &generations, true)?;
            settle_committed(&tx, &content, false)?;
            tx.commit()
        });
        tracing::debug!(
            files = file_ids.len(),
            ms = started.elapsed().as_millis() as u64,
            "marked files committed"
        );
        marked
    }
}

/// IDs settled at a time: a file of a million rows must not become a
/// million rows in memory at once (it was 35 MB at the end of a run).
pub(super) const SETTLE_CHUNK: i64 = 16 * 1024;

/// Moves the committed files' IDs that are now settled into their days'
/// tables, and forgets the files' row links: they are needed only until a
/// file is committed (reconciliation settles only uncommitted files).
///
/// A file's rows are walked in [`SETTLE_CHUNK`]s, in the order they were
/// linked (about the order the IDs were admitted). An ID in two of the
/// files (its metadata and its content) settles once: settling removes it
/// from `ids`, so the second file's join no longer finds it.
///
/// A generations file (`exported`) settles its IDs whatever their status
/// says, for they are exported by this commit; a content file only those
/// whose metadata is exported already.
fn settle_committed(
    tx: &rusqlite::Transaction<'_>,
    file_ids: &[i64],
    exported: bool,
) -> rusqlite::Result<()> {
    if file_ids.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp_micros();
    let mut stmt = tx.prepare(
        "SELECT f.rowid, i.seq, i.id, coalesce(i.content_status, 0),
                coalesce(f.created_at, i.created_at)
         FROM file_rows f JOIN ids i ON i.seq = f.seq
         WHERE f.file_id = ?1 AND f.rowid > ?2 AND (?4 OR i.status = 1)
         AND (i.content_status = 1 OR coalesce(i.content_wanted, 0) = 0)
         ORDER BY f.rowid LIMIT ?3",
    )?;
    for &file_id in file_ids {
        let mut after = 0_i64;
        loop {
            let mut rows = Vec::new();
            let mut found = stmt.query(params![file_id, after, SETTLE_CHUNK, exported])?;
            while let Some(r) = found.next()? {
                after = r.get(0)?;
                rows.push(Settling {
                    seq: Some(r.get(1)?),
                    id: r.get(2)?,
                    content: r.get(3)?,
                    created_at: r.get(4)?,
                });
            }
            if rows.is_empty() {
                break;
            }
            settled::settle(tx, &rows, now)?;
        }
    }
    tx.execute(
        &format!(
            "DELETE FROM file_rows WHERE file_id IN ({})",
            placeholders(file_ids.len())
        ),
        rusqlite::params_from_iter(file_ids),
    )?;
    Ok(())
}

/// `?, ?, …` for a list of `n` parameters.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}
