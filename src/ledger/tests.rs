//! The ledger's content bookkeeping and its upgrade of older ledgers.

use std::io::Write;
use std::path::Path;

use rusqlite::Connection;

use super::*;
use crate::atomic_file::PendingFile;
use crate::record::{FailureRow, Reason};

/// The tables as the first release made them, before content export and
/// before IDs were numbered: a committed ID, a pending one, and a staged
/// file holding the pending one.
const FIRST_SCHEMA: &str = "
CREATE TABLE ids (id TEXT PRIMARY KEY, status INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0, reason TEXT, http_status INTEGER, last_error TEXT,
    first_seen INTEGER NOT NULL, last_run INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE file_rows (file_id INTEGER NOT NULL, id TEXT NOT NULL);
CREATE INDEX file_rows_file ON file_rows(file_id);
CREATE TABLE files (file_id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, kind TEXT NOT NULL,
    path TEXT NOT NULL, temp_path TEXT NOT NULL, status INTEGER NOT NULL, rows INTEGER,
    bytes INTEGER, sha256 TEXT, min_created_at INTEGER, max_created_at INTEGER);
CREATE TABLE runs (run_no INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, shard TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT, exit_code INTEGER, manifest TEXT);
CREATE TABLE queue_offsets (path TEXT PRIMARY KEY, inode INTEGER NOT NULL,
    offset INTEGER NOT NULL, lines INTEGER NOT NULL);
INSERT INTO ids (id, status, first_seen, last_run) VALUES ('gen-left', 0, 8, 0), ('gen-old', 1, 7, 0);
INSERT INTO files (file_id, run_id, kind, path, temp_path, status) VALUES (5, 'old', 'generations', 'p', 't', 1);
INSERT INTO file_rows (file_id, id) VALUES (5, 'gen-left');
";

fn columns(path: &Path, table: &str) -> Vec<String> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info(?1)")
        .unwrap();
    stmt.query_map([table], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Writes a one-line file of `kind` holding `rows` through the whole protocol.
fn commit(ledger: &mut Ledger, dir: &Path, kind: &str, rows: &[(&str, Option<i64>)]) {
    let file_id = publish(ledger, dir, kind, rows);
    ledger.mark_committed(&[file_id]).unwrap();
}

/// Writes a one-line file of `kind` holding `rows` and publishes it, short
/// of the commit; returns its file ID.
fn publish(ledger: &mut Ledger, dir: &Path, kind: &str, rows: &[(&str, Option<i64>)]) -> i64 {
    let name = format!("{kind}-{}.txt", rows[0].0);
    let (pending, mut out) = PendingFile::create(dir.join(kind).join(name)).unwrap();
    out.write_all(b"rows").unwrap();
    let file_id = ledger.open_file("run", kind, &pending).unwrap();
    let linked: Vec<(i64, Option<i64>)> =
        rows.iter().map(|(id, at)| (seq(ledger, id), *at)).collect();
    ledger.link(file_id, &linked).unwrap();
    let facts = FileFacts {
        rows: rows.len() as u64,
        min_created_at: 0,
        max_created_at: 0,
    };
    ledger.publish_file(file_id, pending, out, &facts).unwrap();
    file_id
}

/// The ledger's number for an admitted ID.
fn seq(ledger: &Ledger, id: &str) -> i64 {
    ledger
        .conn
        .query_row("SELECT seq FROM ids WHERE id = ?1", [id], |r| r.get(0))
        .unwrap()
}

fn ids(leftovers: Vec<Leftover>) -> Vec<String> {
    leftovers.into_iter().map(|l| l.id).collect()
}

#[test]
fn opens_a_first_release_ledger_and_rebuilds_it_in_the_current_layout() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(FIRST_SCHEMA)
        .unwrap();
    let mut ledger = Ledger::open(&db, dir.path()).unwrap();
    // A second connection finds nothing left to do.
    let _again = Ledger::open_for_admission(&db, dir.path()).unwrap();
    for column in [
        "seq",
        "key",
        "content_status",
        "content_reason",
        "created_at",
    ] {
        assert!(columns(&db, "ids").iter().any(|c| c == column), "{column}");
    }
    assert!(columns(&db, "file_rows").iter().any(|c| c == "seq"));
    assert!(
        columns(&db, "old_ids").is_empty(),
        "the old tables are gone"
    );
    assert_eq!(
        seq(&ledger, "gen-left"),
        2,
        "numbered in the order first seen"
    );
    assert_eq!(
        ledger.status_of("gen-old").unwrap(),
        Some(IdStatus::Exported),
        "the exported ID moved to the compact layout"
    );
    // Exported before content export existed: offered again to a run with
    // content on, its content (only) is due.
    ledger.set_admit_rules(AdmitRules {
        content: true,
        ..AdmitRules::default()
    });
    let run_no = ledger.begin_run("r", "0", "now").unwrap();
    let admitted = ledger
        .admit(&["gen-old", "gen-left"], run_no, 9, None)
        .unwrap();
    assert!(
        matches!(admitted[0], Admission::ContentDue { .. }),
        "{admitted:?}"
    );
    assert_eq!(
        admitted[1],
        Admission::Fetch {
            seq: 2,
            first_404_micros: None,
            content_due: true
        }
    );
    // The staged file's link followed its ID into the new numbering.
    ledger.mark_committed(&[5]).unwrap();
    assert_eq!(
        ledger.status_of("gen-left").unwrap(),
        Some(IdStatus::Exported)
    );
}

#[test]
fn a_content_commit_marks_the_content_and_never_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.db"), dir.path()).unwrap();
    ledger.set_admit_rules(AdmitRules {
        content: true,
        ..AdmitRules::default()
    });
    let run = ledger.begin_run("r1", "0", "now").unwrap();
    ledger.admit(&["gen-a", "gen-b"], run, 1, None).unwrap();
    // The content of gen-b lands before its metadata (a crash between them).
    commit(&mut ledger, dir.path(), "content", &[("gen-b", None)]);
    commit(
        &mut ledger,
        dir.path(),
        "generations",
        &[("gen-a", Some(42))],
    );
    assert_eq!(ledger.status_of("gen-a").unwrap(), Some(IdStatus::Exported));
    assert_eq!(ledger.status_of("gen-b").unwrap(), Some(IdStatus::Pending));

    let next = ledger.begin_run("r2", "0", "now").unwrap();
    let pending = ledger.take_leftovers(next, 0, 10).unwrap();
    assert_eq!(ids(pending.clone()), ["gen-b"]);
    assert!(!pending[0].content_due, "gen-b's content is already out");
    let due = ledger.take_content_leftovers(next, 0, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].id.as_str(), due[0].created_at), ("gen-a", Some(42)));
    assert!(
        ledger
            .take_content_leftovers(next, 0, 10)
            .unwrap()
            .is_empty(),
        "taken once per run"
    );

    commit(&mut ledger, dir.path(), "content", &[("gen-a", Some(42))]);
    assert_eq!(ledger.content_counts().unwrap(), (0, 1, 0));
    let later = ledger.begin_run("r3", "0", "now").unwrap();
    assert!(
        ledger
            .take_content_leftovers(later, 0, 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn failed_content_stays_failed_until_requeued_and_pending_content_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.db"), dir.path()).unwrap();
    ledger.set_admit_rules(AdmitRules {
        content: true,
        ..AdmitRules::default()
    });
    let run = ledger.begin_run("r1", "0", "now").unwrap();
    ledger.admit(&["gen-a", "gen-b"], run, 1, None).unwrap();
    commit(
        &mut ledger,
        dir.path(),
        "generations",
        &[("gen-a", None), ("gen-b", None)],
    );
    let row = |id: &str, reason| FailureRow {
        id: id.into(),
        line: None,
        reason,
        http_status: Some(403),
        attempts: 1,
        message: String::new(),
        first_404_micros: None,
    };
    ledger
        .record_content(&[row("gen-a", Reason::ContentForbidden)], IdStatus::Failed)
        .unwrap();
    ledger
        .record_content(&[row("gen-b", Reason::ContentStopped)], IdStatus::Pending)
        .unwrap();
    assert_eq!(ledger.content_counts().unwrap(), (1, 0, 1));
    assert_eq!(ledger.status_of("gen-a").unwrap(), Some(IdStatus::Exported));
    let next = ledger.begin_run("r2", "0", "now").unwrap();
    assert_eq!(
        ids(ledger.take_content_leftovers(next, 0, 10).unwrap()),
        ["gen-b"]
    );

    assert_eq!(ledger.requeue_failed().unwrap(), (0, 1));
    let last = ledger.begin_run("r3", "0", "now").unwrap();
    assert_eq!(
        ids(ledger.take_content_leftovers(last, 0, 10).unwrap()),
        ["gen-a", "gen-b"]
    );
}

#[test]
fn files_committed_together_each_mark_their_own_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.db"), dir.path()).unwrap();
    ledger.set_admit_rules(AdmitRules {
        content: true,
        ..AdmitRules::default()
    });
    let run = ledger.begin_run("r1", "0", "now").unwrap();
    ledger
        .admit(&["gen-a", "gen-b", "gen-c", "gen-d"], run, 1, None)
        .unwrap();
    let files = [
        publish(
            &mut ledger,
            dir.path(),
            "generations",
            &[("gen-a", Some(1))],
        ),
        publish(&mut ledger, dir.path(), "content", &[("gen-b", Some(2))]),
        publish(
            &mut ledger,
            dir.path(),
            "generations",
            &[("gen-c", Some(3)), ("gen-b", Some(2))],
        ),
    ];
    assert_eq!(
        ledger.status_counts().unwrap(),
        (4, 0, 0),
        "published, not committed"
    );

    ledger.mark_committed(&files).unwrap();
    assert_eq!(ledger.status_counts().unwrap(), (1, 3, 0));
    assert_eq!(ledger.status_of("gen-d").unwrap(), Some(IdStatus::Pending));
    assert_eq!(
        ledger.content_counts().unwrap(),
        (2, 1, 0),
        "gen-b's content out, gen-a's and gen-c's due"
    );
    let next = ledger.begin_run("r2", "0", "now").unwrap();
    let due = ledger.take_content_leftovers(next, 0, 10).unwrap();
    let due: Vec<_> = due.iter().map(|l| (l.id.as_str(), l.created_at)).collect();
    assert_eq!(
        due,
        [("gen-a", Some(1)), ("gen-c", Some(3))],
        "created_at copied"
    );
    assert_eq!(
        ledger.reconcile().unwrap().committed,
        0,
        "nothing left staged"
    );
}

#[test]
fn the_checkpointer_copies_the_log_into_the_database_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let mut ledger = Ledger::open(&db, dir.path()).unwrap();
    ledger.leave_checkpoints_to_background().unwrap();
    let run = ledger.begin_run("r1", "0", "now").unwrap();
    let ids: Vec<String> = (0..5000).map(|i| format!("gen-1-{i:020}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    ledger.admit(&ids, run, 1, None).unwrap();
    let size = || std::fs::metadata(&db).unwrap().len();
    let before = size();

    let checkpointer = Checkpointer::start(&db, dir.path()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while size() < before + 50 * 4096 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(checkpointer);
    assert!(
        size() >= before + 50 * 4096,
        "5,000 IDs' pages reached the database file ({before} -> {} bytes)",
        size()
    );
    assert_eq!(ledger.status_counts().unwrap(), (5000, 0, 0));
}

#[test]
fn ids_that_share_a_key_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.db"), dir.path()).unwrap();
    let run = ledger.begin_run("r1", "0", "now").unwrap();
    // gen-a is stored under gen-b's key, as if their hashes collided.
    ledger
        .conn
        .execute(
            "INSERT INTO ids (key, id, status, first_seen, last_run) VALUES (?1, 'gen-a', 1, 1, 0)",
            [schema::id_key("gen-b")],
        )
        .unwrap();
    let admitted = ledger.admit(&["gen-b"], run, 2, None).unwrap();
    assert!(
        matches!(admitted[..], [Admission::Fetch { seq: 2, .. }]),
        "gen-b is new: {admitted:?}"
    );
    let failed = FailureRow {
        id: "gen-b".into(),
        line: None,
        reason: Reason::HttpError,
        http_status: Some(400),
        attempts: 1,
        message: String::new(),
        first_404_micros: None,
    };
    ledger.record(&[failed], IdStatus::Failed).unwrap();
    assert_eq!(
        ledger.status_counts().unwrap(),
        (0, 1, 1),
        "gen-a untouched"
    );
    assert_eq!(ledger.status_of("gen-b").unwrap(), Some(IdStatus::Failed));
}

#[test]
fn the_id_key_never_changes() {
    // Stored in every ledger: a new hash would orphan every ID in them. The
    // value is XXH3-64's 13461980610688568299 as a signed integer.
    assert_eq!(
        schema::id_key("gen-1731234567-AbCdEfGhIjKlMnOpQrSt"),
        -4984763463020983317
    );
}

#[test]
fn the_first_404_and_the_learned_rate_outlive_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("_state").join("genledger.db");
    let mut ledger = Ledger::open(&path, dir.path()).unwrap();
    let run = ledger.begin_run("r1", "0", "now").unwrap();
    ledger.admit(&["gen-late"], run, 1, None).unwrap();
    let pending = |first_404| FailureRow {
        id: "gen-late".into(),
        line: None,
        reason: Reason::NotYetFound,
        http_status: Some(404),
        attempts: 8,
        message: String::new(),
        first_404_micros: first_404,
    };
    ledger
        .record(&[pending(Some(5))], IdStatus::Pending)
        .unwrap();
    // A later run's own first 404 does not move the one kept.
    ledger
        .record(&[pending(Some(9))], IdStatus::Pending)
        .unwrap();
    let run = ledger.begin_run("r2", "0", "later").unwrap();
    assert_eq!(
        ledger.admit(&["gen-late"], run, 2, None).unwrap(),
        [Admission::Fetch {
            seq: 1,
            first_404_micros: Some(5),
            content_due: true
        }]
    );
    let run = ledger.begin_run("r3", "0", "later still").unwrap();
    let left = ledger.take_leftovers(run, 0, 10).unwrap();
    assert_eq!(left[0].first_404_micros, Some(5));

    let api = "https://openrouter.ai/api/v1";
    assert_eq!(ledger.learned_rate(api).unwrap(), None);
    ledger.save_learned_rate(api, 97.5, "t1").unwrap();
    ledger.save_learned_rate(api, 48.25, "t2").unwrap();
    drop(ledger);
    let ledger = Ledger::open(&path, dir.path()).unwrap();
    assert_eq!(ledger.learned_rate(api).unwrap(), Some(48.25));
    assert_eq!(
        ledger.learned_rate("http://127.0.0.1:9/api/v1").unwrap(),
        None
    );
}

#[test]
fn a_ledger_without_the_first_404_column_gains_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genledger.db");
    let schema = super::schema::SCHEMA.replace(",\n    first_404 INTEGER", "");
    assert_ne!(schema, super::schema::SCHEMA, "the column was taken out");
    Connection::open(&path)
        .unwrap()
        .execute_batch(&schema)
        .unwrap();
    assert!(!columns(&path, "ids").iter().any(|c| c == "first_404"));
    let mut ledger = Ledger::open(&path, dir.path()).unwrap();
    assert!(columns(&path, "ids").iter().any(|c| c == "first_404"));
    let run = ledger.begin_run("r", "0", "now").unwrap();
    assert!(matches!(
        ledger.admit(&["gen-a"], run, 1, None).unwrap()[..],
        [Admission::Fetch {
            first_404_micros: None,
            ..
        }]
    ));
}

/// A simulated year: a run a day of 300 IDs dated that day, retention 30
/// days. Whole days are dropped and their pages reused, so the ledger after
/// day 365 is no bigger than 1.5 times its size after day 35.
#[test]
fn a_year_of_daily_runs_under_retention_stays_the_size_of_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("year.db");
    let mut ledger = Ledger::open(&db, dir.path()).unwrap();
    let today = chrono::Utc::now().timestamp() / 86_400;
    let first_day = today - 400;
    let size = || std::fs::metadata(&db).unwrap().len();
    let mut after_35 = 0;
    for d in 0..365 {
        let day = first_day + d;
        let ids: Vec<String> = (0..300)
            .map(|i| format!("gen-{}-y{i:06}", day * 86_400 + 3600))
            .collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let run = ledger.begin_run(&format!("r{d}"), "0", "now").unwrap();
        ledger
            .admit(&refs, run, day * 86_400_000_000, None)
            .unwrap();
        let rows: Vec<(&str, Option<i64>)> = refs.iter().map(|id| (*id, None)).collect();
        commit(&mut ledger, dir.path(), "generations", &rows);
        ledger.prune(Some(day - 29), false, false).unwrap();
        ledger.checkpoint().unwrap();
        if d == 34 {
            after_35 = size();
        }
    }
    let after_365 = size();
    assert_eq!(ledger.status_counts().unwrap(), (0, 30 * 300, 0));
    eprintln!("ledger: {after_35} bytes after day 35, {after_365} after day 365");
    assert!(
        after_365 as f64 <= 1.5 * after_35 as f64,
        "{after_365} bytes after a year, {after_35} after 35 days"
    );
}

#[test]
fn failure_rows_are_kept_per_run_and_forgotten_with_their_runs_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("genledger.db"), dir.path()).unwrap();
    let row = |id: &str, reason, line| FailureRow {
        id: id.into(),
        line,
        reason,
        http_status: Some(404),
        attempts: 3,
        message: format!("{id}, \"quoted\""),
        first_404_micros: None,
    };
    // A connection without a run records the IDs' state only.
    let old = ledger
        .begin_run("old", "0", "2020-01-01T00:00:00.000000Z")
        .unwrap();
    ledger.admit(&["gen-a", "gen-b"], old, 1, None).unwrap();
    ledger
        .record(&[row("gen-a", Reason::NotFound, Some(1))], IdStatus::Failed)
        .unwrap();
    assert_eq!(ledger.failure_count(old).unwrap(), 0);
    ledger.set_run(old);
    let kept = vec![
        row("not an id", Reason::InvalidId, Some(2)),
        row("gen-b", Reason::NotFound, None),
    ];
    ledger.record(&kept, IdStatus::Failed).unwrap();
    let content = row("gen-b", Reason::ContentForbidden, None);
    ledger
        .record_content(std::slice::from_ref(&content), IdStatus::Failed)
        .unwrap();
    let new = ledger
        .begin_run("new", "0", &crate::timestamp::now_formatted())
        .unwrap();
    ledger.set_run(new);
    ledger
        .record(
            &[row("gen-c", Reason::OutsideRetention, Some(1))],
            IdStatus::Failed,
        )
        .unwrap();

    let mut read = Vec::new();
    let n = ledger
        .each_failure(old, |r| -> Result<(), LedgerError> {
            read.push(r);
            Ok(())
        })
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(read, [kept[0].clone(), kept[1].clone(), content]);
    assert_eq!(ledger.run_no_of("old").unwrap(), Some(old));
    assert_eq!(ledger.run_no_of("nope").unwrap(), None);

    let today = crate::timestamp::micros(std::time::SystemTime::now()) / 86_400_000_000;
    let dry = ledger.prune(Some(today - 30), false, true).unwrap();
    assert_eq!(dry.failure_rows_dropped, 3);
    assert_eq!(
        ledger.failure_count(old).unwrap(),
        3,
        "a dry run keeps them"
    );
    let done = ledger.prune(Some(today - 30), false, false).unwrap();
    assert_eq!(done.failure_rows_dropped, 3);
    assert_eq!(
        (
            ledger.failure_count(old).unwrap(),
            ledger.failure_count(new).unwrap()
        ),
        (0, 1),
        "only the run before the window loses its rows"
    );
    let again = ledger.prune(Some(today - 30), false, false).unwrap();
    assert_eq!(again.failure_rows_dropped, 0);
}

#[test]
fn the_audit_finds_nothing_in_a_sound_ledger_and_names_each_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("genledger.db"), dir.path()).unwrap();
    let run = ledger.begin_run("r1", "0", "then").unwrap();
    ledger
        .admit(&["gen-1764500000-a", "gen-1764500000-b"], run, 1, None)
        .unwrap();
    commit(
        &mut ledger,
        dir.path(),
        "generations",
        &[("gen-1764500000-a", Some(5))],
    );
    ledger
        .finish_run(run, "then", 0, Some(Path::new("m.json")), None)
        .unwrap();
    let audit = ledger.audit().unwrap();
    assert_eq!(
        (audit.problems.as_slice(), audit.warnings.as_slice()),
        (&[][..], &[][..])
    );
    assert_eq!(audit.manifests, [("r1".to_owned(), "m.json".to_owned())]);
    assert_eq!(ledger.committed_file_list().unwrap().len(), 1);

    // A later run dies with a file open: only a warning.
    let run2 = ledger.begin_run("r2", "0", "later").unwrap();
    let (pending, _out) = PendingFile::create(dir.path().join("generations").join("x")).unwrap();
    ledger.open_file("r2", "generations", &pending).unwrap();
    let audit = ledger.audit().unwrap();
    assert!(audit.problems.is_empty(), "{:?}", audit.problems);
    let checks: Vec<&str> = audit.warnings.iter().map(|w| w.check).collect();
    assert_eq!(checks, ["runs", "unsettled_file"]);

    // Then a third run starts without settling it, an exported ID stays in
    // the working set with nothing due, and a day's count is off.
    ledger.begin_run("r3", "0", "later still").unwrap();
    let _ = run2;
    ledger
        .conn
        .execute_batch(
            "UPDATE ids SET status = 1, content_wanted = 0 WHERE id = 'gen-1764500000-b';
             UPDATE days SET rows = rows + 1;",
        )
        .unwrap();
    let audit = ledger.audit().unwrap();
    let mut checks: Vec<&str> = audit.problems.iter().map(|p| p.check).collect();
    checks.sort();
    assert_eq!(
        checks,
        ["days", "runs", "unsettled_file", "working_set"],
        "{:?}",
        audit.problems
    );
    let said = |check| {
        audit
            .problems
            .iter()
            .find(|p| p.check == check)
            .unwrap()
            .message
            .clone()
    };
    assert!(
        said("working_set").contains("gen-1764500000-b"),
        "{}",
        said("working_set")
    );
    assert!(
        said("unsettled_file").contains("generations/x"),
        "{}",
        said("unsettled_file")
    );
    assert!(said("runs").contains("r2"), "{}", said("runs"));
}

#[test]
fn a_rebuild_that_finds_an_id_failed_then_exported_settles_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("genledger.db"), dir.path()).unwrap();
    let ids = [("gen-1764500000-x".to_owned(), Some(7))];
    // An earlier run's failures file, then a later run's data file.
    ledger
        .restore_ids(&ids, Side::Metadata, IdStatus::Failed, Some("not_found"))
        .unwrap();
    ledger
        .restore_ids(&ids, Side::Metadata, IdStatus::Exported, None)
        .unwrap();
    assert_eq!(
        ledger.status_of(&ids[0].0).unwrap(),
        Some(IdStatus::Exported)
    );
    assert_eq!(ledger.status_counts().unwrap(), (0, 1, 0));
    assert_eq!(ledger.info().unwrap().exported_content_due, 0, "settled");
    assert!(ledger.audit().unwrap().problems.is_empty());
}

#[test]
fn a_file_larger_than_a_settling_chunk_settles_every_id_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("l.db"), dir.path()).unwrap();
    let run = ledger.begin_run("r1", "0", "now").unwrap();
    let n = 2 * commit::SETTLE_CHUNK as usize + 123;
    let ids: Vec<String> = (0..n).map(|i| format!("gen-1700000000-{i:06}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    ledger.admit(&refs, run, 1, None).unwrap();
    let rows: Vec<(&str, Option<i64>)> = refs.iter().map(|id| (*id, Some(1))).collect();
    commit(&mut ledger, dir.path(), "generations", &rows);

    let info = ledger.info().unwrap();
    assert_eq!((info.settled, info.pending), (n as u64, 0));
    let links: i64 = ledger
        .conn
        .query_row("SELECT count(*) FROM file_rows", [], |r| r.get(0))
        .unwrap();
    assert_eq!(links, 0, "links forgotten once committed");
    assert_eq!(
        ledger.status_of(&ids[n - 1]).unwrap(),
        Some(IdStatus::Exported)
    );
}

/// Registers a file of `table` named `name` holding `ids` and links them;
/// staged and renamed into place when `publish`, else left open.
fn paired_file(ledger: &mut Ledger, dir: &Path, table: &str, ids: &[&str], publish: bool) -> i64 {
    let path = dir
        .join(table)
        .join("date=2026-01-01")
        .join("part-r1-0-00001.csv");
    let (pending, mut out) = PendingFile::create(path).unwrap();
    out.write_all(b"rows").unwrap();
    let file_id = ledger.open_file("r1", table, &pending).unwrap();
    let linked: Vec<(i64, Option<i64>)> = ids.iter().map(|id| (seq(ledger, id), Some(1))).collect();
    ledger.link(file_id, &linked).unwrap();
    if publish {
        let facts = FileFacts {
            rows: ids.len() as u64,
            min_created_at: 1,
            max_created_at: 1,
        };
        ledger.publish_file(file_id, pending, out, &facts).unwrap();
    } else {
        // The process dies here: the file stays open under its hidden name.
        drop((pending, out));
    }
    file_id
}

#[test]
fn a_derived_file_and_its_source_commit_together_or_not_at_all() {
    for (source_staged, derived_staged) in [(true, false), (false, true), (true, true)] {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&dir.path().join("l.db"), dir.path()).unwrap();
        let run = ledger.begin_run("r1", "0", "now").unwrap();
        ledger.admit(&["gen-a", "gen-b"], run, 1, None).unwrap();
        let ids = ["gen-a", "gen-b"];
        // As the sink does: the derived file is published first.
        paired_file(&mut ledger, dir.path(), "focus", &ids, derived_staged);
        paired_file(&mut ledger, dir.path(), "generations", &ids, source_staged);
        let done = ledger.reconcile().unwrap();
        let both = source_staged && derived_staged;
        let case = format!("source staged {source_staged}, derived staged {derived_staged}");
        assert_eq!(done.committed, if both { 2 } else { 0 }, "{case}");
        assert_eq!(done.discarded, if both { 0 } else { 2 }, "{case}");
        let (pending, exported, _) = ledger.status_counts().unwrap();
        assert_eq!(
            (pending, exported),
            if both { (0, 2) } else { (2, 0) },
            "{case}"
        );
        for table in ["focus", "generations"] {
            let path = dir
                .path()
                .join(table)
                .join("date=2026-01-01")
                .join("part-r1-0-00001.csv");
            assert_eq!(path.exists(), both, "{case}: {table}");
        }
    }
}

/// Start-up reconciliation against a bucket: a staged file found whole under
/// its name is adopted, another object under a staged file's name is
/// deleted, and a recorded multipart upload is aborted; the IDs of the files
/// not adopted are pending again.
#[test]
fn reconciling_a_bucket_adopts_a_whole_object_deletes_another_and_aborts_an_upload() {
    use crate::objstore::{Cloud, Remote, RemoteUrl};
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let remote = std::sync::Arc::new(Remote::in_memory(RemoteUrl {
        cloud: Cloud::S3,
        bucket: "b".into(),
        prefix: "p".into(),
    }));
    let mut ledger = Ledger::open(&dir.path().join("l.db"), &spool).unwrap();
    ledger.set_remote(remote.clone());
    let run = ledger.begin_run("r1", "0", "now").unwrap();
    ledger
        .admit(&["gen-a", "gen-b", "gen-c"], run, 1, None)
        .unwrap();
    // Each uploaded, none committed: the process died before step 4.
    publish(&mut ledger, &spool, "generations", &[("gen-a", Some(1))]);
    publish(&mut ledger, &spool, "generations", &[("gen-b", Some(1))]);
    let c = publish(&mut ledger, &spool, "generations", &[("gen-c", Some(1))]);
    let (b_key, c_key) = (
        "generations/generations-gen-b.txt",
        "generations/generations-gen-c.txt",
    );
    remote
        .put_bytes(b_key, bytes::Bytes::from_static(b"not these rows"), false)
        .unwrap();
    // gen-c's file as a multipart upload that never completed.
    remote.delete(c_key).unwrap();
    let upload = remote.start_upload(c_key).unwrap();
    ledger
        .conn
        .execute(
            "UPDATE files SET upload_id = ?2 WHERE file_id = ?1",
            rusqlite::params![c, upload],
        )
        .unwrap();

    let done = ledger.reconcile().unwrap();
    assert_eq!((done.committed, done.discarded), (1, 2));
    assert_eq!(ledger.status_counts().unwrap(), (2, 1, 0));
    assert_eq!(ledger.status_of("gen-a").unwrap(), Some(IdStatus::Exported));
    assert_eq!(
        remote.list("generations").unwrap(),
        ["generations/generations-gen-a.txt"]
    );
    let part = dir.path().join("part");
    std::fs::write(&part, b"rows").unwrap();
    assert!(
        remote.finish_upload(c_key, &upload, &part).is_err(),
        "the upload was aborted"
    );
    let left: Vec<_> = std::fs::read_dir(spool.join("generations"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "local copies left: {left:?}");
}

/// New IDs are numbered within their prefix day; a ledger of layout 2 (IDs
/// numbered in arrival order, found by `ids_key`) is moved to layout 3 and
/// still finds the IDs it holds, so none is fetched twice.
#[test]
fn ids_are_numbered_within_their_day_and_an_older_ledger_still_finds_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let old = "gen-1767225600-old";
    drop(Ledger::open(&path, dir.path()).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "DROP INDEX ids_day_key; CREATE INDEX ids_key ON ids(key);
             INSERT INTO ids (seq, key, id, status, first_seen, last_run)
             VALUES (7, {}, '{old}', 0, 1, 0);
             PRAGMA user_version = 2;",
            schema::id_key(old)
        ))
        .unwrap();
    let mut ledger = Ledger::open(&path, dir.path()).unwrap();
    let indexes: Vec<String> = ledger
        .conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ids'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(indexes, ["ids_day_key"]);
    assert_eq!(super::identity::version(&ledger.conn).unwrap(), 3);
    let run = ledger.begin_run("r", "0", "now").unwrap();
    let (jan1, jan2) = (20_454_i64 << 32, 20_455_i64 << 32);
    let admitted = ledger
        .admit(
            &[
                old,
                "gen-1767225600-a",
                "gen-1767312000-b",
                "gen-1767225600-c",
                "x",
            ],
            run,
            2,
            None,
        )
        .unwrap();
    let seqs: Vec<i64> = admitted
        .iter()
        .map(|a| match a {
            Admission::Fetch { seq, .. } => *seq,
            other => panic!("every ID is to fetch: {other:?}"),
        })
        .collect();
    // A batch is admitted in key order, so a and c take the day's first two
    // numbers in either order.
    assert_eq!([seqs[0], seqs[2], seqs[4]], [7, jan2, 8]);
    assert_eq!(seqs[1].min(seqs[3]), jan1);
    assert_eq!(seqs[1].max(seqs[3]), jan1 + 1);
    let again = ledger.admit(&[old, "gen-1767312000-b"], run + 1, 3, None);
    assert!(
        matches!(
            again.unwrap()[..],
            [Admission::Fetch { seq: 7, .. }, Admission::Fetch { seq, .. }] if seq == jan2
        ),
        "found again under the same numbers"
    );
}
