//! `genledger schema`: every dialect's printed DDL names exactly the columns,
//! types and nullability of the files written, for both tables and both
//! money modes.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use genledger::atomic_file::PendingFile;
use genledger::config::{Compression, Format};
use genledger::record::{Content, parse_content};
use genledger::schema::MoneyMode;
use genledger::simulator::SimConfig;
use genledger::sink::ParquetFile;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::support::*;

/// A column as a file or a DDL states it: name, Arrow type, nullable.
type Columns = Vec<(String, DataType, bool)>;

const DIALECTS: [&str; 5] = ["arrow", "duckdb", "bigquery", "snowflake", "postgres"];

fn file_columns(path: &Path) -> Columns {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    schema_columns(reader.schema())
}

fn schema_columns(schema: &SchemaRef) -> Columns {
    let fields = schema.fields().iter();
    fields
        .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
        .collect()
}

/// What `genledger schema` prints.
async fn printed(dialect: &str, money: MoneyMode) -> String {
    let money = match money {
        MoneyMode::Decimal => "decimal",
        MoneyMode::Float64 => "float64",
    };
    let mut cmd = genledger();
    cmd.args(["schema", "--dialect", dialect, "--money", money]);
    let output = run(cmd).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

/// The columns the DDL gives `table`, each type mapped back to what Arrow
/// reads from a file of that type.
fn ddl_columns(dialect: &str, ddl: &str, table: &str) -> Columns {
    match dialect {
        "arrow" => arrow_columns(ddl, table),
        "bigquery" => {
            let schemas: serde_json::Value = serde_json::from_str(ddl).unwrap();
            let fields = schemas[table].as_array().expect("a schema per table");
            let column = |f: &serde_json::Value| {
                let ty = sql_to_arrow(dialect, f["type"].as_str().unwrap());
                let nullable = f["mode"] == "NULLABLE";
                assert!(nullable || f["mode"] == "REQUIRED", "{f}");
                (f["name"].as_str().unwrap().to_owned(), ty, nullable)
            };
            fields.iter().map(column).collect()
        }
        _ => sql_columns(dialect, ddl, table),
    }
}

fn arrow_columns(ddl: &str, table: &str) -> Columns {
    let section = ddl
        .split("\n\n")
        .find(|s| s.contains(&format!("table `{table}`")))
        .expect("a section per table");
    let lines = section.lines().filter(|l| !l.starts_with('#'));
    lines
        .map(|line| {
            let (name, ty) = line.split_once(": ").unwrap();
            let (ty, nullable) = match ty.strip_suffix(" not null") {
                Some(ty) => (ty, false),
                None => (ty, true),
            };
            (name.to_owned(), ty.parse::<DataType>().unwrap(), nullable)
        })
        .collect()
}

fn sql_columns(dialect: &str, ddl: &str, table: &str) -> Columns {
    let start = format!("CREATE TABLE IF NOT EXISTS {table} (\n");
    let body = &ddl[ddl.find(&start).expect("CREATE TABLE") + start.len()..];
    let body = &body[..body.find("\n);").expect("closing parenthesis")];
    body.lines()
        .map(|line| {
            let line = line.trim().trim_end_matches(',');
            let (line, nullable) = match line.strip_suffix(" NOT NULL") {
                Some(line) => (line, false),
                None => (line, true),
            };
            let (name, ty) = line.split_once(' ').unwrap();
            let name = name.trim_matches('"');
            (name.to_owned(), sql_to_arrow(dialect, ty), nullable)
        })
        .collect()
}

/// Each dialect's own names: a type that loads the files' values unchanged.
fn sql_to_arrow(dialect: &str, ty: &str) -> DataType {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    match (dialect, ty) {
        ("duckdb", "VARCHAR" | "JSON") => DataType::Utf8,
        ("postgres", "TEXT" | "JSON") => DataType::Utf8,
        ("snowflake", "VARCHAR") | ("bigquery", "STRING") => DataType::Utf8,
        ("duckdb" | "postgres", "TIMESTAMPTZ") => utc,
        ("snowflake", "TIMESTAMP_TZ") | ("bigquery", "TIMESTAMP") => utc,
        ("duckdb", "DECIMAL(38,18)") | ("postgres", "NUMERIC(38,18)") => {
            DataType::Decimal128(38, 18)
        }
        ("snowflake", "NUMBER(38,18)") | ("bigquery", "BIGNUMERIC") => DataType::Decimal128(38, 18),
        ("duckdb" | "snowflake", "DOUBLE") | ("postgres", "DOUBLE PRECISION") => DataType::Float64,
        ("bigquery", "FLOAT64") => DataType::Float64,
        ("duckdb" | "postgres" | "snowflake", "BIGINT") | ("bigquery", "INT64") => DataType::Int64,
        ("duckdb" | "postgres" | "snowflake", "BOOLEAN") | ("bigquery", "BOOL") => {
            DataType::Boolean
        }
        _ => panic!("{dialect} type {ty} does not hold any column genledger writes"),
    }
}

/// Content rows parsed from simulator answers, written with the sink's
/// Parquet writer; returns the file.
fn write_content(dir: &Path, money: MoneyMode) -> (std::path::PathBuf, Vec<Content>) {
    let rows: Vec<Content> = (0..200)
        .map(|i| {
            let id = format!("gen-1764704027-content{i:012}");
            let body = format!(
                "{{\"data\":{}}}",
                genledger::simulator::content(&id).to_json()
            );
            let created = (i % 3 != 0).then_some(1_764_704_027_000_000 + i);
            parse_content(&body, &id, created, 1_764_800_000_000_000).unwrap()
        })
        .collect();
    let (pending, out) = PendingFile::create(dir.join("content.parquet")).unwrap();
    let mut file = ParquetFile::try_new::<Content>(out, money, Compression::Zstd).unwrap();
    for row in &rows {
        file.append(row).unwrap();
    }
    let finished = pending.finish(file.into_inner().unwrap()).unwrap();
    (finished.path, rows)
}

/// The content file holds what was parsed: the text columns read back equal.
fn check_content_values(path: &Path, rows: &[Content]) {
    let mut read = 0;
    for batch in read_parquet(path) {
        let text = |name: &str, i: usize| {
            let column = batch.column_by_name(name).unwrap().as_string::<i32>();
            (!arrow_array::Array::is_null(column, i)).then(|| column.value(i).to_owned())
        };
        for i in 0..batch.num_rows() {
            let want = &rows[read + i];
            assert_eq!(text("id", i).as_deref(), Some(want.id.as_str()));
            assert_eq!(text("input_prompt", i), want.input_prompt);
            assert_eq!(text("input_messages", i), want.input_messages);
            assert_eq!(text("output_completion", i), want.output_completion);
            assert_eq!(text("error", i), want.error);
        }
        read += batch.num_rows();
    }
    assert_eq!(read, rows.len());
    assert!(
        rows.iter()
            .any(|r| r.error.is_some() && r.input_messages.is_some())
    );
}

#[tokio::test]
async fn every_dialect_names_exactly_the_columns_and_types_of_the_written_files() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ids(60, Duration::from_secs(86_400), "ddl");
    let input = write_lines(dir.path(), "ids.txt", &ids);
    for money in [MoneyMode::Decimal, MoneyMode::Float64] {
        let out = dir.path().join(format!("out-{money:?}"));
        let mut settings = settings(&sim, &input, &out, Format::Parquet);
        settings.output.money = money;
        settings.output.focus = Some(std::sync::Arc::new(genledger::record::FocusAccount {
            billing_account_id: "org-ddl".into(),
            billing_account_name: None,
        }));
        assert_eq!(export(&settings).await.exit_code, 0);
        let focus = file_columns(&table_files(&out, "focus", ".parquet")[0]);
        let generations = file_columns(&data_files(&out, ".parquet")[0]);
        let money_type = &generations.iter().find(|c| c.0 == "total_cost").unwrap().1;
        match money {
            MoneyMode::Decimal => assert_eq!(money_type, &DataType::Decimal128(38, 18)),
            MoneyMode::Float64 => assert_eq!(money_type, &DataType::Float64),
        }
        let (content_file, rows) = write_content(dir.path(), money);
        check_content_values(&content_file, &rows);
        let content = file_columns(&content_file);

        for dialect in DIALECTS {
            let ddl = printed(dialect, money).await;
            assert_eq!(
                ddl_columns(dialect, &ddl, "generations"),
                generations,
                "{dialect} {money:?}:\n{ddl}"
            );
            assert_eq!(
                ddl_columns(dialect, &ddl, "content"),
                content,
                "{dialect} {money:?}:\n{ddl}"
            );
            assert_eq!(
                ddl_columns(dialect, &ddl, "focus"),
                focus,
                "{dialect} {money:?}:\n{ddl}"
            );
        }
    }
}
