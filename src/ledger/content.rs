//! The content side of the ledger: which exported IDs still need their
//! stored content, and the content's own status (`ids.content_status`), kept
//! apart from the metadata's so each table is exactly-once on its own.

use rusqlite::{TransactionBehavior, params};

use super::settled;

use super::{Ledger, LedgerError, Leftover, tally_by_status};
use crate::layout;
use crate::record::{FailureRow, IdStatus};

/// The `files.kind` of content files (the `content` table's name).
pub(super) const CONTENT_KIND: &str = layout::CONTENT;

/// Whether content in this state still needs fetching (never fetched, or pending).
pub(super) fn content_due(content_status: Option<i64>) -> bool {
    matches!(content_status, None | Some(0))
}

impl Ledger {
    /// Like [`Ledger::take_leftovers`], for the content path: IDs whose
    /// metadata is exported but whose content is still due (never fetched, or
    /// left pending), not offered in run `run_no`.
    pub fn take_content_leftovers(
        &mut self,
        run_no: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Leftover>, LedgerError> {
        self.take(
            "SELECT id, seq, NULL, content_status, created_at FROM ids
             WHERE seq > ?3 AND status = 1 AND (content_status IS NULL OR content_status = 0)
             AND last_run < ?1 ORDER BY seq LIMIT ?2",
            run_no,
            after,
            limit,
        )
    }

    /// Records the end of contents that were not exported: `Failed` (403,
    /// 404) or `Pending` (a later run with content on fetches them again),
    /// and the rows for the run's failures file. The IDs' metadata status
    /// is untouched.
    pub fn record_content(
        &mut self,
        rows: &[FailureRow],
        status: IdStatus,
    ) -> Result<(), LedgerError> {
        let run_no = self.run_no;
        self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut update = tx.prepare_cached(
                    "UPDATE ids SET content_status = ?3, content_reason = ?4
                     WHERE (seq >> 32) IN (?5, 0) AND key = ?1 AND id = ?2
                     AND content_status IS NOT 1",
                )?;
                for row in rows {
                    let key = super::schema::id_key(&row.id);
                    let day = super::numbering::seq_day(&row.id);
                    update.execute(params![
                        key,
                        row.id,
                        status as i64,
                        row.reason.as_str(),
                        day
                    ])?;
                }
            }
            super::failures::keep(&tx, run_no, rows)?;
            tx.commit()
        })
    }

    /// Counts of contents by status, among IDs whose metadata is exported:
    /// (pending or never fetched, exported, failed).
    pub fn content_counts(&self) -> Result<(u64, u64, u64), LedgerError> {
        self.sql(|c| {
            let (due, mut exported, failed) = tally_by_status(
                c,
                "SELECT coalesce(content_status, 0), count(*) FROM ids WHERE status = 1 GROUP BY 1",
            )?;
            // Settled IDs: content exported (1), or never fetched (0, not due
            // until an input offers the ID to a run with content on).
            for day in settled::days(c)? {
                let sql = format!(
                    "SELECT count(*) FROM {} WHERE k & 1 = 1",
                    settled::table(day)
                );
                exported += c.query_row(&sql, [], |r| r.get::<_, i64>(0))? as u64;
                let clashes = "SELECT count(*) FROM clashes WHERE day = ?1 AND s = 1";
                exported += c.query_row(clashes, [day], |r| r.get::<_, i64>(0))? as u64;
            }
            Ok((due, exported, failed))
        })
    }
}
