//! The compact ledger: settled IDs leave the working set for tables of their
//! day, retention drops whole days, and a ledger written by the first
//! release upgrades in place.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use genledger::config::Format;
use genledger::ledger::Ledger;
use genledger::record::IdStatus;
use genledger::simulator::SimConfig;

use crate::support::*;

/// A ledger as the previous release wrote it (`sqlite3 .dump`): 24 exported
/// IDs (17 with content, 4 with content forbidden), 4 failed, 5 pending.
const RELEASE_DUMP: &str = include_str!("fixtures/ledger-release-1.sql");

fn statuses(db: &Path) -> HashMap<String, (i64, Option<i64>)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut stmt = c
        .prepare("SELECT id, status, content_status FROM ids")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_release_ledger_upgrades_in_place_and_every_id_keeps_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("genledger.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(RELEASE_DUMP)
        .unwrap();
    let before = statuses(&db);
    assert_eq!(before.len(), 33);
    let ledger = Ledger::open(&db, dir.path()).unwrap();
    for (id, (status, _)) in &before {
        let want = match status {
            0 => IdStatus::Pending,
            1 => IdStatus::Exported,
            _ => IdStatus::Failed,
        };
        assert_eq!(ledger.status_of(id).unwrap(), Some(want), "{id}");
    }
    assert_eq!(ledger.status_counts().unwrap(), (5, 24, 4));
    // Exported with content exported or never asked for: compact now. The
    // four whose content was refused stay retryable, with the pending and
    // the failed.
    let kept = statuses(&db);
    assert_eq!(kept.len(), 5 + 4 + 4, "{kept:?}");
    assert_eq!(ledger.content_counts().unwrap(), (0, 17, 4));
    drop(ledger);
    // Opened again: nothing more to do.
    let again = Ledger::open(&db, dir.path()).unwrap();
    assert_eq!(again.status_counts().unwrap(), (5, 24, 4));
}

#[tokio::test]
async fn ids_older_than_the_retention_window_are_not_fetched_unless_asked() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let old = ids(20, Duration::from_secs(86_400 * 40), "old");
    let recent = ids(20, Duration::from_secs(86_400 * 2), "new");
    let input = write_lines(
        dir.path(),
        "ids.txt",
        &[old.clone(), recent.clone()].concat(),
    );
    let mut settings = settings(&sim, &input, &out, Format::Parquet);
    settings.retention = Some(Duration::from_secs(86_400 * 30));

    // Outside the window: listed, counted, not fetched.
    let first = export(&settings).await;
    let c = first.counts;
    assert_eq!((c.exported, c.outside_retention, c.failed), (20, 20, 20));
    assert_eq!(sim.stats().requests, 20);
    let reasons: Vec<String> = failure_rows(&out).iter().map(|r| r[2].to_owned()).collect();
    assert_eq!(reasons.len(), 20);
    assert!(
        reasons.iter().all(|r| r == "outside_retention"),
        "{reasons:?}"
    );

    // A backfill fetches them; the next run drops their day at once, so
    // offered again they are outside the window, not exported twice.
    let backfill = genledger::export::run(
        &settings,
        &genledger::export::RunOptions {
            include_old: true,
            ..Default::default()
        },
        std::sync::Arc::new(genledger::stop::Stop::default()),
        std::sync::Arc::new(genledger::progress::Silent),
    )
    .await
    .unwrap();
    assert_eq!(
        (backfill.counts.exported, backfill.counts.already_exported),
        (20, 20)
    );
    let again = export(&settings).await.counts;
    assert_eq!(
        (
            again.exported,
            again.already_exported,
            again.outside_retention
        ),
        (0, 20, 20)
    );
    assert_eq!(sim.stats().requests, 40, "nothing fetched twice");
    let ledger = Ledger::open(&settings.state_path, &out).unwrap();
    assert_eq!(
        ledger.status_counts().unwrap(),
        (0, 20, 0),
        "the old days are gone"
    );
}

#[tokio::test]
async fn state_info_and_prune_read_the_ledger_of_an_output_directory() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = write_lines(
        dir.path(),
        "ids.txt",
        &ids(50, Duration::from_secs(86_400 * 3), "info"),
    );
    export(&settings(&sim, &input, &out, Format::Parquet)).await;
    let state = |args: &[&str]| {
        let mut cmd = genledger();
        cmd.arg("state").args(args).arg("--output").arg(&out);
        cmd
    };
    let output = run(state(&["info", "--format", "json"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(info["settled"], 50);
    assert_eq!(info["settled_by_day"].as_array().unwrap().len(), 1);
    let output = run(state(&["prune", "--dry-run", "--format", "json"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let pruned: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(pruned["pruned"]["days_compacted"], 1, "{pruned}");
    let output = run(state(&["prune"])).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let ledger = Ledger::open(&out.join("_state/genledger.db"), &out).unwrap();
    assert_eq!(
        ledger.status_counts().unwrap(),
        (0, 50, 0),
        "compaction keeps every ID"
    );
    let missing = run({
        let mut cmd = genledger();
        cmd.args(["state", "info", "--output"])
            .arg(dir.path().join("nowhere"));
        cmd
    })
    .await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("no ledger"),
        "{}",
        text(&missing.stderr)
    );
}
