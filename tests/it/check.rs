//! `genledger state check` and `state failures`: a run killed with failures
//! recorded gets its failures file written from the ledger at the next
//! start, listed in its recovered manifest and printed the same by `state
//! failures`; `state check` says ok, and names a committed file that is
//! missing or changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use genledger::simulator::{SimConfig, SimHandle};
use sha2::{Digest, Sha256};

use crate::support::*;

fn export_command(sim: &SimHandle, input: &Path, out: &Path) -> Command {
    let mut cmd = genledger();
    cmd.args(["-q", "export", "--no-progress", "--concurrency", "4"])
        .args(["--rps", "100000", "--base-url", &sim.base_url()])
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out)
        .env("OPENROUTER_API_KEY", KEY)
        .env("GENLEDGER_FETCH__NOT_FOUND_GRACE", "0s")
        .env("GENLEDGER_FETCH__BACKOFF_INITIAL", "1ms")
        .env("GENLEDGER_FETCH__BACKOFF_MAX", "10ms")
        .env("GENLEDGER_OUTPUT__MAX_ROWS_PER_FILE", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// `genledger state ARGS --output OUT`, run to its end.
pub(crate) async fn state(args: &[&str], out: &Path) -> Output {
    let mut cmd = genledger();
    cmd.arg("state").args(args).arg("--output").arg(out);
    run(cmd).await
}

/// How many failure rows the ledger keeps for unfinished runs (0 while the
/// ledger or its table does not exist yet).
fn recorded_failures(db: &Path) -> i64 {
    let Ok(c) = rusqlite::Connection::open(db) else {
        return 0;
    };
    c.query_row(
        "SELECT count(*) FROM failures WHERE run_no IN (SELECT run_no FROM runs WHERE finished_at IS NULL)",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

fn run_ids(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut stmt = c
        .prepare("SELECT run_id FROM runs ORDER BY run_no")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The one file under `dir` whose name starts with `prefix`.
fn file_starting(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    assert!(found.len() <= 1, "{found:?}");
    found.pop()
}

/// A CSV's lines after its header, sorted.
pub(crate) fn sorted_rows(csv: &str) -> Vec<String> {
    let mut rows: Vec<String> = csv.lines().skip(1).map(str::to_owned).collect();
    rows.sort();
    rows
}

/// Starts the export and SIGKILLs it once the ledger holds a batch of its
/// failure rows, mid-way through the input.
async fn kill_after_failures_recorded(cmd: Command, db: &Path) {
    let mut child = { cmd }.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorded_failures(db) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it recorded any failure"
        );
        assert!(Instant::now() < deadline, "no failure recorded in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_killed_runs_failures_file_is_written_from_the_ledger_and_check_says_ok() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(2),
        missing_rate: 0.5,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let db = out.join("_state").join("genledger.db");
    let all = ids(6000, Duration::from_secs(86_400), "fk");
    let input = write_lines(dir.path(), "ids.txt", &all);

    kill_after_failures_recorded(export_command(&sim, &input, &out), &db).await;
    let killed = run_ids(&db).pop().unwrap();
    // The sink hands failure rows over in batches: at least one is in.
    let kept = recorded_failures(&db) as usize;
    assert!(
        file_starting(&out.join("failures"), &format!("part-{killed}-")).is_none(),
        "the killed run never renamed its own failures file into place"
    );
    // Before the next run, straight from the ledger.
    let before = state(&["failures", &killed], &out).await;
    assert_eq!(before.status.code(), Some(0), "{}", text(&before.stderr));
    let before = text(&before.stdout);
    assert!(before.starts_with("id,line,reason,http_status,attempts,message\r\n"));
    assert_eq!(before.lines().count(), kept + 1);
    let checked = state(&["check"], &out).await;
    let said = text(&checked.stdout);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{said}{}",
        text(&checked.stderr)
    );
    assert!(said.contains("died") && said.ends_with("ok\n"), "{said}");

    // The next run's start writes it, whole, and lists it in the manifest
    // it recovers for the killed run.
    let status = run(export_command(&sim, &input, &out)).await.status;
    assert_eq!(status.code(), Some(1), "some IDs failed");
    let file = file_starting(&out.join("failures"), &format!("part-{killed}-")).unwrap();
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        written, before,
        "the file holds what `state failures` printed"
    );
    assert!(
        written
            .lines()
            .skip(1)
            .all(|l| l.contains(",not_found,404,"))
    );
    let manifest = file_starting(&out.join("_manifests"), &killed).unwrap();
    let manifest = genledger::export::manifest::read(&manifest).unwrap();
    assert_eq!(manifest["recovered"], true);
    let listed = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "failures")
        .expect("the recovered manifest lists the failures file");
    assert_eq!(
        listed["path"].as_str().unwrap(),
        format!("failures/{}", file.file_name().unwrap().to_string_lossy())
    );
    assert_eq!(listed["rows"].as_u64(), Some(kept as u64));
    assert_eq!(
        listed["sha256"].as_str().unwrap(),
        hex::encode(Sha256::digest(written.as_bytes()))
    );
    let again = state(&["failures", &killed], &out).await;
    assert_eq!(text(&again.stdout), written);

    // Any run: the one that finished prints the rows its sink wrote.
    let finished = run_ids(&db).pop().unwrap();
    let own = file_starting(&out.join("failures"), &format!("part-{finished}-")).unwrap();
    let printed = state(&["failures", &finished], &out).await;
    assert_eq!(
        sorted_rows(&text(&printed.stdout)),
        sorted_rows(&std::fs::read_to_string(own).unwrap())
    );
    let failed: usize = [before, text(&printed.stdout)]
        .iter()
        .map(|csv| csv.lines().count() - 1)
        .sum();
    assert_eq!(
        failed,
        all.len() - parquet_rows(&out).len(),
        "every ID ends once"
    );

    for args in [
        &["check"][..],
        &["check", "--deep"],
        &["check", "--format", "json"],
    ] {
        let checked = state(args, &out).await;
        let said = text(&checked.stdout);
        assert_eq!(checked.status.code(), Some(0), "{args:?}: {said}");
        assert!(said.contains("ok"), "{said}");
        assert!(!said.contains("problem ["), "{said}");
    }
}

#[tokio::test]
async fn check_names_a_committed_file_that_is_missing_or_changed() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = write_lines(
        dir.path(),
        "ids.txt",
        &ids(450, Duration::from_secs(3600), "ck"),
    );
    let status = run(export_command(&sim, &input, &out)).await.status;
    assert_eq!(status.code(), Some(0));
    let ok = state(&["check"], &out).await;
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}{}",
        text(&ok.stdout),
        text(&ok.stderr)
    );

    let files = data_files(&out, ".parquet");
    assert!(files.len() >= 2, "{files:?}");
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_file(&files[0]).unwrap();
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&files[1], bytes).unwrap();

    let checked = state(&["check"], &out).await;
    let said = text(&checked.stdout);
    assert_eq!(checked.status.code(), Some(1), "{said}");
    let line = |file: &str| {
        said.lines()
            .find(|l| l.contains(file))
            .unwrap_or("")
            .to_owned()
    };
    assert!(line(&name(&files[0])).contains("is missing"), "{said}");
    assert!(line(&name(&files[1])).contains("is not whole"), "{said}");
    assert!(said.contains("2 problems found"), "{said}");

    let json = state(&["check", "--format", "json"], &out).await;
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let checks: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["committed_file", "committed_file"]);
}

#[tokio::test]
async fn failures_of_a_run_the_ledger_does_not_know_exit_2() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = write_lines(
        dir.path(),
        "ids.txt",
        &ids(5, Duration::from_secs(3600), "nr"),
    );
    assert_eq!(
        run(export_command(&sim, &input, &out)).await.status.code(),
        Some(0)
    );
    let output = state(&["failures", "20200101T000000Z-0000"], &out).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("knows no run `20200101T000000Z-0000`"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
