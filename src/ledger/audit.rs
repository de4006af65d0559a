//! The ledger's own rules, checked from its tables (`genledger state
//! check`): SQLite's integrity check, and what the commit protocol and the
//! compact layout promise of the rows. What needs the output directory
//! (are the committed files whole, are the manifests there, where do the
//! queue offsets point) is the caller's; the ledger lists what to look at.

use std::collections::BTreeSet;

use rusqlite::{Connection, params};

use super::content::CONTENT_KIND;
use super::{FILE_COMMITTED, FILE_STAGED, Ledger, LedgerError, QueueOffset, settled};

/// A rule broken, or something worth a word, named by the rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The rule: `integrity`, `unsettled_file`, `file_rows`, `working_set`,
    /// `days`, `runs`, and the caller's own.
    pub check: &'static str,
    pub message: String,
}

impl Finding {
    pub fn new(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            message: message.into(),
        }
    }
}

/// What the ledger's tables say of themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    pub problems: Vec<Finding>,
    /// Not wrong, but worth knowing: what the last run left for the next
    /// run's start to settle.
    pub warnings: Vec<Finding>,
    /// Each run's manifest as recorded: (run ID, path relative to the output).
    pub manifests: Vec<(String, String)>,
}

/// A file as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerFile {
    pub run_id: String,
    /// The table it belongs to (`generations`, `content`, or `failures`
    /// after a rebuild).
    pub kind: String,
    /// Relative to the output directory, `/`-separated.
    pub path: String,
    pub bytes: Option<i64>,
    pub sha256: Option<String>,
}

/// How many IDs a finding names as examples.
const EXAMPLES: i64 = 3;

impl Ledger {
    /// Checks the tables against SQLite's integrity check and the ledger's
    /// own rules. Hold the state lock: a run in progress has files open on
    /// purpose. A ledger whose structure is damaged is not checked further.
    pub fn audit(&self) -> Result<Audit, LedgerError> {
        self.sql(|c| {
            let mut audit = Audit::default();
            integrity(c, &mut audit)?;
            if !audit.problems.is_empty() {
                return Ok(audit);
            }
            runs(c, &mut audit)?;
            unsettled_files(c, &mut audit)?;
            file_links(c, &mut audit)?;
            working_set(c, &mut audit)?;
            days(c, &mut audit)?;
            Ok(audit)
        })
    }

    /// Every committed file, by path.
    pub fn committed_file_list(&self) -> Result<Vec<LedgerFile>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare(
                "SELECT run_id, kind, path, bytes, sha256 FROM files WHERE status = ?1 ORDER BY path",
            )?;
            let rows = stmt.query_map([FILE_COMMITTED], |r| {
                Ok(LedgerFile {
                    run_id: r.get(0)?,
                    kind: r.get(1)?,
                    path: r.get(2)?,
                    bytes: r.get(3)?,
                    sha256: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Every saved queue offset, by path.
    pub fn queue_offsets(&self) -> Result<Vec<QueueOffset>, LedgerError> {
        self.sql(|c| {
            let mut stmt =
                c.prepare("SELECT path, inode, offset, lines FROM queue_offsets ORDER BY path")?;
            let rows = stmt.query_map([], |r| {
                Ok(QueueOffset {
                    path: r.get(0)?,
                    inode: r.get::<_, i64>(1)? as u64,
                    offset: r.get::<_, i64>(2)? as u64,
                    lines: r.get::<_, i64>(3)? as u64,
                })
            })?;
            rows.collect()
        })
    }
}

/// SQLite's own check of pages, indexes and constraints.
fn integrity(c: &Connection, audit: &mut Audit) -> rusqlite::Result<()> {
    let mut stmt = c.prepare("PRAGMA integrity_check")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if lines != ["ok"] {
        for line in lines {
            audit.problems.push(Finding::new("integrity", line));
        }
    }
    Ok(())
}

/// Every run is closed by the next run's start at the latest, and a run
/// that committed files names them in a manifest.
fn runs(c: &Connection, audit: &mut Audit) -> rusqlite::Result<()> {
    let latest = latest_run(c)?;
    let mut stmt = c.prepare(
        "SELECT r.run_no, r.run_id, r.finished_at IS NULL, r.manifest, coalesce(f.n, 0)
         FROM runs r LEFT JOIN (SELECT run_id, count(*) AS n FROM files WHERE status = ?1
                                GROUP BY run_id) AS f ON f.run_id = r.run_id
         ORDER BY r.run_no",
    )?;
    let mut rows = stmt.query([FILE_COMMITTED])?;
    while let Some(row) = rows.next()? {
        let (run_no, run_id): (i64, String) = (row.get(0)?, row.get(1)?);
        let (dead, manifest, files): (bool, Option<String>, i64) =
            (row.get(2)?, row.get(3)?, row.get(4)?);
        match (dead, manifest) {
            (true, _) if Some(run_no) == latest => audit.warnings.push(Finding::new(
                "runs",
                format!("run {run_id} died before it finished; the next run's start writes its manifest and failures file"),
            )),
            (true, _) => audit.problems.push(Finding::new(
                "runs",
                format!("run {run_id} never finished, and a later run's start did not close it"),
            )),
            (false, Some(path)) => audit.manifests.push((run_id, path)),
            (false, None) if files > 0 => audit.problems.push(Finding::new(
                "runs",
                format!("run {run_id} committed {files} files, but no manifest names them"),
            )),
            (false, None) => {}
        }
    }
    Ok(())
}

fn latest_run(c: &Connection) -> rusqlite::Result<Option<i64>> {
    c.query_row("SELECT max(run_no) FROM runs", [], |r| r.get(0))
}

/// Each run's start settles every file an earlier run left open or
/// staged, and a run that finishes commits its own: only the last run, if
/// it died or failed, can have left one.
fn unsettled_files(c: &Connection, audit: &mut Audit) -> rusqlite::Result<()> {
    let latest = latest_run(c)?;
    let mut stmt = c.prepare(
        "SELECT f.path, f.status, f.run_id, r.run_no, r.finished_at IS NULL, r.exit_code
         FROM files f LEFT JOIN runs r ON r.run_id = f.run_id
         WHERE f.status != ?1 ORDER BY f.file_id",
    )?;
    let mut rows = stmt.query([FILE_COMMITTED])?;
    while let Some(row) = rows.next()? {
        let (path, status, run_id): (String, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let (run_no, dead, exit): (Option<i64>, Option<bool>, Option<i64>) =
            (row.get(3)?, row.get(4)?, row.get(5)?);
        let state = if status == FILE_STAGED {
            "staged"
        } else {
            "open"
        };
        let file = format!("`{path}` is {state}");
        let (problem, message) = match (run_no, dead, exit) {
            (None, _, _) => (
                true,
                format!("{file}, and its run {run_id} is not recorded"),
            ),
            (Some(n), _, _) if Some(n) != latest => (
                true,
                format!("{file}: left by run {run_id}, and not settled by a later run's start"),
            ),
            (_, Some(true), _) => (
                false,
                format!("{file}: run {run_id} died; the next run's start settles it"),
            ),
            (_, _, Some(2)) => (
                false,
                format!(
                    "{file}: run {run_id} ended with an error; the next run's start settles it"
                ),
            ),
            _ => (true, format!("{file}, though its run {run_id} finished")),
        };
        let list = if problem {
            &mut audit.problems
        } else {
            &mut audit.warnings
        };
        list.push(Finding::new("unsettled_file", message));
    }
    Ok(())
}

/// The rows linked to a file not yet committed are what its commit will
/// mark exported: none may be exported already, none linked twice, and a
/// staged file's links are exactly its rows.
fn file_links(c: &Connection, audit: &mut Audit) -> rusqlite::Result<()> {
    let mut stmt = c.prepare(
        "SELECT f.path, count(*) FROM file_rows l JOIN files f ON f.file_id = l.file_id
         LEFT JOIN ids i ON i.seq = l.seq
         WHERE f.status != ?1 AND (i.seq IS NULL
               OR (f.kind = ?2 AND i.content_status = 1) OR (f.kind != ?2 AND i.status = 1))
         GROUP BY f.file_id ORDER BY f.path",
    )?;
    let mut rows = stmt.query(params![FILE_COMMITTED, CONTENT_KIND])?;
    while let Some(row) = rows.next()? {
        let (path, n): (String, i64) = (row.get(0)?, row.get(1)?);
        audit.problems.push(Finding::new(
            "file_rows",
            format!("`{path}` is not committed, yet {n} of its rows are IDs already exported (or settled); its commit would export them twice"),
        ));
    }
    let twice: i64 = c.query_row(
        "SELECT count(*) FROM (SELECT l.seq FROM file_rows l JOIN files f ON f.file_id = l.file_id
                               WHERE f.status != ?1 GROUP BY f.kind, l.seq HAVING count(*) > 1)",
        [FILE_COMMITTED],
        |r| r.get(0),
    )?;
    if twice > 0 {
        audit.problems.push(Finding::new(
            "file_rows",
            format!("{twice} IDs are linked to more than one uncommitted file of a table; committing them would export them twice"),
        ));
    }
    let mut stmt = c.prepare(
        "SELECT f.path, coalesce(f.rows, -1), (SELECT count(*) FROM file_rows l WHERE l.file_id = f.file_id)
         FROM files f WHERE f.status = ?1 ORDER BY f.path",
    )?;
    let mut rows = stmt.query([FILE_STAGED])?;
    while let Some(row) = rows.next()? {
        let (path, want, linked): (String, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        if want != linked {
            audit.problems.push(Finding::new(
                "file_rows",
                format!("`{path}` is staged with {want} rows, but {linked} IDs are linked to it"),
            ));
        }
    }
    Ok(())
}

/// An exported ID stays in the working set only while its content is due
/// (never fetched but wanted, pending, or failed): its commit settles it.
fn working_set(c: &Connection, audit: &mut Audit) -> rusqlite::Result<()> {
    let unsettled = "FROM ids WHERE status = 1 AND (content_status = 1
                     OR (content_status IS NULL AND coalesce(content_wanted, 0) = 0))";
    let n: i64 = c.query_row(&format!("SELECT count(*) {unsettled}"), [], |r| r.get(0))?;
    if n == 0 {
        return Ok(());
    }
    let mut stmt = c.prepare(&format!("SELECT id {unsettled} ORDER BY seq LIMIT ?1"))?;
    let examples: Vec<String> = stmt
        .query_map([EXAMPLES], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    audit.problems.push(Finding::new(
        "working_set",
        format!(
            "{n} exported IDs are still in the working set with no content due (e.g. {}); their commit should have settled them",
            examples.join(", ")
        ),
    ));
    Ok(())
}

/// `days.rows` counts each day's settled table, and every such table has
/// its row in `days`.
fn days(c: &Connection, audit: &mut Audit) -> rusqlite::Result<()> {
    let mut stmt = c.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'settled\\_%' ESCAPE '\\'")?;
    let mut tables: BTreeSet<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = c.prepare("SELECT day, rows FROM days ORDER BY day")?;
    let days: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (day, rows) in days {
        let table = settled::table(day);
        let date = date(day);
        if !tables.remove(&table) {
            audit.problems.push(Finding::new(
                "days",
                format!("day {date} counts {rows} settled IDs, but its table `{table}` is missing"),
            ));
            continue;
        }
        let held: i64 = c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        if held != rows {
            audit.problems.push(Finding::new(
                "days",
                format!("day {date}: `days.rows` says {rows} settled IDs, `{table}` holds {held}"),
            ));
        }
    }
    for table in tables {
        audit.problems.push(Finding::new(
            "days",
            format!("`{table}` holds settled IDs, but `days` does not count it"),
        ));
    }
    Ok(())
}

/// `YYYY-MM-DD` of a day since the epoch.
fn date(day: i64) -> String {
    chrono::DateTime::from_timestamp(day * 86_400, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| day.to_string())
}
