//! The failures file's rows, kept per run. Each row the sink writes to a
//! run's failures CSV reaches the ledger through [`Ledger::record`] or
//! [`Ledger::record_content`], and is kept in the same transaction as the
//! ID's new state, so the file can be written again from the ledger: for a
//! run killed before its own was renamed into place (reconciliation finds
//! the run; `export` writes the file), or on demand (`genledger state
//! failures`). The ledger writes no file itself.
//!
//! Failures are rare, so a plain table indexed by run number is enough. Rows
//! the sink still held in memory when the process died never reach the
//! ledger; their IDs are still pending there (the row and the state travel
//! together), so the next run fetches them again.

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{Ledger, LedgerError, schema};
use crate::record::{FailureRow, IdStatus, Reason};
use crate::timestamp::format_timestamp;

impl Ledger {
    /// Failure rows recorded through this connection from now on belong to
    /// run `run_no` and are kept for its failures file. A connection that
    /// was given no run records the IDs' state only.
    pub fn set_run(&mut self, run_no: i64) {
        self.run_no = Some(run_no);
    }

    /// Records the end of IDs that were not exported: `Failed` or `Pending`,
    /// keeping the time of an ID's first 404 once known, and the rows
    /// themselves for the run's failures file.
    pub fn record(&mut self, rows: &[FailureRow], status: IdStatus) -> Result<(), LedgerError> {
        let run_no = self.run_no;
        self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut update = tx.prepare_cached(
                    "UPDATE ids SET status = ?3, attempts = attempts + ?4, reason = ?5, http_status = ?6,
                     last_error = ?7, first_404 = coalesce(first_404, ?8)
                     WHERE (seq >> 32) IN (?9, 0) AND key = ?1 AND id = ?2 AND status != 1",
                )?;
                for row in rows
                    .iter()
                    .filter(|r| !matches!(r.reason, Reason::InvalidId | Reason::OutsideRetention))
                {
                    update.execute(params![
                        schema::id_key(&row.id),
                        row.id,
                        status as i64,
                        row.attempts,
                        row.reason.as_str(),
                        row.http_status,
                        row.message,
                        row.first_404_micros,
                        super::numbering::seq_day(&row.id)
                    ])?;
                }
            }
            keep(&tx, run_no, rows)?;
            tx.commit()
        })
    }

    /// The number of the run `run_id`, if the ledger knows it.
    pub fn run_no_of(&self, run_id: &str) -> Result<Option<i64>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare("SELECT run_no FROM runs WHERE run_id = ?1")?;
            let mut rows = stmt.query([run_id])?;
            rows.next()?.map(|r| r.get(0)).transpose()
        })
    }

    /// How many failure rows run `run_no` recorded.
    pub fn failure_count(&self, run_no: i64) -> Result<u64, LedgerError> {
        self.sql(|c| {
            c.query_row(
                "SELECT count(*) FROM failures WHERE run_no = ?1",
                [run_no],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n as u64)
    }

    /// Hands each failure row of run `run_no` to `each`, in the order they
    /// were recorded (the sink records a batch grouped by state, so the order
    /// can differ from its own file's); returns how many. Streams, so a run
    /// with many failures costs no memory.
    pub fn each_failure<E: From<LedgerError>>(
        &self,
        run_no: i64,
        mut each: impl FnMut(FailureRow) -> Result<(), E>,
    ) -> Result<u64, E> {
        let fail = |source| E::from(self.sqlite_error(source));
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, line, reason, http_status, attempts, message FROM failures
                 WHERE run_no = ?1 ORDER BY rowid",
            )
            .map_err(fail)?;
        let mut rows = stmt.query([run_no]).map_err(fail)?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(fail)? {
            each(failure_row(row).map_err(fail)?)?;
            count += 1;
        }
        Ok(count)
    }

    fn sqlite_error(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

/// Keeps `rows` as run `run_no`'s, in the caller's transaction.
pub(super) fn keep(
    c: &Connection,
    run_no: Option<i64>,
    rows: &[FailureRow],
) -> rusqlite::Result<()> {
    let Some(run_no) = run_no else {
        return Ok(());
    };
    let mut insert = c.prepare_cached(
        "INSERT INTO failures (run_no, id, line, reason, http_status, attempts, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for row in rows {
        insert.execute(params![
            run_no,
            row.id,
            row.line.map(|l| l as i64),
            row.reason.as_str(),
            row.http_status,
            row.attempts,
            row.message
        ])?;
    }
    Ok(())
}

fn failure_row(row: &Row<'_>) -> rusqlite::Result<FailureRow> {
    let text: String = row.get(2)?;
    let reason = Reason::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("`{text}` is not a failure reason").into(),
        )
    })?;
    Ok(FailureRow {
        id: row.get(0)?,
        line: row.get::<_, Option<i64>>(1)?.map(|l| l as u64),
        reason,
        http_status: row.get(3)?,
        attempts: row.get(4)?,
        message: row.get(5)?,
        first_404_micros: None,
    })
}

/// Forgets (or, dry, counts) the failure rows of runs that started before
/// `cutoff_micros`, the start of the retention window's first day: those
/// runs' failures files can no longer be written again. Run numbers grow
/// with start times, so this is one range delete on the index, and only the
/// runs since the oldest kept row are looked at; when that row's run is
/// inside the window (the usual case) nothing is scanned at all.
pub(super) fn drop_before(
    c: &Connection,
    cutoff_micros: i64,
    dry_run: bool,
) -> rusqlite::Result<u64> {
    let oldest: Option<i64> = c.query_row("SELECT min(run_no) FROM failures", [], |r| r.get(0))?;
    let Some(oldest) = oldest else {
        return Ok(0);
    };
    let cutoff = format_timestamp(cutoff_micros);
    let oldest_started: Option<String> = c
        .query_row(
            "SELECT started_at FROM runs WHERE run_no = ?1",
            [oldest],
            |r| r.get(0),
        )
        .optional()?;
    if oldest_started.is_some_and(|started| started >= cutoff) {
        return Ok(0);
    }
    let last_old: Option<i64> = c.query_row(
        "SELECT max(run_no) FROM runs WHERE run_no >= ?1 AND started_at < ?2",
        params![oldest, cutoff],
        |r| r.get(0),
    )?;
    let Some(last_old) = last_old else {
        return Ok(0);
    };
    let n = if dry_run {
        c.query_row(
            "SELECT count(*) FROM failures WHERE run_no <= ?1",
            [last_old],
            |r| r.get::<_, i64>(0),
        )? as usize
    } else {
        c.execute("DELETE FROM failures WHERE run_no <= ?1", [last_old])?
    };
    Ok(n as u64)
}
