//! Content export: content files read back equal the simulator's stored
//! content, refused IDs end in the failures file with their metadata still
//! exported, files are owner-only, and no content is fetched or written twice.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use genledger::config::Format;
use genledger::ledger::Ledger;
use genledger::simulator::SimConfig;
use genledger::simulator::record::{content, generation};
use genledger::timestamp::format_timestamp;

use crate::support::*;

/// What a content row must say for `id`, as text.
fn expected(id: &str) -> Row {
    let sim = content(id);
    let created = chrono::DateTime::parse_from_rfc3339(&generation(id).created_at)
        .unwrap()
        .timestamp_micros();
    Row::from([
        ("id".to_owned(), Some(id.to_owned())),
        ("created_at".to_owned(), Some(format_timestamp(created))),
        ("input_prompt".to_owned(), sim.input_prompt),
        ("input_messages".to_owned(), sim.input_messages),
        ("output_completion".to_owned(), sim.output_completion),
        ("output_reasoning".to_owned(), sim.output_reasoning),
        ("error".to_owned(), sim.error),
    ])
}

/// Content rows hold each of `ids` exactly once, equal to the simulator's.
/// `csv`: a CSV reader gives `""` and an empty field alike.
fn check_content(rows: Vec<Row>, ids: &[String], csv: bool) {
    let mut seen = HashSet::new();
    for mut row in rows {
        let id = row["id"].clone().unwrap();
        assert!(seen.insert(id.clone()), "{id}: content written twice");
        assert!(row.remove("fetched_at").unwrap().is_some(), "{id}");
        let mut want = expected(&id);
        if csv {
            want.values_mut()
                .filter(|v| v.as_deref() == Some(""))
                .for_each(|v| *v = None);
        }
        assert_eq!(row, want, "{id}");
    }
    let wanted: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(seen, wanted, "content rows are exactly the served IDs");
}

/// Content files and their directories are readable by the owner only.
#[cfg(unix)]
fn check_owner_only(out: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let root = out.join("content");
    assert_eq!(mode(&root), 0o700, "{}", root.display());
    let files = all_files(&root);
    assert!(!files.is_empty());
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        assert_eq!(mode(file.parent().unwrap()), 0o700, "{}", file.display());
    }
}

#[cfg(not(unix))]
fn check_owner_only(_: &Path) {}

fn metadata_ids(out: &Path) -> HashSet<String> {
    let rows = parquet_rows(out);
    let ids: HashSet<String> = rows.iter().map(|r| r["id"].clone().unwrap()).collect();
    assert_eq!(ids.len(), rows.len(), "an ID's metadata is in two files");
    ids
}

fn content_settings(
    sim: &genledger::simulator::SimHandle,
    input: &Path,
    out: &Path,
    format: Format,
) -> genledger::config::Settings {
    let mut settings = settings(sim, input, out, format);
    settings.content = true;
    settings
}

#[tokio::test]
async fn content_round_trip_equals_the_simulator_and_refused_ids_are_failures() {
    let faults = SimConfig {
        content_forbidden_rate: 0.1,
        content_missing_rate: 0.1,
        ..SimConfig::default()
    };
    let truth = faults.clone();
    let sim = start_sim(faults).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(400, Duration::from_secs(86_400 * 3), "ct");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let mut settings = content_settings(&sim, &input, &out, Format::Parquet);
    settings.output.max_rows_per_file = 120;
    let report = export(&settings).await;

    let refused: BTreeMap<&str, u16> = ids
        .iter()
        .filter_map(|id| truth.content_refusal(id).map(|s| (id.as_str(), s)))
        .collect();
    assert!(refused.values().any(|&s| s == 403) && refused.values().any(|&s| s == 404));
    let served: Vec<String> = ids
        .iter()
        .filter(|id| !refused.contains_key(id.as_str()))
        .cloned()
        .collect();

    // Metadata of every ID, refused ones included; content of the others.
    assert_eq!(metadata_ids(&out), ids.iter().cloned().collect());
    let content_files = table_files(&out, "content", ".parquet");
    assert!(content_files.len() >= 3, "rotation: {content_files:?}");
    check_content(table_parquet_rows(&out, "content"), &served, false);
    check_owner_only(&out);

    // The failures file holds exactly the refused IDs, with their reasons.
    let failures: BTreeMap<String, csv::StringRecord> = failure_rows(&out)
        .into_iter()
        .map(|r| (r[0].to_owned(), r))
        .collect();
    assert_eq!(failures.len(), refused.len());
    for (id, status) in &refused {
        let row = &failures[*id];
        let reason = if *status == 403 {
            "content_forbidden"
        } else {
            "content_not_found"
        };
        assert_eq!(
            (&row[2], &row[3], &row[4]),
            (reason, &*status.to_string(), "1"),
            "{id}"
        );
        assert!(!row[5].is_empty(), "{id}: a message");
    }
    if let Some((id, _)) = refused.iter().find(|(_, s)| **s == 403) {
        assert!(failures[*id][5].contains("admins"), "body excerpt kept");
    }

    let c = report.counts;
    assert_eq!(
        (
            c.exported,
            c.content_exported,
            c.content_failed,
            c.content_pending
        ),
        (400, served.len() as u64, refused.len() as u64, 0)
    );
    assert_eq!(report.exit_code, 1, "content failures are failures");
    assert_eq!(report.content_files.len(), content_files.len());
    // One request per ID and endpoint, counted in the same budget.
    let stats = sim.stats();
    assert_eq!(
        (stats.metadata_requests, stats.content_requests),
        (400, 400)
    );
    assert_eq!(c.requests, 800);

    let manifest = genledger::export::manifest::read(report.manifest.as_ref().unwrap()).unwrap();
    let listed: Vec<&serde_json::Value> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "content")
        .collect();
    assert_eq!(listed.len(), content_files.len());
    let rows: u64 = listed.iter().map(|f| f["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows, served.len() as u64);
    assert!(
        listed
            .iter()
            .all(|f| f["path"].as_str().unwrap().starts_with("content/date="))
    );
    assert_eq!(manifest["counts"]["content_failed"], refused.len());

    let ledger = Ledger::open(&out.join("_state/genledger.db"), &out).unwrap();
    assert_eq!(
        ledger.content_counts().unwrap(),
        (0, served.len() as u64, refused.len() as u64)
    );
}

#[tokio::test]
async fn content_csv_round_trip_and_a_second_run_fetches_nothing() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(150, Duration::from_secs(86_400), "cc");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let settings = content_settings(&sim, &input, &out, Format::Csv);
    let report = export(&settings).await;
    assert_eq!((report.exit_code, report.counts.content_exported), (0, 150));
    check_content(table_csv_rows(&out, "content"), &ids, true);
    check_owner_only(&out);

    let before = (all_files(&out).len(), sim.stats().requests);
    let again = export(&settings).await;
    assert_eq!((again.exit_code, again.counts.content_exported), (0, 0));
    assert_eq!((all_files(&out).len(), sim.stats().requests), before);
}

#[tokio::test]
async fn content_turned_on_later_is_fetched_once_for_ids_exported_before() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let all = ids(250, Duration::from_secs(86_400 * 2), "late");
    let out = dir.path().join("out");
    let first = write_lines(dir.path(), "first.txt", &all[..200]);
    let report = export(&settings(&sim, &first, &out, Format::Parquet)).await;
    assert_eq!((report.exit_code, report.counts.exported), (0, 200));
    assert!(!out.join("content").exists());
    assert_eq!(sim.stats().content_requests, 0);

    // Content on, over a longer input: the 50 new IDs get both; the 200
    // exported earlier get their content only.
    let input = write_lines(dir.path(), "all.txt", &all);
    let settings = content_settings(&sim, &input, &out, Format::Parquet);
    let report = export(&settings).await;
    let c = report.counts;
    assert_eq!(
        (
            report.exit_code,
            c.exported,
            c.already_exported,
            c.content_exported
        ),
        (0, 50, 200, 250)
    );
    let stats = sim.stats();
    assert_eq!(
        (stats.metadata_requests, stats.content_requests),
        (250, 250)
    );
    assert_eq!(stats.duplicate_ok, 0);
    // The earlier IDs' content sits under their generation's day. The ledger
    // keeps no `created_at` for a settled ID, so their content is dated by
    // the second the ID names; the 50 new IDs carry the exact one.
    let rows = table_parquet_rows(&out, "content")
        .into_iter()
        .map(|mut row| {
            let id = row["id"].clone().unwrap();
            if all[..200].contains(&id) {
                let want = expected(&id)["created_at"].clone().unwrap();
                let got = row["created_at"].clone().unwrap();
                assert_eq!(got[..19], want[..19], "{id}: the same second");
                row.insert("created_at".into(), Some(want));
            }
            row
        })
        .collect();
    check_content(rows, &all, false);
    assert_eq!(metadata_ids(&out).len(), 250);

    let files = all_files(&out).len();
    let report = export(&settings).await;
    assert_eq!((report.exit_code, report.counts.content_exported), (0, 0));
    assert_eq!(sim.stats().requests, 500, "nothing fetched again");
    assert_eq!(all_files(&out).len(), files);
}

#[tokio::test]
async fn content_left_by_a_refused_key_is_fetched_by_the_next_run_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(300, Duration::from_secs(86_400), "stop");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let refusing = start_sim(SimConfig {
        unauthorized_after: Some(200),
        ..SimConfig::default()
    })
    .await;
    let first = export(&content_settings(&refusing, &input, &out, Format::Parquet)).await;
    assert_eq!(first.exit_code, 3);
    assert!(first.counts.content_exported > 0 && first.counts.pending > 0);

    let healthy = start_sim(SimConfig::default()).await;
    let second = export(&content_settings(&healthy, &input, &out, Format::Parquet)).await;
    assert_eq!(second.exit_code, 0, "{:?}", second.counts);
    assert_eq!(metadata_ids(&out), ids.iter().cloned().collect());
    check_content(table_parquet_rows(&out, "content"), &ids, false);
    let stats = healthy.stats();
    assert_eq!(
        (stats.metadata_requests, stats.content_requests),
        (
            300 - first.counts.exported,
            300 - first.counts.content_exported
        ),
        "only what was left is fetched"
    );
    let ledger = Ledger::open(&out.join("_state/genledger.db"), &out).unwrap();
    assert_eq!(ledger.content_counts().unwrap(), (0, 300, 0));
}

#[tokio::test]
async fn with_content_flag_overrides_the_config_key() {
    let mut cmd = genledger();
    cmd.args(["show-config", "--with-content"]);
    let output = run(cmd).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("[export]\ncontent = true"), "{stdout}");
    let output = run({
        let mut cmd = genledger();
        cmd.arg("show-config");
        cmd
    })
    .await;
    assert!(text(&output.stdout).contains("[export]\ncontent = false"));
}
