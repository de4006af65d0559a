//! The numbers IDs take in `ids` (`seq`): within the day of their prefix,
//! so that one day's rows and index entries lie together.

use rusqlite::{Connection, OptionalExtension};

/// Bits of `ids.seq` below its day: the number within the day.
const SEQ_DAY_SHIFT: u32 = 32;

/// The day an ID's `ids.seq` is numbered in (see [`next_seq`]): its
/// trusted prefix day, else 0. A lookup tries this day and 0, where rows
/// numbered before numbering by day (layout 2 and older) all are.
pub(super) fn seq_day(id: &str) -> i64 {
    super::settled::prefix_day(id).unwrap_or(0)
}

/// The number a new ID takes in `ids`: the next in its day's own range
/// (`day << 32` on; day 0 for an ID without a trusted prefix day), so that
/// one day's IDs lie together in the table and in `ids_day_key` whatever
/// order they arrived in. A file holds one day's rows, and committing it
/// reads and deletes its IDs' rows and index entries; numbered in arrival
/// order with IDs that cycle through 90 days, each of a file's rows sat on
/// a page of its own, and a run's last commits spent 80 % of their time in
/// SQLite's page reads.
///
/// Every insert into `ids` must take its number from here: a row numbered
/// outside its day's range would not be found by [`seq_day`]'s lookup.
pub(super) fn next_seq(c: &Connection, id: &str) -> rusqlite::Result<i64> {
    let day = seq_day(id);
    let (first, end) = (day << SEQ_DAY_SHIFT, (day + 1) << SEQ_DAY_SHIFT);
    let last: Option<i64> = c
        .prepare_cached(
            "SELECT seq FROM ids WHERE seq >= ?1 AND seq < ?2 ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([first, end], |r| r.get(0))
        .optional()?;
    match last {
        None => Ok(first.max(1)),
        Some(seq) if seq + 1 < end => Ok(seq + 1),
        // Four billion IDs of one day in the ledger at once.
        Some(_) => Err(rusqlite::Error::ToSqlConversionFailure(
            format!("no number left for day {day} in the ledger's `ids`").into(),
        )),
    }
}
