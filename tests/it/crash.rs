//! Exactly-once under crashes: SIGKILL at many moments, then a clean run, and
//! every ID is in exactly one committed, readable file named by a manifest.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use genledger::config::Format;
use genledger::ledger::{Ledger, StateLock};
use genledger::record::IdStatus;
use genledger::simulator::SimConfig;
use sha2::{Digest, Sha256};

use crate::support::*;

pub(crate) fn export_command(base_url: &str, input: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_genledger"));
    cmd.args([
        "-q",
        "export",
        "--no-progress",
        "--concurrency",
        "2",
        "--rps",
        "100000",
    ])
    .arg("--input")
    .arg(input)
    .arg("--output")
    .arg(out)
    .args(["--base-url", base_url])
    .env_remove("GENLEDGER_CONFIG")
    .env("OPENROUTER_API_KEY", KEY)
    .env("GENLEDGER_OUTPUT__MAX_ROWS_PER_FILE", "15")
    .env("GENLEDGER_FETCH__BACKOFF_INITIAL", "1ms")
    .env("GENLEDGER_FETCH__BACKOFF_MAX", "10ms")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cmd
}

/// Checks the promise: committed files hold every input ID exactly once, each
/// is readable, and each is listed, with its hash, by exactly one manifest.
pub(crate) fn check_exactly_once(out: &Path, ids: &[String]) {
    check_table_exactly_once(out, "generations", ids);
}

/// [`check_exactly_once`] for one table's files (`generations`, `content`).
pub(crate) fn check_table_exactly_once(out: &Path, table: &str, ids: &[String]) {
    let mut seen = HashSet::new();
    let files = table_files(out, table, ".parquet");
    for file in &files {
        for batch in read_parquet(file) {
            let col = batch.column_by_name("id").unwrap();
            let col = col
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .unwrap();
            for id in col.iter().flatten() {
                assert!(seen.insert(id.to_owned()), "{id} is in two committed files");
            }
        }
    }
    let wanted: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        seen.len(),
        wanted.len(),
        "IDs missing from the committed files"
    );
    assert_eq!(seen, wanted);

    let mut listed: HashMap<String, usize> = HashMap::new();
    for entry in std::fs::read_dir(out.join("_manifests")).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            !path.file_name().unwrap().to_string_lossy().starts_with('.'),
            "temp manifest left"
        );
        let manifest = genledger::export::manifest::read(&path).unwrap();
        for f in manifest["files"].as_array().unwrap() {
            let rel = f["path"].as_str().unwrap();
            let bytes =
                std::fs::read(out.join(rel)).unwrap_or_else(|_| panic!("{rel} listed but missing"));
            assert_eq!(
                f["sha256"].as_str().unwrap(),
                hex::encode(Sha256::digest(&bytes)),
                "{rel}"
            );
            if f["kind"] == table {
                *listed.entry(rel.to_owned()).or_default() += 1;
            }
        }
    }
    for file in files {
        let rel = file
            .strip_prefix(out)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            listed.get(&rel),
            Some(&1),
            "{rel} must be in exactly one manifest"
        );
    }
}

#[tokio::test]
async fn kill_at_random_moments_then_rerun_exports_every_id_exactly_once() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(4),
        latency_jitter: Duration::from_millis(8),
        error_rate: 0.02,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let per_round = 60;
    let rounds = 24;
    let ids = ids(per_round * rounds, Duration::from_secs(86_400 * 2), "kill");
    let out = dir.path().join("out");
    let base = sim.base_url();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut kills = 0;
    for round in 0..rounds {
        // Each round brings new IDs, so every run has work when it is killed:
        // early in start-up and reconciliation, while writing, or committing.
        let input = write_lines(dir.path(), "ids.txt", &ids[..per_round * (round + 1)]);
        let after = Duration::from_millis(if round % 6 == 0 {
            rng.u64(5..40)
        } else {
            rng.u64(40..400)
        });
        kills += usize::from(kill_after(export_command(&base, &input, &out), after).await);
    }
    assert!(kills >= 20, "only {kills} runs were killed mid-way");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let status = run(export_command(&base, &input, &out)).await.status;
    assert_eq!(
        status.code(),
        Some(0),
        "a clean run after the kills finishes everything"
    );
    check_exactly_once(&out, &ids);
    let ledger = Ledger::open(&out.join("_state/genledger.db"), &out).unwrap();
    assert_eq!(ledger.status_counts().unwrap(), (0, ids.len() as u64, 0));
    drop(ledger);
    check_state_after_kills(&out).await;
}

/// After a campaign: `state check` finds nothing wrong, and `state failures`
/// prints each run's failures (killed runs' included) as its file holds them.
async fn check_state_after_kills(out: &Path) {
    let checked = crate::check::state(&["check", "--deep"], out).await;
    let said = text(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "{said}");
    assert!(said.ends_with("ok\n"), "{said}");
    let c = rusqlite::Connection::open(out.join("_state/genledger.db")).unwrap();
    let mut stmt = c.prepare("SELECT run_id FROM runs").unwrap();
    let runs: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for run_id in runs {
        let printed = crate::check::state(&["failures", &run_id], out).await;
        assert_eq!(printed.status.code(), Some(0), "{}", text(&printed.stderr));
        let file = out.join("failures").join(format!("part-{run_id}-0.csv"));
        if let Ok(written) = std::fs::read_to_string(&file) {
            assert_eq!(
                crate::check::sorted_rows(&text(&printed.stdout)),
                crate::check::sorted_rows(&written),
                "{run_id}"
            );
        }
    }
}

#[tokio::test]
async fn kill_with_content_on_then_rerun_exports_every_content_exactly_once() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(4),
        latency_jitter: Duration::from_millis(8),
        error_rate: 0.02,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (per_round, rounds) = (40, 10);
    let ids = ids(per_round * rounds, Duration::from_secs(86_400 * 2), "ckill");
    let out = dir.path().join("out");
    let base = sim.base_url();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut kills = 0;
    for round in 0..rounds {
        // Every third run has content off, so the content-only path after a
        // kill meets IDs exported with and without content.
        let input = write_lines(dir.path(), "ids.txt", &ids[..per_round * (round + 1)]);
        let mut cmd = export_command(&base, &input, &out);
        if round % 3 != 2 {
            cmd.arg("--with-content");
        }
        let after = Duration::from_millis(rng.u64(30..300));
        kills += usize::from(kill_after(cmd, after).await);
    }
    assert!(kills >= 7, "only {kills} runs were killed mid-way");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let mut cmd = export_command(&base, &input, &out);
    cmd.arg("--with-content");
    let status = run(cmd).await.status;
    assert_eq!(status.code(), Some(0), "a clean run finishes everything");
    check_exactly_once(&out, &ids);
    check_table_exactly_once(&out, "content", &ids);
    let ledger = Ledger::open(&out.join("_state/genledger.db"), &out).unwrap();
    assert_eq!(ledger.content_counts().unwrap(), (0, ids.len() as u64, 0));
    drop(ledger);
    check_state_after_kills(&out).await;
    #[cfg(unix)]
    for file in all_files(&out.join("content")) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn second_process_on_the_same_state_exits_4_and_touches_nothing() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(
        dir.path(),
        "ids.txt",
        &ids(20, Duration::from_secs(3600), "lock"),
    );
    let out = dir.path().join("out");
    let db = out.join("_state/genledger.db");
    let _held = StateLock::acquire(&db).unwrap();
    let mut cmd = export_command(&sim.base_url(), &input, &out);
    cmd.stderr(Stdio::piped());
    let output = run(cmd).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!("PID {}", std::process::id())),
        "{stderr}"
    );
    assert!(!db.exists(), "the ledger was not touched");
    assert!(!out.join("generations").exists());
    assert_eq!(sim.stats().requests, 0);
}

#[tokio::test]
async fn unwritable_output_exits_2_and_the_next_run_finishes_exactly_once() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(300, Duration::from_secs(86_400), "ro");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A file where the table directory must go: no data file can be created.
    std::fs::write(out.join("generations"), "in the way").unwrap();
    let mut cmd = export_command(&sim.base_url(), &input, &out);
    cmd.stderr(Stdio::piped());
    let output = run(cmd).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    // Checked before the run begins: nothing is fetched, and the ledger
    // records no run for the next one to call dead.
    assert!(
        stderr.contains("is a file, not a directory") && stderr.contains("generations"),
        "{stderr}"
    );
    assert_eq!(sim.stats().requests, 0);
    {
        let ledger = Ledger::open(&out.join("_state/genledger.db"), &out).unwrap();
        assert_eq!(
            ledger.status_counts().unwrap(),
            (0, 0, 0),
            "nothing admitted"
        );
        assert!(ledger.run_ids().unwrap().is_empty());
    }
    std::fs::remove_file(out.join("generations")).unwrap();
    let cmd = export_command(&sim.base_url(), &input, &out);
    let status = run(cmd).await.status;
    assert_eq!(status.code(), Some(0));
    check_exactly_once(&out, &ids);
}

#[tokio::test]
async fn runs_resume_pending_ids_skip_exported_ones_and_write_nothing_when_done() {
    let dir = tempfile::tempdir().unwrap();
    let first = ids(400, Duration::from_secs(86_400), "r1");
    let input = write_lines(dir.path(), "ids.txt", &first);
    let out = dir.path().join("out");
    // Run 1: the key is refused part way; the rest stays pending.
    let refusing = start_sim(SimConfig {
        unauthorized_after: Some(150),
        ..SimConfig::default()
    })
    .await;
    let report = export(&settings(&refusing, &input, &out, Format::Parquet)).await;
    assert_eq!(report.exit_code, 3);
    let left = report.counts.pending;
    assert!(left > 0);
    // Run 2: a new input; the leftovers of run 1 are fetched too.
    let sim = start_sim(SimConfig::default()).await;
    let second = ids(50, Duration::from_secs(86_400), "r2");
    let input2 = write_lines(dir.path(), "ids2.txt", &second);
    let report = export(&settings(&sim, &input2, &out, Format::Parquet)).await;
    assert_eq!(
        (
            report.exit_code,
            report.counts.resumed,
            report.counts.exported
        ),
        (0, left, left + 50)
    );
    // Run 3: everything in the input is already exported.
    let before = all_files(&out).len();
    let requests = sim.stats().requests;
    let report = export(&settings(&sim, &input, &out, Format::Parquet)).await;
    assert_eq!(
        (
            report.exit_code,
            report.counts.already_exported,
            report.counts.exported
        ),
        (0, 400, 0)
    );
    assert!(report.manifest.is_none() && report.files.is_empty());
    assert_eq!(
        all_files(&out).len(),
        before,
        "no new files, not even empty ones"
    );
    assert_eq!(sim.stats().requests, requests, "nothing fetched again");
    let all: Vec<String> = first.into_iter().chain(second).collect();
    check_exactly_once(&out, &all);
}

#[tokio::test]
async fn failed_ids_stay_failed_until_retry_failed() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(30, Duration::from_secs(86_400), "rf");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let missing = start_sim(SimConfig {
        missing_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let report = export(&settings(&missing, &input, &out, Format::Csv)).await;
    assert_eq!((report.exit_code, report.counts.failed), (1, 30));
    let sim = start_sim(SimConfig::default()).await;
    let settings = settings(&sim, &input, &out, Format::Csv);
    let report = export(&settings).await;
    assert_eq!((report.exit_code, report.counts.previously_failed), (1, 30));
    assert_eq!(
        sim.stats().requests,
        0,
        "failed IDs are not fetched again by default"
    );
    let options = genledger::export::RunOptions {
        retry_failed: true,
        ..Default::default()
    };
    let stop = std::sync::Arc::new(genledger::stop::Stop::default());
    let progress = std::sync::Arc::new(genledger::progress::Silent);
    let report = genledger::export::run(&settings, &options, stop, progress)
        .await
        .unwrap();
    assert_eq!((report.exit_code, report.counts.exported), (0, 30));
    let ledger = Ledger::open(&out.join("_state/genledger.db"), &out).unwrap();
    assert_eq!(ledger.status_of(&ids[0]).unwrap(), Some(IdStatus::Exported));
}

/// Starts `cmd`, SIGKILLs it after `after`; returns whether it was still
/// running then (killed mid-way rather than already done).
pub(crate) async fn kill_after(mut cmd: std::process::Command, after: Duration) -> bool {
    let mut child = cmd.spawn().unwrap();
    tokio::task::spawn_blocking(move || {
        std::thread::sleep(after);
        let running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        running
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn kill_with_the_focus_table_on_then_rerun_leaves_both_tables_with_every_id_once() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(4),
        latency_jitter: Duration::from_millis(8),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (per_round, rounds) = (40, 10);
    let ids = ids(per_round * rounds, Duration::from_secs(86_400 * 2), "fkill");
    let out = dir.path().join("out");
    let base = sim.base_url();
    let mut rng = fastrand::Rng::with_seed(20);
    let mut kills = 0;
    let focus = |mut cmd: Command| {
        cmd.arg("--focus")
            .env("GENLEDGER_FOCUS__BILLING_ACCOUNT_ID", "org-crash");
        cmd
    };
    for round in 0..rounds {
        let input = write_lines(dir.path(), "ids.txt", &ids[..per_round * (round + 1)]);
        let cmd = focus(export_command(&base, &input, &out));
        let after = Duration::from_millis(rng.u64(30..300));
        kills += usize::from(kill_after(cmd, after).await);
    }
    assert!(kills >= 7, "only {kills} runs were killed mid-way");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let status = run(focus(export_command(&base, &input, &out))).await.status;
    assert_eq!(status.code(), Some(0), "a clean run finishes everything");
    check_exactly_once(&out, &ids);
    let mut seen = HashSet::new();
    for file in table_files(&out, "focus", ".parquet") {
        let name = file.strip_prefix(out.join("focus")).unwrap();
        let source = out.join("generations").join(name);
        let rows = |path: &Path| {
            read_parquet(path)
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>()
        };
        assert_eq!(
            rows(&file),
            rows(&source),
            "{} pairs with its generations file",
            file.display()
        );
        for batch in read_parquet(&file) {
            let col = batch.column_by_name("x_GenerationId").unwrap();
            let col = col
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .unwrap();
            for id in col.iter().flatten() {
                assert!(seen.insert(id.to_owned()), "{id} is in two focus files");
            }
        }
    }
    assert_eq!(seen, ids.iter().cloned().collect::<HashSet<_>>());
    assert_eq!(
        table_files(&out, "focus", ".parquet").len(),
        table_files(&out, "generations", ".parquet").len(),
        "every generations file has its focus file"
    );
    check_state_after_kills(&out).await;
}
