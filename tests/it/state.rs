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
