//! Few files and bounded memory whatever the input: IDs whose days come in an
//! order that cycles through a month still make at most two files per
//! partition, every ID in exactly one of them, also when runs holding rows
//! back are killed; and rows of large prompts cut Parquet row groups by
//! bytes, not only by rows.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::time::Duration;

use genledger::config::Format;
use genledger::simulator::SimConfig;
use genledger::sink::ROW_GROUP_BYTES;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::crash::{check_exactly_once, check_table_exactly_once, export_command, kill_after};
use crate::support::*;

const DAYS: u64 = 30;

/// `n` IDs whose `gen-<unix>-` second (and so the simulator's `created_at`)
/// falls on one of the last [`DAYS`] UTC days, cycling through the days.
fn cycling_ids(n: u64) -> Vec<String> {
    let today = unix_now() / 86_400 * 86_400;
    (0..n)
        .map(|i| {
            let day_start = today - (i % DAYS + 1) * 86_400;
            let second = day_start + (i / DAYS * 7) % 86_000;
            format!("gen-{second}-cycle{i:012}")
        })
        .collect()
}

/// Files per `date=` partition of `table`.
fn files_per_partition(out: &Path, table: &str, extension: &str) -> BTreeMap<String, usize> {
    let mut per_partition = BTreeMap::new();
    for file in table_files(out, table, extension) {
        let partition = file.parent().unwrap().file_name().unwrap();
        *per_partition
            .entry(partition.to_string_lossy().into_owned())
            .or_default() += 1;
    }
    per_partition
}

/// A table's rows as text, without the columns that differ between runs.
fn run_free_rows(out: &Path, table: &str, format: Format) -> Vec<Row> {
    let mut rows = match format {
        Format::Parquet => table_parquet_rows(out, table),
        Format::Csv => table_csv_rows(out, table),
    };
    for row in &mut rows {
        for column in ["run_id", "exported_at", "fetched_at"] {
            row.remove(column);
        }
    }
    rows.sort_by(|a, b| a["id"].cmp(&b["id"]));
    rows
}

/// Exports `ids` (metadata and content) in the order given, then in time
/// order into another directory, and checks the first export: at most two
/// files per partition, and row for row the same as the time-ordered one.
async fn export_cycling(ids: &[String], format: Format) -> tempfile::TempDir {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let extension = format.extension();
    let mut sorted = ids.to_vec();
    sorted.sort();
    let mut outs = Vec::new();
    for (name, order) in [("cycling", ids), ("sorted", &sorted[..])] {
        let input = write_lines(dir.path(), &format!("{name}.txt"), order);
        let out = dir.path().join(name);
        let mut settings = settings(&sim, &input, &out, format);
        settings.content = true;
        let report = export(&settings).await;
        assert_eq!(report.counts.exported, ids.len() as u64, "{name}");
        assert_eq!(report.counts.content_exported, ids.len() as u64, "{name}");
        outs.push(out);
    }
    for table in ["generations", "content"] {
        let per_partition = files_per_partition(&outs[0], table, extension);
        assert_eq!(
            per_partition.len() as u64,
            DAYS,
            "{table}: {per_partition:?}"
        );
        assert!(
            per_partition.values().all(|&n| n <= 2),
            "{table}: more than two files in a partition: {per_partition:?}"
        );
        assert_eq!(
            run_free_rows(&outs[0], table, format),
            run_free_rows(&outs[1], table, format),
            "{table}: rows held back and written at the end read back as written"
        );
    }
    dir
}

#[tokio::test]
async fn ids_cycling_through_a_month_make_at_most_two_parquet_files_per_day_each_id_once() {
    let ids = cycling_ids(3_000);
    let dir = export_cycling(&ids, Format::Parquet).await;
    let out = dir.path().join("cycling");
    check_exactly_once(&out, &ids);
    check_table_exactly_once(&out, "content", &ids);
}

#[tokio::test]
async fn ids_cycling_through_a_month_make_at_most_two_csv_files_per_day() {
    export_cycling(&cycling_ids(600), Format::Csv).await;
}

#[tokio::test]
async fn killed_runs_holding_rows_back_leave_nothing_behind_and_lose_nothing() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(2),
        latency_jitter: Duration::from_millis(4),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (per_round, rounds) = (150, 12);
    let ids = cycling_ids(per_round * rounds);
    let out = dir.path().join("out");
    let command = |input: &Path| {
        let mut cmd = export_command(&sim.base_url(), input, &out);
        cmd.arg("--with-content")
            .env("GENLEDGER_OUTPUT__MAX_ROWS_PER_FILE", "250000");
        cmd
    };
    let mut rng = fastrand::Rng::with_seed(18);
    let mut kills = 0;
    for round in 0..rounds {
        let input = write_lines(
            dir.path(),
            "ids.txt",
            &ids[..(per_round * (round + 1)) as usize],
        );
        let after = Duration::from_millis(rng.u64(30..400));
        kills += usize::from(kill_after(command(&input), after).await);
    }
    assert!(kills >= 8, "only {kills} runs were killed mid-way");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    assert_eq!(run(command(&input)).await.status.code(), Some(0));
    check_exactly_once(&out, &ids);
    check_table_exactly_once(&out, "content", &ids);
    // The spill file had no name: nothing but the output tree is left.
    for file in all_files(&out) {
        let rel = file.strip_prefix(&out).unwrap();
        let top = rel.components().next().unwrap().as_os_str();
        assert!(
            ["generations", "content", "failures", "_manifests", "_state"]
                .iter()
                .any(|dir| top == *dir),
            "{} left in the output",
            rel.display()
        );
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(
            !name.starts_with('.'),
            "{} left in the output",
            rel.display()
        );
    }
}

#[tokio::test]
async fn large_prompts_cut_row_groups_by_bytes() {
    const PROMPT: usize = 512 << 10;
    let sim = start_sim(SimConfig {
        content_prompt_bytes: Some(PROMPT),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(48, Duration::from_secs(86_400 * 2), "big");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    let out = dir.path().join("out");
    let mut settings = settings(&sim, &input, &out, Format::Parquet);
    settings.content = true;
    let report = export(&settings).await;
    assert_eq!(report.counts.content_exported, 48);

    let files = table_files(&out, "content", ".parquet");
    assert_eq!(files.len(), 1, "one day, one file: {files:?}");
    let reader = SerializedFileReader::new(File::open(&files[0]).unwrap()).unwrap();
    let groups = reader.metadata().row_groups();
    // A row group is cut once its rows reach ROW_GROUP_BYTES: 8 prompts.
    let per_group = ROW_GROUP_BYTES / PROMPT;
    let rows: Vec<i64> = groups.iter().map(|g| g.num_rows()).collect();
    assert_eq!(
        rows,
        vec![per_group as i64; 48 / per_group],
        "rows per row group"
    );
    for group in groups {
        assert!(
            group.total_byte_size() as usize <= ROW_GROUP_BYTES + PROMPT,
            "{} bytes in a row group",
            group.total_byte_size()
        );
    }
    check_table_exactly_once(&out, "content", &ids);
    // Metadata rows are small: one row group of all 48.
    let metadata = table_files(&out, "generations", ".parquet");
    let reader = SerializedFileReader::new(File::open(&metadata[0]).unwrap()).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), 1);
}
