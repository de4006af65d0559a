//! Admission: which offered IDs to fetch and which are done, what earlier
//! runs left over, and how far each queue file was read (saved in the same
//! transaction as the IDs those bytes held).

use std::collections::BTreeSet;

use rusqlite::{CachedStatement, Connection, OptionalExtension, TransactionBehavior, params};

use super::content::content_due;
use super::{Admission, AdmitRules, Ledger, LedgerError, Leftover, QueueOffset, schema, settled};

/// What to do with one offered ID (`key` its 64-bit key), recording it.
fn admit_one(
    tx: &Connection,
    days: &BTreeSet<i64>,
    rules: AdmitRules,
    (id, key): (&str, i64),
    run_no: i64,
    now_micros: i64,
) -> rusqlite::Result<Admission> {
    let mut get = tx.prepare_cached(
        "SELECT seq, status, last_run, first_404, content_status FROM ids
         WHERE (seq >> 32) IN (?3, 0) AND key = ?1 AND id = ?2",
    )?;
    if let Some(known) = Known::find(&mut get, key, id)? {
        let admission = known.admission(run_no);
        if matches!(admission, Admission::Fetch { .. }) {
            tx.prepare_cached("UPDATE ids SET last_run = ?2, content_wanted = ?3 WHERE seq = ?1")?
                .execute(params![known.seq, run_no, rules.content])?;
        }
        return Ok(admission);
    }
    let add = |status: i64| -> rusqlite::Result<i64> {
        let seq = super::numbering::next_seq(tx, id)?;
        tx.prepare_cached(
            "INSERT INTO ids (seq, key, id, status, first_seen, last_run, content_wanted)
             VALUES (?7, ?1, ?2, ?5, ?3, ?4, ?6)",
        )?
        .execute(params![
            key,
            id,
            now_micros,
            run_no,
            status,
            rules.content,
            seq
        ])?;
        Ok(tx.last_insert_rowid())
    };
    Ok(match settled::lookup(tx, days, id)? {
        Some(0) if rules.content => Admission::ContentDue { seq: add(1)? },
        Some(_) => Admission::AlreadyExported,
        None if rules.is_outside(id) => Admission::OutsideRetention,
        None => Admission::Fetch {
            seq: add(0)?,
            first_404_micros: None,
            content_due: true,
        },
    })
}

impl AdmitRules {
    /// Whether an ID unknown to the ledger is dated before the window.
    fn is_outside(&self, id: &str) -> bool {
        match (self.first_kept_day, settled::prefix_day(id)) {
            (Some(first), Some(day)) => day < first && !self.include_old,
            _ => false,
        }
    }
}

impl Ledger {
    /// How this connection's admissions treat content and retention.
    pub fn set_admit_rules(&mut self, rules: AdmitRules) {
        self.rules = rules;
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
        let rules = self.rules;
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
            let days = settled::days(&tx)?;
            for at in order {
                out[at] = admit_one(&tx, &days, rules, (ids[at], keys[at]), run_no, now_micros)?;
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
                let mut known = tx.prepare_cached(
                    "SELECT 1 FROM ids WHERE (seq >> 32) IN (?3, 0) AND key = ?1 AND id = ?2",
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO ids (seq, key, id, status, first_seen, last_run)
                     VALUES (?4, ?1, ?2, 0, ?3, 0)",
                )?;
                for id in ids {
                    let key = schema::id_key(id);
                    if !known.exists(params![key, id, super::numbering::seq_day(id)])? {
                        insert.execute(params![
                            key,
                            id,
                            now_micros,
                            super::numbering::next_seq(&tx, id)?
                        ])?;
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

    pub(super) fn take(
        &mut self,
        query: &str,
        run_no: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Leftover>, LedgerError> {
        let content = self.rules.content;
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
                let mut touch = tx.prepare_cached(
                    "UPDATE ids SET last_run = ?2, content_wanted = ?3 WHERE seq = ?1",
                )?;
                for row in &rows {
                    touch.execute(params![row.seq, run_no, content])?;
                }
            }
            tx.commit()?;
            Ok(rows)
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

impl Known {
    /// The row of `id` (with its key), if the ledger has one.
    fn find(get: &mut CachedStatement<'_>, key: i64, id: &str) -> rusqlite::Result<Option<Known>> {
        get.query_row(params![key, id, super::numbering::seq_day(id)], |r| {
            Ok(Known {
                seq: r.get(0)?,
                status: r.get(1)?,
                last_run: r.get(2)?,
                first_404: r.get(3)?,
                content: r.get(4)?,
            })
        })
        .optional()
    }

    /// What to do with a known ID offered again in run `run_no`.
    fn admission(&self, run_no: i64) -> Admission {
        match (self.status, self.last_run) {
            (_, last) if last == run_no => Admission::Duplicate,
            (1, _) => Admission::AlreadyExported,
            (2, _) => Admission::AlreadyFailed,
            _ => Admission::Fetch {
                seq: self.seq,
                first_404_micros: self.first_404,
                content_due: content_due(self.content),
            },
        }
    }
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
