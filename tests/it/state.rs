//! The ledger lost: a run refuses a ledger that does not know the output,
//! and `genledger state rebuild` recreates it so the export goes on exactly
//! once.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use genledger::config::{Format, Settings};
use genledger::simulator::{SimConfig, SimHandle};

use crate::support::*;

/// The `genledger` command for `args` against `sim`, with the settings the
/// library runs of these tests use.
fn command(sim: &SimHandle, args: &[&str], input: &Path, out: &Path) -> std::process::Command {
    let mut cmd = genledger();
    cmd.args(args)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(["--base-url", &sim.base_url()])
        .env("OPENROUTER_API_KEY", KEY)
        .env("GENLEDGER_FETCH__NOT_FOUND_GRACE", "0s")
        .env("GENLEDGER_FETCH__BACKOFF_INITIAL", "1ms")
        .env("GENLEDGER_FETCH__BACKOFF_MAX", "10ms")
        .env("GENLEDGER_OUTPUT__MAX_ROWS_PER_FILE", "40");
    cmd
}

fn small_files(sim: &SimHandle, input: &Path, out: &Path) -> Settings {
    let mut settings = settings(sim, input, out, Format::Parquet);
    settings.output.max_rows_per_file = 40;
    settings
}

/// Every ID in the committed `generations` files; fails on a repeat.
fn exported_once(out: &Path) -> HashSet<String> {
    let mut seen = HashSet::new();
    for row in parquet_rows(out) {
        let id = row["id"].clone().unwrap();
        assert!(seen.insert(id.clone()), "{id} exported twice");
    }
    seen
}

async fn refused(cmd: std::process::Command) -> String {
    let output = run(cmd).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("genledger state rebuild") && stderr.contains("a second time"),
        "{stderr}"
    );
    stderr
}

fn remove_ledger(path: &Path, keep_empty_file: bool) {
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    if keep_empty_file {
        std::fs::File::create(path).unwrap();
    } else {
        std::fs::remove_file(path).unwrap();
    }
}

#[tokio::test]
async fn a_lost_ledger_is_refused_and_rebuilt_so_nothing_is_exported_twice() {
    let sim = start_sim(SimConfig {
        missing_rate: 0.1,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let all = ids(300, Duration::from_secs(86_400), "lost");
    let first = write_lines(dir.path(), "first.txt", &all[..200]);
    let input = write_lines(dir.path(), "all.txt", &all);
    let out = dir.path().join("out");
    let settings = small_files(&sim, &first, &out);
    let one = export(&settings).await;
    let (exported, failed) = (one.counts.exported, one.counts.failed);
    assert_eq!(exported + failed, 200);
    assert!(failed > 0 && one.files.len() > 1, "{:?}", one.counts);
    let requests = sim.stats().requests;

    // Emptied to 0 bytes, then deleted: refused both times, nothing sent.
    remove_ledger(&settings.state_path, true);
    refused(command(&sim, &["export", "--no-progress"], &input, &out)).await;
    remove_ledger(&settings.state_path, false);
    refused(command(&sim, &["export", "--no-progress"], &input, &out)).await;
    assert_eq!(sim.stats().requests, requests);

    let output = run(command(&sim, &["state", "rebuild"], &input, &out)).await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let expect = format!(
        "1 runs, {} files, {exported} IDs exported",
        one.files.len() + 1
    );
    assert!(stdout.contains(&expect), "{stdout} lacks {expect}");
    assert!(stdout.contains(&format!("{failed} IDs failed")), "{stdout}");

    // The rest of the input, exactly once: the 100 new IDs are fetched, the
    // 200 are already exported or failed.
    let two = export(&small_files(&sim, &input, &out)).await;
    let c = two.counts;
    assert_eq!(
        (c.already_exported, c.previously_failed),
        (exported, failed)
    );
    assert_eq!(c.exported + c.failed, 100);
    assert_eq!(sim.stats().requests - requests, 100);
    assert_eq!(exported_once(&out).len() as u64, exported + c.exported);
}

#[tokio::test]
async fn files_of_a_run_that_died_before_its_manifest_are_adopted_by_a_rebuild() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let all = ids(120, Duration::from_secs(86_400), "orphan");
    let input = write_lines(dir.path(), "ids.txt", &all);
    let out = dir.path().join("out");
    let settings = small_files(&sim, &input, &out);
    let one = export(&settings).await;
    assert_eq!(one.counts.exported, 120);
    // The run's manifest never written, and the ledger gone with it.
    std::fs::remove_file(one.manifest.as_ref().unwrap()).unwrap();
    remove_ledger(&settings.state_path, false);
    refused(command(&sim, &["export", "--no-progress"], &input, &out)).await;

    let output = run(command(&sim, &["state", "rebuild"], &input, &out)).await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        stdout.contains(&format!(
            "{} data files no manifest listed were adopted",
            one.files.len()
        )),
        "{stdout}"
    );
    let manifests: Vec<_> = std::fs::read_dir(out.join("_manifests")).unwrap().collect();
    assert_eq!(manifests.len(), 1, "one manifest names the adopted files");

    let requests = sim.stats().requests;
    let two = export(&settings).await;
    assert_eq!((two.counts.exported, two.counts.already_exported), (0, 120));
    assert_eq!(sim.stats().requests, requests);
    assert_eq!(exported_once(&out).len(), 120);
}

#[tokio::test]
async fn a_database_that_is_not_a_ledger_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("app.db");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE invoices (n INTEGER); INSERT INTO invoices VALUES (7);")
            .unwrap();
    }
    let before = std::fs::read(&foreign).unwrap();
    let sim = start_sim(SimConfig::default()).await;
    let input = write_lines(dir.path(), "ids.txt", &ids(5, Duration::from_secs(60), "f"));
    let mut cmd = command(
        &sim,
        &["export", "--no-progress"],
        &input,
        &dir.path().join("out"),
    );
    cmd.env("GENLEDGER_STATE__PATH", &foreign);
    let output = run(cmd).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not a genledger ledger") && stderr.contains("invoices"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        before,
        "the database was changed"
    );
    assert_eq!(sim.stats().requests, 0);
}

/// `n` IDs whose generations started at unix second `at` (one UTC day each).
fn ids_at(n: usize, at: u64, tag: &str) -> Vec<String> {
    (0..n).map(|i| format!("gen-{at}-{tag}{i:0>12}")).collect()
}

fn runs_table(path: &Path) -> Vec<(Option<i64>, Option<String>, Option<String>)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut stmt = c
        .prepare("SELECT exit_code, message, manifest FROM runs ORDER BY run_no")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A run that fails after it began (here: a day's partition directory is a
/// file) is closed with exit code 2 and its error, its committed files named
/// by a manifest; the next run does not call it dead. Runs refused before
/// they begin (a missing input file, `OUT/generations` a file) leave no run.
#[tokio::test]
async fn runs_that_end_with_an_error_are_closed_as_such_not_called_dead() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let day = 86_400;
    let start = (unix_now() / day - 5) * day + day / 2;
    let mut all = ids_at(100, start, "a");
    all.extend(ids_at(30, start + day, "b"));
    let input = write_lines(dir.path(), "ids.txt", &all);
    let export_cmd = || {
        command(
            &sim,
            &["export", "--no-progress", "--concurrency", "1"],
            &input,
            &out,
        )
    };

    // Refused before it begins: nothing recorded.
    let missing = command(
        &sim,
        &["export", "--no-progress"],
        &dir.path().join("nope.txt"),
        &out,
    );
    let output = run(missing).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("nope.txt"),
        "{}",
        text(&output.stderr)
    );
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("generations"), b"not a directory").unwrap();
    let output = run(export_cmd()).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a file, not a directory"), "{stderr}");
    std::fs::remove_file(out.join("generations")).unwrap();

    // Fails mid-run: the second day's partition cannot be created.
    let blocked = out.join("generations").join(format!(
        "date={}",
        chrono::DateTime::from_timestamp((start + day) as i64, 0)
            .unwrap()
            .format("%Y-%m-%d")
    ));
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, b"in the way").unwrap();
    let output = run(export_cmd()).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let ledger = out.join("_state").join("genledger.db");
    let runs = runs_table(&ledger);
    assert_eq!(
        runs.len(),
        1,
        "only the run that began is recorded: {runs:?}"
    );
    let (code, message, manifest) = runs[0].clone();
    assert_eq!(code, Some(2));
    assert!(
        message.unwrap_or_default().contains("date="),
        "the error is kept"
    );
    std::fs::remove_file(&blocked).unwrap();
    // One worker, 40 rows a file: the first day's full files were committed
    // before the second day's first row, and a manifest names them.
    let committed = parquet_rows(&out).len();
    assert!(
        committed >= 40,
        "{committed} rows committed before the error"
    );
    let manifest = genledger::export::manifest::read(&out.join(manifest.unwrap())).unwrap();
    let stopped = manifest["stopped"].as_str().unwrap_or_default().to_owned();
    assert!(stopped.contains("ended with an error"), "{stopped}");
    assert_eq!(manifest["recovered"], false);
    let listed: u64 = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(listed, committed as u64);

    let output = run(export_cmd()).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("died"), "{stderr}");
    assert_eq!(exported_once(&out).len(), 130);
}

/// SIGTERM mid-run: the summary's counts add up and agree with the ledger.
#[tokio::test]
async fn after_sigterm_the_summary_agrees_with_the_ledger() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let all = ids(3000, Duration::from_secs(86_400), "term");
    let input = write_lines(dir.path(), "ids.txt", &all);
    let mut cmd = command(
        &sim,
        &[
            "export",
            "--no-progress",
            "--summary",
            "json",
            "--concurrency",
            "4",
        ],
        &input,
        &out,
    );
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sim.stats().served_ok < 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let count = |k: &str| summary["counts"][k].as_u64().unwrap();
    let ledger =
        genledger::ledger::Ledger::open(&out.join("_state").join("genledger.db"), &out).unwrap();
    let (pending, exported, failed) = ledger.status_counts().unwrap();
    assert!(
        exported > 0 && pending > 0,
        "stopped mid-run: {pending} pending, {exported} exported"
    );
    assert_eq!(
        (count("exported"), count("failed"), count("pending")),
        (exported, failed, pending)
    );
    assert_eq!(count("ids"), 3000, "every admitted ID is counted");
    assert_eq!(
        count("exported") + count("failed") + count("pending"),
        count("ids")
    );
    assert_eq!(parquet_rows(&out).len() as u64, exported);
}

/// A run with nothing to do (a quiet queue, an empty input) leaves no row in
/// the ledger's run table and no file; one that read IDs is recorded.
#[tokio::test]
async fn idle_runs_leave_no_row_behind() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let empty = write_lines(dir.path(), "empty.txt", &["# nothing yet".to_owned()]);
    for _ in 0..3 {
        let report = export(&settings(&sim, &empty, &out, Format::Parquet)).await;
        assert_eq!((report.exit_code, report.counts.ids), (0, 0));
    }
    let ledger = out.join("_state").join("genledger.db");
    assert!(runs_table(&ledger).is_empty(), "{:?}", runs_table(&ledger));
    let input = write_lines(
        dir.path(),
        "ids.txt",
        &ids(5, Duration::from_secs(60), "idle"),
    );
    export(&settings(&sim, &input, &out, Format::Parquet)).await;
    assert_eq!(runs_table(&ledger).len(), 1);
}

/// A rerun over an input that lists each ID twice says what it saw: every
/// distinct ID already exported once, the repeats skipped as duplicates.
#[tokio::test]
async fn a_rerun_counts_repeats_as_duplicates_not_as_exported_twice() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let once = ids(100, Duration::from_secs(3600), "twice");
    let first = write_lines(dir.path(), "once.txt", &once);
    assert_eq!(
        export(&settings(&sim, &first, &out, Format::Parquet))
            .await
            .counts
            .exported,
        100
    );
    let doubled: Vec<String> = once.iter().chain(once.iter()).cloned().collect();
    let input = write_lines(dir.path(), "twice.txt", &doubled);
    let c = export(&settings(&sim, &input, &out, Format::Parquet))
        .await
        .counts;
    assert_eq!(
        (
            c.input_lines,
            c.ids,
            c.already_exported,
            c.duplicates_skipped,
            c.exported
        ),
        (200, 100, 100, 100, 0)
    );
}
