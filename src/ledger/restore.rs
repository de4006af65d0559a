//! Restoring a lost ledger from what the output holds (`genledger state
//! rebuild`): the runs its manifests name, their committed files, and each
//! ID's end as those files record it. An export recorded anywhere wins over a
//! failure recorded anywhere, as it did when the ledger was whole.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

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
        let (status_column, reason_column) = match side {
            Side::Metadata => ("status", "reason"),
            Side::Content => ("content_status", "content_reason"),
        };
        self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut find = tx.prepare_cached("SELECT seq FROM ids WHERE key = ?1 AND id = ?2")?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO ids (key, id, status, first_seen, last_run) VALUES (?1, ?2, 0, 0, 0)",
                )?;
                let mut update = tx.prepare_cached(&format!(
                    "UPDATE ids SET {status_column} = ?2, {reason_column} = ?3,
                     created_at = coalesce(created_at, ?4)
                     WHERE seq = ?1 AND coalesce({status_column}, 0) != 1"
                ))?;
                for (id, created_at) in ids {
                    let key = schema::id_key(id);
                    let seq = match find.query_row(params![key, id], |r| r.get::<_, i64>(0)).optional()? {
                        Some(seq) => seq,
                        None => {
                            insert.execute(params![key, id])?;
                            tx.last_insert_rowid()
                        }
                    };
                    update.execute(params![seq, status as i64, reason, created_at])?;
                }
            }
            tx.commit()
        })
    }
}
