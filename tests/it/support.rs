//! Helpers shared by the integration tests: a simulator per test, fast-retry
//! settings, and readers that load output files back the way a user would.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use genledger::config::{ApiKey, Format, RawConfig, Settings};
use genledger::export::summary::RunReport;
use genledger::money::Money;
use genledger::progress::Silent;
use genledger::simulator::{SimConfig, SimHandle, Simulator};
use genledger::stop::Stop;
use genledger::timestamp::format_timestamp;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub const KEY: &str = "sk-or-v1-test-key-0123456789abcdef";

/// A row read back from a file: column name → value as text (`None` for null).
pub type Row = BTreeMap<String, Option<String>>;

pub async fn start_sim(config: SimConfig) -> SimHandle {
    let config = SimConfig {
        api_key: Some(KEY.into()),
        ..config
    };
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Settings with near-zero backoff so retries do not slow the suite down.
pub fn settings(sim: &SimHandle, ids: &Path, out: &Path, format: Format) -> Settings {
    let mut raw = RawConfig::default();
    raw.api.base_url = sim.base_url();
    raw.input.paths = vec![ids.display().to_string()];
    raw.output.dir = out.to_path_buf();
    raw.output.format = format;
    raw.fetch.requests_per_second = 100_000.0;
    raw.fetch.burst = 100;
    raw.fetch.concurrency = 8;
    raw.fetch.max_attempts = 30;
    raw.fetch.backoff_initial = Duration::from_millis(1);
    raw.fetch.backoff_max = Duration::from_millis(20);
    // A 404 is final at once unless a test opens the window.
    raw.fetch.not_found_grace = Duration::ZERO;
    raw.fetch.timeout = Duration::from_secs(20);
    with_raw(raw)
}

pub fn with_raw(raw: RawConfig) -> Settings {
    Settings::resolve(&raw, Some(ApiKey::new(KEY.into())), |_| "test".into())
        .expect("valid settings")
}

pub async fn export(settings: &Settings) -> RunReport {
    genledger::export::run(
        settings,
        &Default::default(),
        Arc::new(Stop::default()),
        Arc::new(Silent),
    )
    .await
    .expect("export runs")
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `n` IDs created `age` ago, distinct per `tag`.
pub fn ids(n: usize, age: Duration, tag: &str) -> Vec<String> {
    let created = unix_now() - age.as_secs();
    (0..n)
        .map(|i| format!("gen-{created}-{tag}{i:0>12}"))
        .collect()
}

pub fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Every data file of the `generations` table, sorted.
pub fn data_files(out: &Path, extension: &str) -> Vec<PathBuf> {
    table_files(out, "generations", extension)
}

/// Every data file of a table (`generations`, `content`), sorted.
pub fn table_files(out: &Path, table: &str, extension: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let root = out.join(table);
    let Ok(partitions) = std::fs::read_dir(&root) else {
        return files;
    };
    for partition in partitions {
        let partition = partition.unwrap().path();
        assert!(
            partition
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("date=")
        );
        for file in std::fs::read_dir(&partition).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !name.starts_with('.'),
                "temporary file left behind: {}",
                path.display()
            );
            if name.ends_with(extension) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    reader.map(|b| b.unwrap()).collect()
}

/// All rows of all Parquet files under `out`, as text.
pub fn parquet_rows(out: &Path) -> Vec<Row> {
    table_parquet_rows(out, "generations")
}

/// All rows of a table's Parquet files under `out`, as text.
pub fn table_parquet_rows(out: &Path, table: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for path in table_files(out, table, ".parquet") {
        for batch in read_parquet(&path) {
            push_rows(&batch, &mut rows);
        }
    }
    rows
}

/// The rows of a Parquet file held in memory (an object read back), as text.
pub fn parquet_bytes_rows(bytes: bytes::Bytes) -> Vec<Row> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        push_rows(&batch.unwrap(), &mut rows);
    }
    rows
}

fn push_rows(batch: &RecordBatch, rows: &mut Vec<Row>) {
    let schema = batch.schema();
    for i in 0..batch.num_rows() {
        let row = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, col)| (field.name().clone(), cell_text(col.as_ref(), i)))
            .collect();
        rows.push(row);
    }
}

fn cell_text(col: &dyn Array, i: usize) -> Option<String> {
    if col.is_null(i) {
        return None;
    }
    Some(match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().value(i).to_owned(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Float64 => col.as_primitive::<Float64Type>().value(i).to_string(),
        DataType::Boolean => col.as_boolean().value(i).to_string(),
        DataType::Decimal128(38, 18) => {
            Money::from_units(col.as_primitive::<Decimal128Type>().value(i))
                .unwrap()
                .to_string()
        }
        DataType::Timestamp(_, Some(tz)) if tz.as_ref() == "UTC" => {
            format_timestamp(col.as_primitive::<TimestampMicrosecondType>().value(i))
        }
        other => panic!("unexpected column type {other:?}"),
    })
}

/// All rows of all CSV files under `out`, read with a CSV reader.
pub fn csv_rows(out: &Path) -> Vec<Row> {
    table_csv_rows(out, "generations")
}

/// All rows of a table's CSV files under `out`, read with a CSV reader.
pub fn table_csv_rows(out: &Path, table: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for path in table_files(out, table, ".csv") {
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let headers = reader.headers().unwrap().clone();
        for record in reader.records() {
            let record = record.unwrap();
            let row = headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_owned(), (!v.is_empty()).then(|| v.to_owned())))
                .collect();
            rows.push(row);
        }
    }
    rows
}

/// The failures file's rows (header checked).
pub fn failure_rows(out: &Path) -> Vec<csv::StringRecord> {
    let Ok(entries) = std::fs::read_dir(out.join("failures")) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for entry in entries {
        let mut reader = csv::Reader::from_path(entry.unwrap().path()).unwrap();
        assert_eq!(
            reader.headers().unwrap(),
            vec!["id", "line", "reason", "http_status", "attempts", "message"]
        );
        rows.extend(reader.records().map(|r| r.unwrap()));
    }
    rows
}

/// Every file under `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out
}

/// The `genledger` executable, with none of this environment's genledger
/// settings, key or log filter leaking in.
pub fn genledger() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_genledger"));
    for (name, _) in std::env::vars() {
        if name.starts_with("GENLEDGER_")
            || name == "OPENROUTER_API_KEY"
            || name == "OPENROUTER_MANAGEMENT_KEY"
            || name == "RUST_LOG"
        {
            cmd.env_remove(name);
        }
    }
    cmd
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command to its end off the async runtime (the simulator keeps serving).
pub async fn run(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("the command runs"))
        .await
        .unwrap()
}
