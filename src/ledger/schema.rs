//! The ledger's tables, and the upgrade of a ledger an older version made.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

/// Kept lean on purpose, because a large ledger's cost is the B-tree pages
/// each batch of IDs dirties (and logs, and checkpoints):
///
/// - `ids` rows are numbered (`seq`) in admission order within the day of
///   the ID's prefix ([`next_seq`](super::numbering::next_seq)), so a day's rows are appended together,
///   and a file's rows (one day's, written in roughly that order) are
///   marked exported and deleted by a near-sequential pass over the table;
/// - an ID is found through its day and `key`, a 64-bit hash of it
///   ([`id_key`]), in `ids_day_key`. Within a day new IDs land at random
///   places in that index, but it is a quarter the size of a table keyed
///   by the text (4,584 pages against 18,086 for a million IDs), so
///   admission dirties that many fewer pages, and a day's entries lie
///   together, so a file's commit deletes from a small part of it. The
///   text is compared too, so two IDs that share a hash stay two IDs;
/// - `file_rows` names rows by `seq`, not by the ID's text (5,345 pages
///   against 13,277).
///
/// Leftover pending IDs are found by one scan per run, not an index that
/// every write would have to maintain.
///
/// `ids.content_status` is the content's own state: NULL never fetched, else
/// an [`IdStatus`](super::IdStatus). `ids.created_at` is copied from `file_rows` when the
/// metadata commits, so content fetched by a later run is filed under the
/// generation's day. Ledgers made before this layout are rebuilt into it
/// when opened ([`upgrade`]).
///
/// `failures` keeps each run's rows of the failures file (see
/// [`failures`](super::failures)); created here, like every table, with `IF
/// NOT EXISTS`, so a ledger made before it gains it when next opened.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ids (
    seq INTEGER PRIMARY KEY,
    key INTEGER NOT NULL,
    id TEXT NOT NULL,
    status INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    http_status INTEGER,
    last_error TEXT,
    first_seen INTEGER NOT NULL,
    last_run INTEGER NOT NULL,
    content_status INTEGER,
    content_reason TEXT,
    created_at INTEGER,
    first_404 INTEGER
);
CREATE INDEX IF NOT EXISTS ids_day_key ON ids((seq >> 32), key);
DROP INDEX IF EXISTS ids_key;
CREATE TABLE IF NOT EXISTS file_rows (
    file_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    created_at INTEGER
);
CREATE INDEX IF NOT EXISTS file_rows_file ON file_rows(file_id);
CREATE TABLE IF NOT EXISTS files (
    file_id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    temp_path TEXT NOT NULL,
    status INTEGER NOT NULL,
    rows INTEGER,
    bytes INTEGER,
    sha256 TEXT,
    min_created_at INTEGER,
    max_created_at INTEGER
);
CREATE TABLE IF NOT EXISTS runs (
    run_no INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    shard TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    exit_code INTEGER,
    manifest TEXT,
    message TEXT
);
CREATE TABLE IF NOT EXISTS learned_rates (
    api TEXT PRIMARY KEY,
    rate REAL NOT NULL,
    learned_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS days (
    day INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL,
    compacted_rows INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS undated (
    h INTEGER NOT NULL,
    k INTEGER NOT NULL,
    day INTEGER NOT NULL,
    PRIMARY KEY (h, k)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clashes (
    day INTEGER NOT NULL,
    h INTEGER NOT NULL,
    k INTEGER NOT NULL,
    s INTEGER NOT NULL,
    PRIMARY KEY (day, h, k)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue_offsets (
    path TEXT PRIMARY KEY,
    inode INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    lines INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    run_no INTEGER NOT NULL,
    id TEXT NOT NULL,
    line INTEGER,
    reason TEXT NOT NULL,
    http_status INTEGER,
    attempts INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_run ON failures(run_no);
";

/// The key an ID is found by: its 64-bit XXH3 hash, as SQLite's signed
/// integer. Ledgers store it, so the function must never change.
pub(super) fn id_key(id: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes()) as i64
}

/// Brings a ledger made before the current layout into it: its IDs are
/// numbered in the order first seen and keyed, and its file links follow
/// them. One transaction, so a crash leaves the old layout whole, and two
/// openers cannot both rebuild. A ledger already current is left alone.
pub(super) fn upgrade(c: &Connection) -> rusqlite::Result<()> {
    if !old_layout(c)? {
        return Ok(());
    }
    c.execute_batch("BEGIN IMMEDIATE")?;
    let rebuilt = if old_layout(c)? {
        // About 20 s for a million IDs, once.
        tracing::info!("rebuilding the state ledger in the current layout");
        rebuild(c)
    } else {
        Ok(())
    };
    match rebuilt {
        Ok(()) => c.execute_batch("COMMIT"),
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Columns added after a table's layout was set, as (table, column, type); a
/// ledger that lacks one gets it (NULL in every existing row).
const ADDED_COLUMNS: [(&str, &str, &str); 4] = [
    // When the first 404 for the ID came (microseconds), for the 404 window.
    ("ids", "first_404", "INTEGER"),
    // Whether the run that last took the ID fetches content: an exported ID
    // whose content is not wanted settles at once.
    ("ids", "content_wanted", "INTEGER"),
    // Why a run ended with an error, for the runs that did.
    ("runs", "message", "TEXT"),
    // The multipart upload of a staged file to a remote output, recorded
    // before its first part is sent, so a dead process's upload is aborted.
    ("files", "upload_id", "TEXT"),
];

/// Adds the [`ADDED_COLUMNS`] a ledger lacks, in one transaction that
/// looks again once it holds the write lock, so two openers cannot both add.
pub(super) fn add_columns(c: &Connection) -> rusqlite::Result<()> {
    let missing = |c: &Connection| -> rusqlite::Result<Vec<(&str, &str, &str)>> {
        let mut missing = Vec::new();
        for (table, name, kind) in ADDED_COLUMNS {
            if !columns(c, table)?.iter().any(|p| p == name) {
                missing.push((table, name, kind));
            }
        }
        Ok(missing)
    };
    if missing(c)?.is_empty() {
        return Ok(());
    }
    c.execute_batch("BEGIN IMMEDIATE")?;
    let added = missing(c).and_then(|columns| {
        columns.into_iter().try_for_each(|(table, name, kind)| {
            c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {kind}"))
        })
    });
    match added {
        Ok(()) => c.execute_batch("COMMIT"),
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// An `ids` table without `seq`: the layout before IDs were numbered.
fn old_layout(c: &Connection) -> rusqlite::Result<bool> {
    let columns = columns(c, "ids")?;
    Ok(!columns.is_empty() && !columns.iter().any(|name| name == "seq"))
}

fn columns(c: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let names = stmt.query_map([table], |r| r.get(0))?;
    names.collect()
}

/// Moves the old tables aside, creates the current ones and copies the rows
/// across, IDs first so the file links can name them by `seq`.
fn rebuild(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "ALTER TABLE ids RENAME TO old_ids;
         ALTER TABLE file_rows RENAME TO old_file_rows;
         DROP INDEX IF EXISTS file_rows_file;",
    )?;
    c.execute_batch(SCHEMA)?;
    copy_ids(c)?;
    copy_file_rows(c)?;
    c.execute_batch("DROP TABLE old_ids; DROP TABLE old_file_rows;")
}

/// Copies `old_ids` into `ids` in the order first seen, keyed.
fn copy_ids(c: &Connection) -> rusqlite::Result<()> {
    // The columns both layouts have; those the first release lacked stay NULL.
    let current = columns(c, "ids")?;
    let kept: Vec<String> = columns(c, "old_ids")?
        .into_iter()
        .filter(|name| name != "id" && current.contains(name))
        .collect();
    let list: String = kept.iter().map(|name| format!(", {name}")).collect();
    let values: String = (0..kept.len()).map(|i| format!(", ?{}", i + 3)).collect();
    let mut read = c.prepare(&format!(
        "SELECT id{list} FROM old_ids ORDER BY first_seen, id"
    ))?;
    let seq_at = kept.len() + 3;
    let mut insert = c.prepare(&format!(
        "INSERT INTO ids (seq, key, id{list}) VALUES (?{seq_at}, ?1, ?2{values})"
    ))?;
    let mut rows = read.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let seq = super::numbering::next_seq(c, &id)?;
        let mut values = vec![Value::Integer(id_key(&id)), Value::Text(id)];
        for i in 0..kept.len() {
            values.push(row.get(i + 1)?);
        }
        values.push(Value::Integer(seq));
        insert.execute(params_from_iter(values))?;
    }
    Ok(())
}

/// Copies `old_file_rows` into `file_rows`, naming each row's ID by `seq`.
fn copy_file_rows(c: &Connection) -> rusqlite::Result<()> {
    let created_at = if columns(c, "old_file_rows")?
        .iter()
        .any(|n| n == "created_at")
    {
        "created_at"
    } else {
        "NULL"
    };
    let mut read = c.prepare(&format!(
        "SELECT file_id, id, {created_at} FROM old_file_rows ORDER BY rowid"
    ))?;
    let mut find =
        c.prepare("SELECT seq FROM ids WHERE (seq >> 32) IN (?3, 0) AND key = ?1 AND id = ?2")?;
    // A link to an ID the ledger never admitted cannot be made by this
    // program; should one exist, its ID is kept, as pending.
    let mut admit = c.prepare(
        "INSERT INTO ids (seq, key, id, status, first_seen, last_run) VALUES (?3, ?1, ?2, 0, 0, 0)",
    )?;
    let mut link =
        c.prepare("INSERT INTO file_rows (file_id, seq, created_at) VALUES (?1, ?2, ?3)")?;
    let mut rows = read.query([])?;
    while let Some(row) = rows.next()? {
        let (file_id, id, created): (i64, String, Option<i64>) =
            (row.get(0)?, row.get(1)?, row.get(2)?);
        let key = id_key(&id);
        let seq = match find
            .query_row(params![key, id, super::numbering::seq_day(&id)], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
        {
            Some(seq) => seq,
            None => {
                let seq = super::numbering::next_seq(c, &id)?;
                admit.execute(params![key, id, seq])?;
                seq
            }
        };
        link.execute(params![file_id, seq, created])?;
    }
    Ok(())
}

/// Whether the database holds no table yet (a new ledger).
pub(super) fn is_empty(c: &Connection) -> rusqlite::Result<bool> {
    let tables: i64 = c.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok(tables == 0)
}

/// Brings a ledger of layout 0 or 1 (every ID in `ids`) into layout 2: each
/// exported ID whose content is settled or was never asked for moves to its
/// day's table. One transaction, so a process killed half-way leaves the
/// old layout whole and the next start does it again; two openers cannot
/// both do it.
pub(super) fn settle_older_layout(c: &Connection) -> rusqlite::Result<()> {
    let current = |c: &Connection| -> rusqlite::Result<bool> {
        Ok(super::identity::version(c)? >= super::identity::SETTLED_BY_DAY)
    };
    let marked_current = current(c)?;
    let has_rows: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM ids WHERE status = 1)",
        [],
        |r| r.get(0),
    )?;
    if marked_current || !has_rows {
        return Ok(());
    }
    let started = std::time::Instant::now();
    c.execute_batch("BEGIN IMMEDIATE")?;
    let moved = if current(c)? { Ok(0) } else { settle_all(c) };
    match moved {
        Ok(moved) => {
            super::identity::mark(c)?;
            c.execute_batch("COMMIT")?;
            tracing::info!(
                ids = moved,
                ms = started.elapsed().as_millis() as u64,
                "moved settled IDs into the compact layout (once)"
            );
            Ok(())
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Settles every exported ID whose content is settled or was never fetched.
fn settle_all(c: &Connection) -> rusqlite::Result<u64> {
    let now = chrono::Utc::now().timestamp_micros();
    let mut moved = 0;
    loop {
        let rows: Vec<super::settled::Settling> = {
            let mut stmt = c.prepare(
                "SELECT seq, id, coalesce(content_status, 0), created_at FROM ids
                 WHERE status = 1 AND (content_status IS NULL OR content_status = 1)
                 ORDER BY seq LIMIT 16384",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(super::settled::Settling {
                    seq: Some(r.get(0)?),
                    id: r.get(1)?,
                    content: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if rows.is_empty() {
            return Ok(moved);
        }
        moved += rows.len() as u64;
        super::settled::settle(c, &rows, now)?;
    }
}
