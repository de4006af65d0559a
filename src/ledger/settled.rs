//! Settled IDs, kept small. An ID whose metadata is exported and whose
//! content is exported or not wanted needs only to be recognised again: it
//! leaves the rich `ids` table for a table of its day, `settled_<day>`,
//! whose rows are its 128-bit hash split in two 64-bit integers: `h`, the
//! row's key, and `k`, whose lowest bit says whether its content was
//! exported. A rowid table appended to in key order packs its pages full:
//! about 23 bytes a row once a day is compacted (a `(blob, state)` table
//! came to 25). Its day is the one its `gen-<unix>-` prefix names, so an ID
//! offered again finds its table from its own text; an ID without a usable
//! prefix is filed under its generation's day (else the day it settled), and
//! the `undated` index says where.
//!
//! Whole days go at once: retention drops a day's table, never rows one by
//! one; SQLite reuses the freed pages, so the file stops growing.
//!
//! The hash has 127 bits that tell IDs apart: for a billion IDs the chance
//! that two share one is about 10⁻²⁰ (64 bits would be a few %). Two IDs
//! whose first halves (`h`) meet are both kept: the second in `clashes`.
//! A failed or pending ID, or one whose content failed, keeps its text in
//! `ids`: it can be retried.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;
/// Prefix times before this (2023-01-01) or from 2100 on are not dates.
const FIRST_DATED: i64 = 1_672_531_200;
const LAST_DATED: i64 = 4_102_444_800;

/// A content state as a settled row keeps it: 0 never fetched (content was
/// off), 1 exported.
pub(super) type ContentState = i64;

/// An ID's settled key: the row key `h` and the rest `k`, its lowest bit
/// clear (it carries the content state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    h: i64,
    k: i64,
}

impl Key {
    pub(super) fn of(id: &str) -> Key {
        let hash = xxhash_rust::xxh3::xxh3_128(id.as_bytes());
        Key {
            h: (hash >> 64) as u64 as i64,
            k: (hash as u64 & !1) as i64,
        }
    }

    /// `k` with the content state in its lowest bit.
    fn with(self, content: ContentState) -> i64 {
        self.k | (content & 1)
    }

    /// Whether a stored `k` is this key's, and then its content state.
    fn matches(self, stored: i64) -> Option<ContentState> {
        (stored & !1 == self.k).then_some(stored & 1)
    }
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
pub(super) fn find_day(c: &Connection, id: &str, key: Key) -> rusqlite::Result<Option<i64>> {
    if let Some(day) = prefix_day(id) {
        return Ok(Some(day));
    }
    c.prepare_cached("SELECT day FROM undated WHERE h = ?1 AND k = ?2")?
        .query_row(params![key.h, key.k], |r| r.get(0))
        .optional()
}

/// The content state of a settled ID, if it is settled.
pub(super) fn lookup(
    c: &Connection,
    days: &BTreeSet<i64>,
    id: &str,
) -> rusqlite::Result<Option<ContentState>> {
    let key = Key::of(id);
    let Some(day) = find_day(c, id, key)? else {
        return Ok(None);
    };
    if !days.contains(&day) {
        return Ok(None);
    }
    let stored: Option<i64> = c
        .prepare_cached(&format!("SELECT k FROM {} WHERE h = ?1", table(day)))?
        .query_row([key.h], |r| r.get(0))
        .optional()?;
    match stored.map(|k| key.matches(k)) {
        None => Ok(None),
        Some(Some(content)) => Ok(Some(content)),
        // Another ID holds this `h`: this one, if settled, is a clash.
        Some(None) => c
            .prepare_cached("SELECT s FROM clashes WHERE day = ?1 AND h = ?2 AND k = ?3")?
            .query_row(params![day, key.h, key.k], |r| r.get(0))
            .optional(),
    }
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

/// Moves IDs from `ids` into their days' settled tables, in the caller's
/// transaction. `now_micros` dates an ID with neither a prefix nor a
/// `created_at`. An ID settled before (content fetched later) is updated.
/// Rows go in in (day, key) order, and each day's count is updated once.
pub(super) fn settle(c: &Connection, rows: &[Settling], now_micros: i64) -> rusqlite::Result<()> {
    let mut days = days(c)?;
    let mut keyed = Vec::with_capacity(rows.len());
    for row in rows {
        let key = Key::of(&row.id);
        keyed.push((day_for(c, row, key, now_micros)?, key, row));
    }
    keyed.sort_unstable_by_key(|(day, key, _)| (*day, key.h));
    let mut added: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for (day, key, row) in keyed {
        if days.insert(day) {
            create_table(c, day)?;
        }
        if store(c, day, key, row.content, true)? {
            *added.entry(day).or_default() += 1;
        }
    }
    // Deleted in their own order: `ids` is laid out by `seq`, and a page
    // cache far smaller than the table thrashes on any other order.
    let mut seqs: Vec<i64> = rows.iter().filter_map(|r| r.seq).collect();
    seqs.sort_unstable();
    let mut delete = c.prepare_cached("DELETE FROM ids WHERE seq = ?1")?;
    for seq in seqs {
        delete.execute([seq])?;
    }
    for (day, n) in added {
        c.prepare_cached("UPDATE days SET rows = rows + ?2 WHERE day = ?1")?
            .execute([day, n])?;
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
    let key = Key::of(&row.id);
    let day = day_for(c, row, key, now_micros)?;
    if days.insert(day) {
        create_table(c, day)?;
    }
    if store(c, day, key, row.content, replace)? {
        c.prepare_cached("UPDATE days SET rows = rows + 1 WHERE day = ?1")?
            .execute([day])?;
    }
    if let Some(seq) = row.seq {
        c.prepare_cached("DELETE FROM ids WHERE seq = ?1")?
            .execute([seq])?;
    }
    Ok(())
}

/// Writes one key into day `day`'s table (or its clashes). Returns whether
/// it is new there.
fn store(
    c: &Connection,
    day: i64,
    key: Key,
    content: ContentState,
    replace: bool,
) -> rusqlite::Result<bool> {
    let name = table(day);
    let added = c
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO {name} (h, k) VALUES (?1, ?2)"
        ))?
        .execute(params![key.h, key.with(content)])?;
    if added > 0 {
        return Ok(true);
    }
    let stored: i64 = c
        .prepare_cached(&format!("SELECT k FROM {name} WHERE h = ?1"))?
        .query_row([key.h], |r| r.get(0))?;
    if key.matches(stored).is_none() {
        return clash(c, day, key, content, replace);
    }
    if replace {
        c.prepare_cached(&format!("UPDATE {name} SET k = ?2 WHERE h = ?1"))?
            .execute(params![key.h, key.with(content)])?;
    }
    Ok(false)
}

/// The day an ID settles under; an undated one is entered in the index.
fn day_for(c: &Connection, row: &Settling, key: Key, now_micros: i64) -> rusqlite::Result<i64> {
    if let Some(day) = find_day(c, &row.id, key)? {
        return Ok(day);
    }
    let day = day_of_micros(row.created_at.unwrap_or(now_micros));
    c.prepare_cached("INSERT INTO undated (h, k, day) VALUES (?1, ?2, ?3)")?
        .execute(params![key.h, key.k, day])?;
    Ok(day)
}

/// Keeps an ID whose `h` another ID of its day already holds. Returns
/// whether it is new.
fn clash(
    c: &Connection,
    day: i64,
    key: Key,
    content: ContentState,
    replace: bool,
) -> rusqlite::Result<bool> {
    let added = c
        .prepare_cached("INSERT OR IGNORE INTO clashes (day, h, k, s) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![day, key.h, key.k, content])?;
    if added == 0 && replace {
        c.prepare_cached("UPDATE clashes SET s = ?4 WHERE day = ?1 AND h = ?2 AND k = ?3")?
            .execute(params![day, key.h, key.k, content])?;
    }
    Ok(added > 0)
}

fn create_table(c: &Connection, day: i64) -> rusqlite::Result<()> {
    c.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} (h INTEGER PRIMARY KEY, k INTEGER NOT NULL);
         INSERT OR IGNORE INTO days (day, rows) VALUES ({day}, 0);",
        table(day)
    ))
}

/// Rewrites a day's table in key order: appended in order, its pages are
/// packed full (rows inserted in hash order leave them partly empty).
pub(super) fn compact(c: &Connection, day: i64) -> rusqlite::Result<()> {
    let name = table(day);
    c.execute_batch(&format!(
        "CREATE TABLE {name}_new (h INTEGER PRIMARY KEY, k INTEGER NOT NULL);
         INSERT INTO {name}_new SELECT h, k FROM {name} ORDER BY h;
         DROP TABLE {name};
         ALTER TABLE {name}_new RENAME TO {name};
         UPDATE days SET compacted_rows = rows WHERE day = {day};"
    ))
}

/// Drops the settled tables of days before `first_kept` (and their undated
/// index entries and clashes). Returns the days dropped and the IDs they held.
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
    c.execute("DELETE FROM clashes WHERE day < ?1", [first_kept])?;
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
        assert_ne!(Key::of("gen-a"), Key::of("gen-b"));
        let key = Key::of("gen-a");
        assert_eq!(key.matches(key.with(1)), Some(1));
        assert_eq!(key.matches(key.with(0)), Some(0));
        assert_eq!(Key::of("gen-b").matches(key.with(1)), None);
    }

    #[test]
    fn two_ids_that_share_a_row_key_are_both_kept() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(super::super::schema::SCHEMA).unwrap();
        let id = "gen-1764500000-clash";
        let day = prefix_day(id).unwrap();
        let key = Key::of(id);
        let mut days = BTreeSet::new();
        // Another ID already holds this `h` in the day's table.
        let other = Settling {
            seq: None,
            id: "gen-1764500000-other".into(),
            content: 0,
            created_at: None,
        };
        put(&c, &mut days, &other, 0, true).unwrap();
        c.execute(&format!("UPDATE {} SET h = ?1", table(day)), [key.h])
            .unwrap();
        assert_eq!(lookup(&c, &days, id).unwrap(), None, "not settled yet");
        let row = Settling {
            seq: None,
            id: id.into(),
            content: 1,
            created_at: None,
        };
        put(&c, &mut days, &row, 0, true).unwrap();
        assert_eq!(lookup(&c, &days, id).unwrap(), Some(1));
        let rows: i64 = c
            .query_row("SELECT rows FROM days WHERE day = ?1", [day], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2, "both counted");
        put(&c, &mut days, &row, 0, true).unwrap();
        let rows: i64 = c
            .query_row("SELECT rows FROM days WHERE day = ?1", [day], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2, "settling again counts nothing");
    }
}
