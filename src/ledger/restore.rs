//! Restoring a lost ledger from what the output holds (`genledger state
//! rebuild`): the runs its manifests name, their committed files, and each
//! ID's end as those files record it. An export recorded anywhere wins over a
//! failure recorded anywhere, as it did when the ledger was whole.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::settled::{self, Settling};
use super::{FILE_COMMITTED, Ledger, LedgerError, schema};
use crate::record::IdStatus;

/// A run as its manifest describes it.
pub struct RestoredRun<'a> {
    pub run_id: &'a str,
    pub shard: &'a str,
    pub started_at: &'a str,
    pub finished_at: &'a str,
    /// The manifest's path relative to the output root.
    pub manifest: &'a str,
}

/// A committed file as its manifest lists it.
pub struct RestoredFile<'a> {
    pub run_id: &'a str,
    pub kind: &'a str,
    /// Relative to the output root, `/`-separated.
    pub path: &'a str,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: &'a str,
}

/// Which status an ID's end sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Metadata,
    Content,
}

impl Ledger {
    /// The run IDs the ledger knows.
    pub fn run_ids(&self) -> Result<HashSet<String>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare("SELECT run_id FROM runs")?;
            let ids = stmt.query_map([], |r| r.get(0))?;
            ids.collect()
        })
    }

    pub fn restore_run(&mut self, run: &RestoredRun<'_>) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.execute(
                "INSERT INTO runs (run_id, shard, started_at, finished_at, manifest)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (run_id) DO NOTHING",
                params![
                    run.run_id,
                    run.shard,
                    run.started_at,
                    run.finished_at,
                    run.manifest
                ],
            )
            .map(drop)
        })
    }

    pub fn restore_file(&mut self, file: &RestoredFile<'_>) -> Result<(), LedgerError> {
        self.sql(|c| {
            c.execute(
                "INSERT INTO files (run_id, kind, path, temp_path, status, rows, bytes, sha256)
                 VALUES (?1, ?2, ?3, '', ?4, ?5, ?6, ?7)",
                params![
                    file.run_id,
                    file.kind,
                    file.path,
                    FILE_COMMITTED,
                    file.rows as i64,
                    file.bytes as i64,
                    file.sha256
                ],
            )
            .map(drop)
        })
    }

    /// Records IDs as ended with `status` on one `side`, with their
    /// generation's `created_at` where known. An exported status is never
    /// lowered to failed.
    pub fn restore_ids(
        &mut self,
        ids: &[(String, Option<i64>)],
        side: Side,
        status: IdStatus,
        reason: Option<&str>,
    ) -> Result<(), LedgerError> {
        let now = chrono::Utc::now().timestamp_micros();
        self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut days = settled::days(&tx)?;
            for (id, created_at) in ids {
                let key = schema::id_key(id);
                let seq: Option<i64> = tx
                    .prepare_cached(
                        "SELECT seq FROM ids WHERE (seq >> 32) IN (?3, 0) AND key = ?1 AND id = ?2",
                    )?
                    .query_row(params![key, id, super::numbering::seq_day(id)], |r| {
                        r.get(0)
                    })
                    .optional()?;
                restore_one(
                    &tx,
                    &mut days,
                    (id, *created_at, seq),
                    side,
                    status,
                    reason,
                    now,
                )?;
            }
            tx.commit()
        })
    }
}

/// Restores one ID's end on one side; `row` is (id, created_at, its row in
/// `ids` if it has one).
fn restore_one(
    tx: &rusqlite::Transaction<'_>,
    days: &mut std::collections::BTreeSet<i64>,
    (id, created_at, seq): (&String, Option<i64>, Option<i64>),
    side: Side,
    status: IdStatus,
    reason: Option<&str>,
    now: i64,
) -> rusqlite::Result<()> {
    let key = schema::id_key(id);
    let settling = |content| Settling {
        seq,
        id: id.clone(),
        content,
        created_at,
    };
    let known = settled::lookup(tx, days, id)?;
    match (side, status) {
        // An exported generation keeps whatever its content has; one kept
        // in `ids` with its content failed or due stays there.
        (Side::Metadata, IdStatus::Exported) => match seq {
            Some(seq) => {
                let content: Option<i64> = tx.query_row(
                    "SELECT content_status FROM ids WHERE seq = ?1",
                    [seq],
                    |r| r.get(0),
                )?;
                if matches!(content, Some(0 | 2)) {
                    tx.execute(
                        "UPDATE ids SET status = 1, reason = NULL WHERE seq = ?1",
                        [seq],
                    )?;
                } else {
                    // Failed in an earlier run's file, exported in a later
                    // one, nothing due: it settles, as its commit settled it.
                    settled::put(tx, days, &settling(content.unwrap_or(0)), now, false)?
                }
            }
            None => settled::put(tx, days, &settling(0), now, false)?,
        },
        (Side::Content, IdStatus::Exported) => settled::put(tx, days, &settling(1), now, true)?,
        (Side::Content, IdStatus::Failed) if known != Some(1) => {
            keep_failed(tx, (key, id, seq), side, reason)?
        }
        (Side::Metadata, IdStatus::Failed) if known.is_none() => {
            keep_failed(tx, (key, id, seq), side, reason)?
        }
        _ => {}
    }
    Ok(())
}

/// A failure stays retryable, with its text, in `ids`: the metadata's (never
/// over an export) or the content's.
fn keep_failed(
    tx: &rusqlite::Transaction<'_>,
    (key, id, seq): (i64, &str, Option<i64>),
    side: Side,
    reason: Option<&str>,
) -> rusqlite::Result<()> {
    let (update, insert) = match side {
        Side::Content => (
            "UPDATE ids SET content_status = 2, content_reason = ?2 WHERE seq = ?1",
            "INSERT INTO ids (seq, key, id, status, first_seen, last_run, content_status, content_reason)
             VALUES (?4, ?1, ?2, 1, 0, 0, 2, ?3)",
        ),
        Side::Metadata => (
            "UPDATE ids SET status = 2, reason = ?2 WHERE seq = ?1 AND status != 1",
            "INSERT INTO ids (seq, key, id, status, first_seen, last_run, reason)
             VALUES (?4, ?1, ?2, 2, 0, 0, ?3)",
        ),
    };
    match seq {
        Some(seq) => tx.execute(update, params![seq, reason])?,
        None => tx.execute(
            insert,
            params![key, id, reason, super::numbering::next_seq(tx, id)?],
        )?,
    };
    Ok(())
}
