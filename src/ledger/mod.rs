//! The state ledger: a SQLite database (WAL) recording every ID's status,
//! every output file's commit state, the runs, queue offsets and learned
//! rates. It owns the file commit protocol ([`commit`]) and the start-up
//! reconciliation ([`reconcile`]); the bytes of a file are the sink's.

mod admission;
mod audit;
mod checkpoint;
mod commit;
mod content;
mod failures;
mod identity;
mod lock;
mod numbering;
mod reconcile;
mod restore;
mod retention;
mod schema;
mod settled;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

pub use audit::{Audit, Finding, LedgerFile};
pub use checkpoint::Checkpointer;
pub use commit::FileFacts;
use identity::Identity;
pub use lock::StateLock;
pub use reconcile::{CommittedFile, DeadRun, Reconciled};
pub use restore::{RestoredFile, RestoredRun, Side};
pub use retention::{LedgerInfo, Pruned};
pub use settled::retention_day;

use crate::atomic_file::FileError;
use crate::layout;
use crate::objstore::{Remote, RemoteError};
use crate::record::IdStatus;

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
    File(#[from] FileError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("`{}` is not a genledger ledger (it holds the tables {}); set `state.path` to a file of its own", path.display(), tables.join(", "))]
    Foreign { path: PathBuf, tables: Vec<String> },
    #[error("the ledger `{}` was written by a newer genledger (layout {version}); upgrade genledger to use it", path.display())]
    Newer { path: PathBuf, version: i32 },
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
    /// Exported by a run with content off, offered to a run with content on:
    /// fetch its content only. `seq` is its (new) row in the working set.
    ContentDue {
        seq: i64,
    },
    /// Its day is older than `state.retention`: the ledger no longer knows
    /// whether it was exported, so it is not fetched (see `--include-old`).
    OutsideRetention,
    /// Offered earlier in this same run.
    Duplicate,
}

/// How admission treats what it finds, beyond the ledger's contents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmitRules {
    /// The run fetches content.
    pub content: bool,
    /// The first day (since the epoch, UTC) that retention keeps.
    pub first_kept_day: Option<i64>,
    /// Fetch IDs older than the retention window anyway (a backfill).
    pub include_old: bool,
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
    /// Output root; file paths in the ledger are relative to it. For a
    /// remote output, the local spool the files are written in first.
    out_dir: PathBuf,
    /// The bucket files are uploaded to instead of renamed into place.
    remote: Option<std::sync::Arc<Remote>>,
    rules: AdmitRules,
    /// The run whose failure rows this connection keeps ([`Ledger::set_run`]).
    run_no: Option<i64>,
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
            remote: None,
            rules: AdmitRules::default(),
            run_no: None,
        };
        let identity = ledger.sql(|c| {
            c.busy_timeout(Duration::from_secs(30))?;
            identity::identify(c)
        })?;
        match identity {
            Identity::Foreign(tables) => {
                return Err(LedgerError::Foreign {
                    path: path.to_owned(),
                    tables,
                });
            }
            Identity::Newer(version) => {
                return Err(LedgerError::Newer {
                    path: path.to_owned(),
                    version,
                });
            }
            Identity::Ours | Identity::Unmarked => {}
        }
        ledger.sql(|c| {
            if schema::is_empty(c)? {
                // Freed pages (dropped days, settled rows) can be handed
                // back to the file system; only settable before any table.
                c.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
            }
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", synchronous)?;
            schema::upgrade(c)?;
            c.execute_batch(schema::SCHEMA)?;
            schema::add_columns(c)?;
            schema::settle_older_layout(c)?;
            if identity == Identity::Unmarked || identity::version(c)? < identity::LAYOUT_VERSION {
                identity::mark(c)?;
            }
            Ok(())
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

    /// Files are published by upload to `remote` (the commit protocol
    /// without rename), and reconciled against it.
    pub fn set_remote(&mut self, remote: std::sync::Arc<Remote>) {
        self.remote = Some(remote);
    }

    fn relative(&self, path: &Path) -> String {
        layout::relative(&self.out_dir, path)
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

    /// Closes a run: when it finished, its exit code, its manifest (if it
    /// wrote one) and, for a run that ended with an error, the error.
    pub fn finish_run(
        &mut self,
        run_no: i64,
        finished_at: &str,
        exit_code: u8,
        manifest: Option<&Path>,
        message: Option<&str>,
    ) -> Result<(), LedgerError> {
        let manifest = manifest.map(|p| self.relative(p));
        self.sql(|c| {
            c.execute(
                "UPDATE runs SET finished_at = ?2, exit_code = ?3, manifest = ?4, message = ?5
                 WHERE run_no = ?1",
                params![run_no, finished_at, exit_code, manifest, message],
            )
            .map(drop)
        })
    }

    /// Forgets a run that did nothing: no ID names it, no file is its.
    pub fn forget_run(&mut self, run_no: i64) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.execute("DELETE FROM runs WHERE run_no = ?1", [run_no])
                .map(drop)
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
        self.sql(|c| {
            let (pending, exported, failed) =
                tally_by_status(c, "SELECT status, count(*) FROM ids GROUP BY status")?;
            let settled: i64 =
                c.query_row("SELECT coalesce(sum(rows), 0) FROM days", [], |r| r.get(0))?;
            Ok((pending, exported + settled as u64, failed))
        })
    }

    /// The status of one ID, if known.
    pub fn status_of(&self, id: &str) -> Result<Option<IdStatus>, LedgerError> {
        self.sql(|c| {
            let rich = c
                .query_row(
                    "SELECT status FROM ids WHERE (seq >> 32) IN (?3, 0) AND key = ?1 AND id = ?2",
                    params![schema::id_key(id), id, numbering::seq_day(id)],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?;
            let status = match rich {
                Some(0) => Some(IdStatus::Pending),
                Some(1) => Some(IdStatus::Exported),
                Some(_) => Some(IdStatus::Failed),
                None => settled::lookup(c, &settled::days(c)?, id)?.map(|_| IdStatus::Exported),
            };
            Ok(status)
        })
    }
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
