//! The ledger's tables, and the upgrade of a ledger an older version made.

use rusqlite::{Connection, params};

/// Kept lean on purpose: every ID costs two random B-tree writes (admitted,
/// exported), and file membership is appended to `file_rows` in write order.
/// Leftover pending IDs are found by one scan per run, not an index that
/// every write would have to maintain.
///
/// `ids.content_status` is the content's own state: NULL never fetched, else
/// an [`IdStatus`](super::IdStatus). `ids.created_at` is copied from `file_rows` when the
/// metadata commits, so content fetched by a later run is filed under the
/// generation's day. Columns added after the first release are also in
/// [`ADDED_COLUMNS`], which brings older ledgers up to date.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ids (
    id TEXT PRIMARY KEY,
    status INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    http_status INTEGER,
    last_error TEXT,
    first_seen INTEGER NOT NULL,
    last_run INTEGER NOT NULL,
    content_status INTEGER,
    content_reason TEXT,
    created_at INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS file_rows (
    file_id INTEGER NOT NULL,
    id TEXT NOT NULL,
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
    manifest TEXT
);
CREATE TABLE IF NOT EXISTS queue_offsets (
    path TEXT PRIMARY KEY,
    inode INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    lines INTEGER NOT NULL
);
";

/// Columns later versions added: `(table, column, type)`. A ledger made
/// before them gets them by `ALTER TABLE` when opened (NULL in old rows).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("ids", "content_status", "INTEGER"),
    ("ids", "content_reason", "TEXT"),
    ("ids", "created_at", "INTEGER"),
    ("file_rows", "created_at", "INTEGER"),
];

/// Brings a ledger made by an older version up to the current columns, in one
/// transaction so two openers cannot both add a column.
pub(super) fn add_missing_columns(c: &Connection) -> rusqlite::Result<()> {
    let missing = |table: &str, column: &str| -> rusqlite::Result<bool> {
        let mut stmt = c.prepare_cached("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
        Ok(!stmt.exists(params![table, column])?)
    };
    let mut any = false;
    for (table, column, _) in ADDED_COLUMNS {
        any |= missing(table, column)?;
    }
    if !any {
        return Ok(());
    }
    c.execute_batch("BEGIN IMMEDIATE")?;
    let added = ADDED_COLUMNS.iter().try_for_each(|(table, column, ty)| {
        if missing(table, column)? {
            c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
        Ok(())
    });
    match added {
        Ok(()) => c.execute_batch("COMMIT"),
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
