//! Keeping the ledger small: whole days dropped past the retention window,
//! closed days rewritten compactly, and freed pages handed back.

use rusqlite::params;

use super::{Ledger, LedgerError, failures, settled};

/// What one pass of upkeep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Days dropped for being older than the window, and the IDs they held.
    pub days_dropped: u64,
    pub ids_dropped: u64,
    /// Failed IDs first seen before the window, forgotten.
    pub failed_dropped: u64,
    /// Failure rows of runs that started before the window, forgotten.
    pub failure_rows_dropped: u64,
    /// Day tables rewritten in key order.
    pub days_compacted: u64,
}

/// A day table is rewritten once it holds this much more than when it was
/// last compacted (late IDs keep arriving for recent days).
const RECOMPACT_GROWTH: f64 = 1.1;

impl Ledger {
    /// Applies retention (days before `first_kept_day` go) and compacts the
    /// day tables that need it: closed days (before yesterday), or every day
    /// with `all`. With `dry_run`, reports what would go and changes nothing.
    pub fn prune(
        &mut self,
        first_kept_day: Option<i64>,
        all: bool,
        dry_run: bool,
    ) -> Result<Pruned, LedgerError> {
        let today = settled::day_of_micros(chrono::Utc::now().timestamp_micros());
        self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut done = Pruned::default();
            if let Some(first) = first_kept_day {
                drop_old(&tx, first, dry_run, &mut done)?;
            }
            let due: Vec<i64> = {
                let mut stmt = tx.prepare(
                    "SELECT day FROM days WHERE rows > 0 AND rows > compacted_rows * ?1
                     AND (?2 OR day < ?3) ORDER BY day",
                )?;
                let days =
                    stmt.query_map(params![RECOMPACT_GROWTH, all, today - 1], |r| r.get(0))?;
                days.collect::<rusqlite::Result<_>>()?
            };
            done.days_compacted = due.len() as u64;
            if !dry_run {
                for day in due {
                    settled::compact(&tx, day)?;
                }
            }
            tx.commit()?;
            if !dry_run {
                // Hands freed pages back to the file system (a no-op for a
                // ledger made before incremental vacuum was switched on).
                let mut vacuum = c.prepare("PRAGMA incremental_vacuum")?;
                let mut freed = vacuum.query([])?;
                while freed.next()?.is_some() {}
            }
            Ok(done)
        })
    }
}

/// Drops (or, dry, counts) what is older than `first`: day tables, their
/// undated index entries, failed IDs first seen before it, and the failure
/// rows of runs that started before it.
fn drop_old(
    tx: &rusqlite::Transaction<'_>,
    first: i64,
    dry_run: bool,
    done: &mut Pruned,
) -> rusqlite::Result<()> {
    let (days, ids) = if dry_run {
        tx.query_row(
            "SELECT count(*), coalesce(sum(rows), 0) FROM days WHERE day < ?1",
            [first],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?
    } else {
        settled::drop_before(tx, first)?
    };
    done.days_dropped = days;
    done.ids_dropped = ids;
    let cutoff = first * 86_400_000_000;
    let failed = if dry_run {
        tx.query_row(
            "SELECT count(*) FROM ids WHERE status = 2 AND first_seen < ?1",
            [cutoff],
            |r| r.get::<_, i64>(0),
        )? as u64
    } else {
        tx.execute(
            "DELETE FROM ids WHERE status = 2 AND first_seen < ?1",
            [cutoff],
        )? as u64
    };
    done.failed_dropped = failed;
    done.failure_rows_dropped = failures::drop_before(tx, cutoff, dry_run)?;
    Ok(())
}

/// What the ledger holds, for `genledger state info`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LedgerInfo {
    /// IDs in the working set, by status.
    pub pending: u64,
    pub failed: u64,
    /// Exported IDs still in the working set (their content is due).
    pub exported_content_due: u64,
    /// Settled IDs, by their day (`YYYY-MM-DD`, rows).
    pub settled_by_day: Vec<(String, u64)>,
    pub settled: u64,
    /// Files by commit state: (open, staged, committed).
    pub files: (u64, u64, u64),
    pub runs: u64,
    /// The file's size, and the part of it that is free pages.
    pub bytes: u64,
    pub free_bytes: u64,
}

impl Ledger {
    pub fn info(&self) -> Result<LedgerInfo, LedgerError> {
        self.sql(|c| {
            let count = |sql: &str| {
                c.query_row(sql, [], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
            };
            let mut stmt = c.prepare("SELECT day, rows FROM days ORDER BY day")?;
            let settled_by_day: Vec<(String, u64)> = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
                .map(|row| {
                    row.map(|(day, rows)| {
                        let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
                            .map(|t| t.format("%Y-%m-%d").to_string())
                            .unwrap_or_else(|| day.to_string());
                        (date, rows as u64)
                    })
                })
                .collect::<rusqlite::Result<_>>()?;
            let page_size = count("PRAGMA page_size")?;
            Ok(LedgerInfo {
                pending: count("SELECT count(*) FROM ids WHERE status = 0")?,
                failed: count("SELECT count(*) FROM ids WHERE status = 2")?,
                exported_content_due: count("SELECT count(*) FROM ids WHERE status = 1")?,
                settled: settled_by_day.iter().map(|(_, n)| n).sum(),
                settled_by_day,
                files: (
                    count("SELECT count(*) FROM files WHERE status = 0")?,
                    count("SELECT count(*) FROM files WHERE status = 1")?,
                    count("SELECT count(*) FROM files WHERE status = 2")?,
                ),
                runs: count("SELECT count(*) FROM runs")?,
                bytes: count("PRAGMA page_count")? * page_size,
                free_bytes: count("PRAGMA freelist_count")? * page_size,
            })
        })
    }
}
