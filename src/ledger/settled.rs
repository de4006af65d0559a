//! Settled IDs, kept small. An ID whose metadata is exported and whose
//! content is settled (exported, failed, or not wanted) needs only to be
//! recognised again: it leaves the rich `ids` table for a table of its day,
//! `settled_<day>` (`k` its 128-bit hash, `s` its content's state), about
//! 22 bytes a row once the table is compacted. Its day is the one its
//! `gen-<unix>-` prefix names, so an ID offered again finds its table from
//! its own text; an ID without a usable prefix is filed under its
//! generation's day (else the day it settled), and the `undated` index says
//! where.
//!
//! Whole days go at once: retention drops a day's table, never rows one by
//! one; SQLite reuses the freed pages, so the file stops growing.
//!
//! 128 bits: for a billion IDs the chance that two share a hash is about
//! 10⁻²¹ (64 bits would be a few %). A failed or pending ID, or one whose
//! content failed, keeps its text in `ids`: it can be retried.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;
/// Prefix times before this (2023-01-01) or from 2100 on are not dates.
const FIRST_DATED: i64 = 1_672_531_200;
const LAST_DATED: i64 = 4_102_444_800;

/// A content state as `s` keeps it: 0 never fetched (content was off),
/// 1 exported. Both take no bytes in a SQLite record. (An ID whose content
/// failed stays in `ids`, to be retried with `--retry-failed`.)
pub(super) type ContentState = i64;

/// The key of an ID in a settled table.
pub(super) fn key128(id: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes()).to_be_bytes()
}

/// The day (since the epoch, UTC) an ID's own text dates it to, when it
/// can: `gen-<unix seconds>-…` from 2023 to 2099. Independent of the clock,
/// so the answer never changes between runs.
pub(super) fn prefix_day(id: &str) -> Option<i64> {
    let rest = id.strip_prefix("gen-")?;
    let (secs, tail) = rest.split_once('-')?;
    if tail.is_empty() || !(9..=11).contains(&secs.len()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    (FIRST_DATED..LAST_DATED)
        .contains(&secs)
        .then(|| secs.div_euclid(86_400))
}

/// The day (since the epoch, UTC) a settled ID is filed under, as far as
/// its own text and its generation's `created_at` tell: its prefix day, else
/// the day of `created_at`. (An ID with neither is filed under the day it
/// settled, which only the ledger knew.) Retention drops whole such days.
pub fn retention_day(id: &str, created_at: Option<i64>) -> Option<i64> {
    prefix_day(id).or_else(|| created_at.map(day_of_micros))
}

/// The day of an instant in microseconds.
pub(super) fn day_of_micros(micros: i64) -> i64 {
    micros.div_euclid(DAY_MICROS)
}

pub(super) fn table(day: i64) -> String {
    format!("settled_{day}")
}

/// Days that have a settled table.
pub(super) fn days(c: &Connection) -> rusqlite::Result<BTreeSet<i64>> {
    let mut stmt = c.prepare_cached("SELECT day FROM days")?;
    let days = stmt.query_map([], |r| r.get(0))?;
    days.collect()
}

/// Where a settled ID is kept: its prefix day, or the `undated` index's.
pub(super) fn find_day(c: &Connection, id: &str, key: &[u8; 16]) -> rusqlite::Result<Option<i64>> {
    if let Some(day) = prefix_day(id) {
        return Ok(Some(day));
    }
    c.prepare_cached("SELECT day FROM undated WHERE k = ?1")?
        .query_row([&key[..]], |r| r.get(0))
        .optional()
}

/// The content state of a settled ID, if it is settled.
pub(super) fn lookup(
    c: &Connection,
    days: &BTreeSet<i64>,
    id: &str,
) -> rusqlite::Result<Option<ContentState>> {
    let key = key128(id);
    let Some(day) = find_day(c, id, &key)? else {
        return Ok(None);
    };
    if !days.contains(&day) {
        return Ok(None);
    }
    c.prepare_cached(&format!("SELECT s FROM {} WHERE k = ?1", table(day)))?
        .query_row([&key[..]], |r| r.get(0))
        .optional()
}

/// An ID about to settle.
pub(super) struct Settling {
    /// Its row in `ids`, removed as it settles (none when restored).
    pub seq: Option<i64>,
    pub id: String,
    pub content: ContentState,
    /// The generation's `created_at`, for an ID without a dated prefix.
    pub created_at: Option<i64>,
}

/// Moves IDs from `ids` into their day's settled table, in the caller's
/// transaction. `now_micros` dates an ID with neither a prefix nor a
/// `created_at`. An ID settled before (content fetched later) is updated.
pub(super) fn settle(c: &Connection, rows: &[Settling], now_micros: i64) -> rusqlite::Result<()> {
    let mut days = days(c)?;
    for row in rows {
        put(c, &mut days, row, now_micros, true)?;
    }
    Ok(())
}

/// Files one ID in its day's table. With `replace`, an ID already there
/// takes `row.content`; without, it keeps what it has.
pub(super) fn put(
    c: &Connection,
    days: &mut BTreeSet<i64>,
    row: &Settling,
    now_micros: i64,
    replace: bool,
) -> rusqlite::Result<()> {
    let key = key128(&row.id);
    let day = match prefix_day(&row.id) {
        Some(day) => day,
        None => match find_day(c, &row.id, &key)? {
            Some(day) => day,
            None => {
                let day = day_of_micros(row.created_at.unwrap_or(now_micros));
                c.prepare_cached("INSERT INTO undated (k, day) VALUES (?1, ?2)")?
                    .execute(params![&key[..], day])?;
                day
            }
        },
    };
    if days.insert(day) {
        create_table(c, day)?;
    }
    let name = table(day);
    let added = c
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO {name} (k, s) VALUES (?1, ?2)"
        ))?
        .execute(params![&key[..], row.content])?;
    if added > 0 {
        c.prepare_cached("UPDATE days SET rows = rows + 1 WHERE day = ?1")?
            .execute([day])?;
    } else if replace {
        c.prepare_cached(&format!("UPDATE {name} SET s = ?2 WHERE k = ?1"))?
            .execute(params![&key[..], row.content])?;
    }
    if let Some(seq) = row.seq {
        c.prepare_cached("DELETE FROM ids WHERE seq = ?1")?
            .execute([seq])?;
    }
    Ok(())
}

fn create_table(c: &Connection, day: i64) -> rusqlite::Result<()> {
    c.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} (k BLOB PRIMARY KEY, s INTEGER) WITHOUT ROWID;
         INSERT OR IGNORE INTO days (day, rows) VALUES ({day}, 0);",
        table(day)
    ))
}

/// Rewrites a day's table in key order, so its pages are full: rows
/// inserted in hash order leave pages about two-thirds full.
pub(super) fn compact(c: &Connection, day: i64) -> rusqlite::Result<()> {
    let name = table(day);
    c.execute_batch(&format!(
        "CREATE TABLE {name}_new (k BLOB PRIMARY KEY, s INTEGER) WITHOUT ROWID;
         INSERT INTO {name}_new SELECT k, s FROM {name} ORDER BY k;
         DROP TABLE {name};
         ALTER TABLE {name}_new RENAME TO {name};
         UPDATE days SET compacted_rows = rows WHERE day = {day};"
    ))
}

/// Drops the settled tables of days before `first_kept` (and their undated
/// index entries). Returns the days dropped and the IDs they held.
pub(super) fn drop_before(c: &Connection, first_kept: i64) -> rusqlite::Result<(u64, u64)> {
    let mut stmt = c.prepare("SELECT day, rows FROM days WHERE day < ?1")?;
    let old: Vec<(i64, i64)> = stmt
        .query_map([first_kept], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut ids = 0;
    for (day, rows) in &old {
        c.execute_batch(&format!(
            "DROP TABLE IF EXISTS {}; DELETE FROM days WHERE day = {day};",
            table(*day)
        ))?;
        ids += *rows as u64;
    }
    c.execute("DELETE FROM undated WHERE day < ?1", [first_kept])?;
    Ok((old.len() as u64, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dated_by_their_prefix_or_not_at_all() {
        assert_eq!(
            prefix_day("gen-1764500000-abc"),
            Some(1_764_500_000 / 86_400)
        );
        assert_eq!(prefix_day("gen-1600000000-abc"), None, "before 2023");
        assert_eq!(prefix_day("gen-99999999999-abc"), None, "year 5138");
        assert_eq!(prefix_day("gen-1764500000-"), None);
        assert_eq!(prefix_day("req-1764500000-abc"), None);
        assert_eq!(day_of_micros(-1), -1);
        assert_ne!(key128("gen-a"), key128("gen-b"));
    }
}
