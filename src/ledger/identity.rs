//! The ledger's mark: SQLite's `application_id` says a database file is a
//! genledger ledger, and `user_version` which layout it holds. A database
//! that is someone else's is refused rather than taken over; one made by a
//! newer genledger is refused rather than misread.

use rusqlite::Connection;

/// `Gldr`, in SQLite's header; `file(1)` and other tools see it too.
const APPLICATION_ID: i32 = 0x476c_6472;

/// The layout this version writes. Ledgers from before the mark have 0;
/// 1 kept every ID in `ids`; 2 moves settled IDs to tables of their day;
/// 3 numbers IDs in `ids` within their day and finds them through
/// `ids_day_key` (an older genledger would number and look up otherwise).
pub(super) const LAYOUT_VERSION: i32 = 3;

/// The first layout that keeps settled IDs in tables of their day.
pub(super) const SETTLED_BY_DAY: i32 = 2;

/// The tables genledger has ever made. An unmarked database holding only
/// these is an older genledger ledger.
const OUR_TABLES: [&str; 12] = [
    "days",
    "clashes",
    "failures",
    "undated",
    "ids",
    "file_rows",
    "files",
    "runs",
    "learned_rates",
    "queue_offsets",
    "old_ids",
    "old_file_rows",
];

/// What a database file is, as far as genledger is concerned.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Identity {
    /// Marked as a ledger of a layout this version reads.
    Ours,
    /// Empty, or an older ledger made before the mark.
    Unmarked,
    /// Another program's database; its tables, for the message.
    Foreign(Vec<String>),
    /// A ledger from a newer genledger, in layout `version`.
    Newer(i32),
}

pub(super) fn identify(c: &Connection) -> rusqlite::Result<Identity> {
    let application_id: i32 = c.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i32 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if application_id == APPLICATION_ID {
        return Ok(if version > LAYOUT_VERSION {
            Identity::Newer(version)
        } else {
            Identity::Ours
        });
    }
    let mut stmt = c.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let tables = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let foreign = application_id != 0
        || tables
            .iter()
            .any(|t| !OUR_TABLES.contains(&t.as_str()) && !t.starts_with("settled_"));
    Ok(if foreign {
        Identity::Foreign(tables)
    } else {
        Identity::Unmarked
    })
}

/// The layout the database says it holds (0 when unmarked).
pub(super) fn version(c: &Connection) -> rusqlite::Result<i32> {
    c.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Marks the database as a ledger in the current layout.
pub(super) fn mark(c: &Connection) -> rusqlite::Result<()> {
    c.pragma_update(None, "application_id", APPLICATION_ID)?;
    c.pragma_update(None, "user_version", LAYOUT_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_older_ledgers_are_adopted_others_refused() {
        let c = Connection::open_in_memory().unwrap();
        assert_eq!(identify(&c).unwrap(), Identity::Unmarked);
        c.execute_batch("CREATE TABLE ids (id TEXT); CREATE TABLE runs (run_id TEXT);")
            .unwrap();
        assert_eq!(identify(&c).unwrap(), Identity::Unmarked);
        mark(&c).unwrap();
        assert_eq!(identify(&c).unwrap(), Identity::Ours);
        c.pragma_update(None, "user_version", LAYOUT_VERSION + 1)
            .unwrap();
        assert_eq!(identify(&c).unwrap(), Identity::Newer(LAYOUT_VERSION + 1));

        let other = Connection::open_in_memory().unwrap();
        other
            .execute_batch("CREATE TABLE ids (id TEXT); CREATE TABLE invoices (n INTEGER);")
            .unwrap();
        assert_eq!(
            identify(&other).unwrap(),
            Identity::Foreign(vec!["ids".into(), "invoices".into()])
        );
        let marked_by_another = Connection::open_in_memory().unwrap();
        marked_by_another
            .pragma_update(None, "application_id", 42)
            .unwrap();
        assert!(matches!(
            identify(&marked_by_another).unwrap(),
            Identity::Foreign(_)
        ));
    }
}
