//! The state ledger: a SQLite database (WAL) recording every ID's status,
//! every output file's commit state, the runs, and queue offsets. The file
//! commit protocol lives here and only here:
//!
//! 1. a data file is registered as `open` when created, and the IDs of its rows
//!    are linked to it as they are written;
//! 2. complete, it is synced under its hidden name and marked `staged`;
//! 3. it is renamed into place and the directory synced;
//! 4. it is marked `committed` and its IDs `exported`, in one transaction
//!    (files finished together, at the end of a run, share it).
//!
//! Content files (`files.kind = 'content'`) follow the same protocol; their
//! commit marks the IDs' *content* exported (`ids.content_status`), never the
//! metadata, so each table is exactly-once on its own.
//!
//! At start-up [`Ledger::reconcile`] settles whatever a dead process left:
//! `staged` files whose final file is whole are committed, everything else is
//! removed and its IDs return to pending.

mod checkpoint;
mod content;
mod lock;
mod reconcile;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

pub use checkpoint::Checkpointer;
use content::{CONTENT_KIND, content_due};
pub use lock::StateLock;
pub use reconcile::Reconciled;

use crate::client::Reason;
use crate::sink::{FailureRow, FinishedFile, PendingFile, SinkError};

/// What can go wrong with the ledger; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("another genledger process{} holds the state lock `{}`; wait for it to finish or stop it", pid.map(|p| format!(" (PID {p})")).unwrap_or_default(), path.display())]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error("the state ledger `{path}` failed")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("failed to {action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl LedgerError {
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> LedgerError {
        LedgerError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// An ID's state in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStatus {
    Pending = 0,
    Exported = 1,
    Failed = 2,
}

const FILE_OPEN: i64 = 0;
const FILE_STAGED: i64 = 1;
const FILE_COMMITTED: i64 = 2;

/// What the ledger says about an ID the input offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Fetch it. `first_404_micros`: when an earlier run first got a 404
    /// for it, for the 404 window. `seq` is its number in the ledger, by
    /// which its rows are linked.
    /// `content_due`: its content is neither exported nor failed yet.
    Fetch {
        seq: i64,
        first_404_micros: Option<i64>,
        content_due: bool,
    },
    AlreadyExported,
    AlreadyFailed,
    /// Offered earlier in this same run.
    Duplicate,
}

/// An ID left unfinished by earlier runs: its metadata (or, on the content
/// path, only its content) still to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub id: String,
    /// Its number in the ledger (see [`Admission::Fetch`]).
    pub seq: i64,
    /// When an earlier run first got a 404 for it.
    pub first_404_micros: Option<i64>,
    /// The content is neither exported nor failed yet.
    pub content_due: bool,
    /// The generation's `created_at`, known once its metadata is exported.
    pub created_at: Option<i64>,
}

/// A connection to the ledger. Each thread that needs the ledger opens its own.
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// Output root; file paths in the ledger are relative to it.
    out_dir: PathBuf,
}

/// How far a queue file has been read: up to `offset` bytes (`lines` lines)
/// of the file with inode `inode`. Saved in the same transaction as the IDs
/// those bytes held, so a restart neither skips nor re-reads a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOffset {
    pub path: String,
    pub inode: u64,
    pub offset: u64,
    pub lines: u64,
}

/// Facts about a file being committed.
pub struct FileFacts {
    pub rows: u64,
    pub min_created_at: i64,
    pub max_created_at: i64,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` for output under `out_dir`.
    /// Every transaction is synced to disk before it returns (`synchronous =
    /// FULL`): the commit protocol relies on that across power loss.
    pub fn open(path: &Path, out_dir: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(path, out_dir, "FULL")
    }

    /// Opens a connection for admitting IDs. Its transactions survive a killed
    /// process but not a power cut (`synchronous = NORMAL`); losing the last of
    /// them only means those IDs are admitted again, which is harmless, and it
    /// saves a disk sync per batch.
    pub fn open_for_admission(path: &Path, out_dir: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(path, out_dir, "NORMAL")
    }

    fn open_with(path: &Path, out_dir: &Path, synchronous: &str) -> Result<Ledger, LedgerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|source| LedgerError::io("create directory", dir, source))?;
        }
        let conn = Connection::open(path).map_err(|source| LedgerError::Sqlite {
            path: path.to_owned(),
            source,
        })?;
        let ledger = Ledger {
            conn,
            path: path.to_owned(),
            out_dir: out_dir.to_owned(),
        };
        ledger.sql(|c| {
            c.busy_timeout(Duration::from_secs(30))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", synchronous)?;
            schema::upgrade(c)?;
            c.execute_batch(schema::SCHEMA)?;
            schema::add_columns(c)
        })?;
        Ok(ledger)
    }

    fn sql<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, LedgerError> {
        f(&self.conn).map_err(|source| LedgerError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    fn sql_mut<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, LedgerError> {
        let path = self.path.clone();
        f(&mut self.conn).map_err(|source| LedgerError::Sqlite { path, source })
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.out_dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Records a run's start; returns its number.
    pub fn begin_run(
        &mut self,
        run_id: &str,
        shard: &str,
        started_at: &str,
    ) -> Result<i64, LedgerError> {
        self.sql(|c| {
            c.execute(
                "INSERT INTO runs (run_id, shard, started_at) VALUES (?1, ?2, ?3)",
                params![run_id, shard, started_at],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn finish_run(
        &mut self,
        run_no: i64,
        finished_at: &str,
        exit_code: u8,
        manifest: Option<&Path>,
    ) -> Result<(), LedgerError> {
        let manifest = manifest.map(|p| self.relative(p));
        self.sql(|c| {
            c.execute(
                "UPDATE runs SET finished_at = ?2, exit_code = ?3, manifest = ?4 WHERE run_no = ?1",
                params![run_no, finished_at, exit_code, manifest],
            )
            .map(drop)
        })
    }

    /// Re-queues every failed ID, and every failed content (`--retry-failed`);
    /// returns how many of each.
    pub fn requeue_failed(&mut self) -> Result<(u64, u64), LedgerError> {
        self.sql(|c| {
            let ids = c.execute(
                "UPDATE ids SET status = 0, reason = NULL WHERE status = 2",
                [],
            )?;
            let content = c.execute(
                "UPDATE ids SET content_status = 0, content_reason = NULL WHERE content_status = 2",
                [],
            )?;
            Ok((ids as u64, content as u64))
        })
    }

    /// Decides, in one transaction, what to do with each offered ID, recording
    /// new ones as pending and marking all as seen by run `run_no`.
    /// With `offset`, the queue offset is saved in the same transaction.
    pub fn admit(
        &mut self,
        ids: &[&str],
        run_no: i64,
        now_micros: i64,
        offset: Option<&QueueOffset>,
    ) -> Result<Vec<Admission>, LedgerError> {
        self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(offset) = offset {
                save_offset(&tx, offset)?;
            }
            // Visited in key order, so neighbouring keys share index pages and
            // the transaction dirties (and logs) fewer pages than random
            // order would; the stable sort keeps the first of a repeated ID first.
            let keys: Vec<i64> = ids.iter().map(|id| schema::id_key(id)).collect();
            let mut order: Vec<usize> = (0..ids.len()).collect();
            order.sort_by_key(|&i| keys[i]);
            let mut out = vec![Admission::Duplicate; ids.len()];
            {
                let mut get = tx.prepare_cached(
                    "SELECT seq, status, last_run, first_404, content_status FROM ids
                     WHERE key = ?1 AND id = ?2",
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO ids (key, id, status, first_seen, last_run) VALUES (?1, ?2, 0, ?3, ?4)",
                )?;
                let mut touch = tx.prepare_cached("UPDATE ids SET last_run = ?2 WHERE seq = ?1")?;
                for at in order {
                    let (id, key) = (ids[at], keys[at]);
                    let known = get
                        .query_row(params![key, id], |r| {
                            Ok(Known {
                                seq: r.get(0)?,
                                status: r.get(1)?,
                                last_run: r.get(2)?,
                                first_404: r.get(3)?,
                                content: r.get(4)?,
                            })
                        })
                        .optional()?;
                    let Some(Known {
                        seq,
                        status,
                        last_run,
                        first_404,
                        content,
                    }) = known
                    else {
                        insert.execute(params![key, id, now_micros, run_no])?;
                        out[at] = Admission::Fetch {
                            seq: tx.last_insert_rowid(),
                            first_404_micros: None,
                            content_due: true,
                        };
                        continue;
                    };
                    out[at] = match (status, last_run) {
                        (_, last) if last == run_no => Admission::Duplicate,
                        (1, _) => Admission::AlreadyExported,
                        (2, _) => Admission::AlreadyFailed,
                        _ => {
                            touch.execute(params![seq, run_no])?;
                            Admission::Fetch {
                                seq,
                                first_404_micros: first_404,
                                content_due: content_due(content),
                            }
                        }
                    };
                }
            }
            tx.commit()?;
            Ok(out)
        })
    }

    /// Records IDs as pending for a later run (the daemon's stdin), without
    /// touching IDs already known. Returns how many were new.
    pub fn admit_pending(&mut self, ids: &[&str], now_micros: i64) -> Result<u64, LedgerError> {
        self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut new = 0;
            {
                let mut known =
                    tx.prepare_cached("SELECT 1 FROM ids WHERE key = ?1 AND id = ?2")?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO ids (key, id, status, first_seen, last_run) VALUES (?1, ?2, 0, ?3, 0)",
                )?;
                for id in ids {
                    let key = schema::id_key(id);
                    if !known.exists(params![key, id])? {
                        insert.execute(params![key, id, now_micros])?;
                        new += 1;
                    }
                }
            }
            tx.commit()?;
            Ok(new)
        })
    }

    /// Where reading of the queue file `path` stopped, if it was ever read.
    pub fn queue_offset(&self, path: &str) -> Result<Option<QueueOffset>, LedgerError> {
        self.sql(|c| {
            c.query_row(
                "SELECT inode, offset, lines FROM queue_offsets WHERE path = ?1",
                [path],
                |r| {
                    Ok(QueueOffset {
                        path: path.to_owned(),
                        inode: r.get::<_, i64>(0)? as u64,
                        offset: r.get::<_, i64>(1)? as u64,
                        lines: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .optional()
        })
    }

    /// Saves a queue offset on its own (bytes that held no new IDs).
    pub fn save_queue_offset(&mut self, offset: &QueueOffset) -> Result<(), LedgerError> {
        self.sql(|c| save_offset(c, offset))
    }

    /// Up to `limit` pending IDs not yet offered in run `run_no` (left over by
    /// earlier runs) numbered after `after`, in admission order, marked as
    /// offered now.
    pub fn take_leftovers(
        &mut self,
        run_no: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Leftover>, LedgerError> {
        self.take(
            "SELECT id, seq, first_404, content_status, created_at FROM ids
             WHERE seq > ?3 AND status = 0 AND last_run < ?1 ORDER BY seq LIMIT ?2",
            run_no,
            after,
            limit,
        )
    }

    fn take(
        &mut self,
        query: &str,
        run_no: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Leftover>, LedgerError> {
        self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let rows: Vec<Leftover> = {
                let mut stmt = tx.prepare_cached(query)?;
                let rows = stmt.query_map(params![run_no, limit as i64, after], |r| {
                    Ok(Leftover {
                        id: r.get(0)?,
                        seq: r.get(1)?,
                        first_404_micros: r.get(2)?,
                        content_due: content_due(r.get(3)?),
                        created_at: r.get(4)?,
                    })
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            {
                let mut touch = tx.prepare_cached("UPDATE ids SET last_run = ?2 WHERE seq = ?1")?;
                for row in &rows {
                    touch.execute(params![row.seq, run_no])?;
                }
            }
            tx.commit()?;
            Ok(rows)
        })
    }

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
        writer: crate::sink::HashingWriter,
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
        Ok(sealed.publish()?)
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
                tx.execute(
                    &format!(
                        "UPDATE ids SET status = 1, reason = NULL, last_error = NULL,
                         created_at = f.created_at
                         FROM (SELECT seq, created_at FROM file_rows WHERE file_id IN ({})
                               ORDER BY seq) AS f
                         WHERE ids.seq = f.seq",
                        placeholders(generations.len())
                    ),
                    rusqlite::params_from_iter(&generations),
                )?;
            }
            tx.commit()
        });
        tracing::debug!(
            files = file_ids.len(),
            ms = started.elapsed().as_millis() as u64,
            "marked files committed"
        );
        marked
    }

    /// Records the end of IDs that were not exported: `Failed` or `Pending`,
    /// keeping the time of an ID's first 404 once known.
    pub fn record(&mut self, rows: &[FailureRow], status: IdStatus) -> Result<(), LedgerError> {
        self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut update = tx.prepare_cached(
                    "UPDATE ids SET status = ?3, attempts = attempts + ?4, reason = ?5, http_status = ?6,
                     last_error = ?7, first_404 = coalesce(first_404, ?8)
                     WHERE key = ?1 AND id = ?2 AND status != 1",
                )?;
                for row in rows.iter().filter(|r| r.reason != Reason::InvalidId) {
                    update.execute(params![
                        schema::id_key(&row.id),
                        row.id,
                        status as i64,
                        row.attempts,
                        row.reason.as_str(),
                        row.http_status,
                        row.message,
                        row.first_404_micros
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// The request rate the API at `api` (its base URL) last accepted, as a
    /// run learned it, requests per second.
    pub fn learned_rate(&self, api: &str) -> Result<Option<f64>, LedgerError> {
        self.sql(|c| {
            c.query_row(
                "SELECT rate FROM learned_rates WHERE api = ?1",
                [api],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Keeps the rate a run learned for the API at `api`, for the next run
    /// to start from.
    pub fn save_learned_rate(
        &mut self,
        api: &str,
        rate: f64,
        learned_at: &str,
    ) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.execute(
                "INSERT INTO learned_rates (api, rate, learned_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (api) DO UPDATE SET rate = ?2, learned_at = ?3",
                params![api, rate, learned_at],
            )
            .map(drop)
        })
    }

    /// Counts of IDs by status: (pending, exported, failed).
    pub fn status_counts(&self) -> Result<(u64, u64, u64), LedgerError> {
        self.sql(|c| tally_by_status(c, "SELECT status, count(*) FROM ids GROUP BY status"))
    }

    /// The status of one ID, if known.
    pub fn status_of(&self, id: &str) -> Result<Option<IdStatus>, LedgerError> {
        self.sql(|c| {
            c.query_row(
                "SELECT status FROM ids WHERE key = ?1 AND id = ?2",
                params![schema::id_key(id), id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|s| {
                s.map(|s| match s {
                    0 => IdStatus::Pending,
                    1 => IdStatus::Exported,
                    _ => IdStatus::Failed,
                })
            })
        })
    }
}

/// What the ledger holds for an ID offered for admission.
struct Known {
    seq: i64,
    status: i64,
    last_run: i64,
    first_404: Option<i64>,
    content: Option<i64>,
}

/// `?, ?, …` for a list of `n` parameters.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn save_offset(c: &Connection, offset: &QueueOffset) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO queue_offsets (path, inode, offset, lines) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (path) DO UPDATE SET inode = ?2, offset = ?3, lines = ?4",
    )?
    .execute(params![
        offset.path,
        offset.inode as i64,
        offset.offset as i64,
        offset.lines as i64
    ])
    .map(drop)
}

#[cfg(test)]
mod tests;

/// Runs `sql`, which yields (status, count) rows, and sums the counts into
/// (pending, exported, failed) by the status codes of [`IdStatus`].
fn tally_by_status(c: &Connection, sql: &str) -> rusqlite::Result<(u64, u64, u64)> {
    let mut stmt = c.prepare(sql)?;
    let mut counts = (0, 0, 0);
    for row in stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
    })? {
        match row? {
            (0, n) => counts.0 += n,
            (1, n) => counts.1 += n,
            (_, n) => counts.2 += n,
        }
    }
    Ok(counts)
}
