//! Reads an export directory's `generations` data files back, streaming:
//! Parquet batch by batch (only the columns the report needs), CSV row by row.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chrono::NaiveDate;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{Line, Report, Sums, UNKNOWN_MODEL};
use crate::money::{self, Money};
use crate::timestamp::partition_date;

/// The columns the report reads, in this order.
const COLUMNS: [&str; 6] = [
    "model",
    "created_at",
    "exported_at",
    "total_cost",
    "tokens_prompt",
    "tokens_completion",
];

/// Reads every data file under `dir/generations/date=*/`.
pub fn read_export(dir: &Path) -> anyhow::Result<Report> {
    let root = export_root(dir)?;
    let files = data_files(&root)?;
    if files.is_empty() {
        bail!(
            "no export files in `{}` (expected generations/date=*/part-*.parquet or .csv)",
            root.display()
        );
    }
    let mut report = Report::new(&root);
    for path in &files {
        let read = match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => read_parquet(path, &mut report),
            _ => read_csv(path, &mut report),
        };
        read.with_context(|| format!("failed to read `{}`", path.display()))?;
        report.files += 1;
    }
    Ok(report)
}

/// `dir` itself when it holds `generations/`; else its only subdirectory
/// that does (the demo writes `parquet/` and `csv/` copies of one export,
/// which must not be summed together).
fn export_root(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.join("generations").is_dir() {
        return Ok(dir.to_owned());
    }
    let entries =
        fs::read_dir(dir).with_context(|| format!("failed to read `{}`", dir.display()))?;
    let mut exports: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("generations").is_dir())
        .collect();
    exports.sort();
    match exports.as_slice() {
        [] => bail!(
            "no export files in `{}`: it has no `generations` directory",
            dir.display()
        ),
        [one] => Ok(one.clone()),
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect();
            bail!(
                "`{}` holds several exports ({}), which may hold the same generations; \
                 report on one of them, e.g. `genledger report {}`",
                dir.display(),
                names.join(", "),
                several[0].display()
            )
        }
    }
}

/// Data files in `date=` partitions, sorted; hidden (temporary) files skipped.
fn data_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let table = root.join("generations");
    let list = |dir: &Path| -> anyhow::Result<Vec<PathBuf>> {
        let entries =
            fs::read_dir(dir).with_context(|| format!("failed to read `{}`", dir.display()))?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to read `{}`", dir.display()))?;
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with('.') {
                paths.push(entry.path());
            }
        }
        paths.sort();
        Ok(paths)
    };
    let mut files = Vec::new();
    for partition in list(&table)? {
        let is_partition = partition
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("date="));
        if !is_partition || !partition.is_dir() {
            continue;
        }
        let data = list(&partition)?.into_iter().filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str());
            matches!(ext, Some("parquet" | "csv")) && p.is_file()
        });
        files.extend(data);
    }
    Ok(files)
}

fn read_parquet(path: &Path, report: &mut Report) -> anyhow::Result<()> {
    let file = File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let mut indices = Vec::with_capacity(COLUMNS.len());
    for name in COLUMNS {
        let index = schema
            .index_of(name)
            .map_err(|_| anyhow!("no `{name}` column"))?;
        indices.push(index);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    if schema.field_with_name("total_cost")?.data_type() == &DataType::Float64 {
        report.float_files += 1;
    }
    for batch in builder.with_projection(mask).build()? {
        read_batch(&batch?, report)?;
    }
    Ok(())
}

fn read_batch(batch: &RecordBatch, report: &mut Report) -> anyhow::Result<()> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| anyhow!("no `{name}` column"))
    };
    let model = column("model")?;
    let model = model
        .as_string_opt::<i32>()
        .ok_or_else(|| unexpected("model", model.as_ref()))?;
    let created_at = timestamps(column("created_at")?.as_ref(), "created_at")?;
    let exported_at = timestamps(column("exported_at")?.as_ref(), "exported_at")?;
    let prompt = integers(column("tokens_prompt")?.as_ref(), "tokens_prompt")?;
    let completion = integers(column("tokens_completion")?.as_ref(), "tokens_completion")?;
    let cost = column("total_cost")?;
    for i in 0..batch.num_rows() {
        let micros = get(created_at, i)
            .or(get(exported_at, i))
            .ok_or_else(|| anyhow!("a row has neither `created_at` nor `exported_at`"))?;
        let name = (!model.is_null(i)).then(|| model.value(i));
        let sums = Sums {
            rows: 1,
            total_cost: money_at(cost.as_ref(), i)?,
            tokens_prompt: get(prompt, i).unwrap_or(0),
            tokens_completion: get(completion, i).unwrap_or(0),
        };
        report.add(Line {
            model: model_label(name),
            day: partition_date(micros),
            sums,
        })?;
    }
    Ok(())
}

fn unexpected(name: &str, array: &dyn Array) -> anyhow::Error {
    anyhow!(
        "column `{name}` is {}, not a genledger type",
        array.data_type()
    )
}

fn get<T: ArrowPrimitiveType>(array: &PrimitiveArray<T>, i: usize) -> Option<T::Native> {
    (!array.is_null(i)).then(|| array.value(i))
}

fn timestamps<'a>(
    array: &'a dyn Array,
    name: &str,
) -> anyhow::Result<&'a PrimitiveArray<TimestampMicrosecondType>> {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(array.as_primitive()),
        _ => Err(unexpected(name, array)),
    }
}

fn integers<'a>(array: &'a dyn Array, name: &str) -> anyhow::Result<&'a PrimitiveArray<Int64Type>> {
    match array.data_type() {
        DataType::Int64 => Ok(array.as_primitive()),
        _ => Err(unexpected(name, array)),
    }
}

/// The exact amount in row `i`; null counts as zero.
fn money_at(array: &dyn Array, i: usize) -> anyhow::Result<Money> {
    if array.is_null(i) {
        return Ok(Money::ZERO);
    }
    match array.data_type() {
        DataType::Decimal128(_, scale) if (0..=money::SCALE as i8).contains(scale) => {
            let value = array.as_primitive::<Decimal128Type>().value(i);
            let factor = 10i128.pow(money::SCALE - *scale as u32);
            value
                .checked_mul(factor)
                .and_then(Money::from_units)
                .ok_or_else(|| anyhow!("`total_cost` {value} does not fit DECIMAL(38,18)"))
        }
        DataType::Float64 => float_money(array.as_primitive::<Float64Type>().value(i)),
        _ => Err(unexpected("total_cost", array)),
    }
}

/// A double as the shortest decimal that reads back as it (what was written
/// from an exact amount with `output.money = "float64"`), or rounded to 18
/// places when that decimal is longer.
fn float_money(value: f64) -> anyhow::Result<Money> {
    if !value.is_finite() {
        bail!("`total_cost` is {value}");
    }
    Money::parse(&value.to_string())
        .or_else(|_| Money::parse(&format!("{value:.18}")))
        .with_context(|| format!("`total_cost` {value} is not an amount"))
}

fn model_label(model: Option<&str>) -> &str {
    model.filter(|m| !m.is_empty()).unwrap_or(UNKNOWN_MODEL)
}

fn read_csv(path: &Path, report: &mut Report) -> anyhow::Result<()> {
    let mut reader = csv::Reader::from_path(path)?;
    let headers = reader.headers()?.clone();
    let mut at = [0; COLUMNS.len()];
    for (slot, name) in at.iter_mut().zip(COLUMNS) {
        *slot = headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("no `{name}` column in the header"))?;
    }
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record)? {
        let line = csv_line(&record, &at)
            .with_context(|| format!("line {}", record.position().map_or(0, |p| p.line())))?;
        report.add(line)?;
    }
    Ok(())
}

/// A CSV row; `at` holds the positions of [`COLUMNS`]. Empty fields are null.
fn csv_line<'r>(
    record: &'r csv::StringRecord,
    at: &[usize; COLUMNS.len()],
) -> anyhow::Result<Line<'r>> {
    let [model, created_at, exported_at, cost, prompt, completion] = *at;
    let field = |i: usize| record.get(i).filter(|v| !v.is_empty());
    let day = match field(created_at).or(field(exported_at)) {
        Some(text) => csv_day(text)?,
        None => bail!("neither `created_at` nor `exported_at`"),
    };
    let tokens = |i: usize, name: &str| -> anyhow::Result<i64> {
        field(i).map_or(Ok(0), |text| {
            text.parse()
                .with_context(|| format!("`{name}` `{text}` is not an integer"))
        })
    };
    let total_cost = field(cost).map_or(Ok(Money::ZERO), Money::parse);
    let sums = Sums {
        rows: 1,
        total_cost: total_cost.context("`total_cost`")?,
        tokens_prompt: tokens(prompt, "tokens_prompt")?,
        tokens_completion: tokens(completion, "tokens_completion")?,
    };
    Ok(Line {
        model: model_label(field(model)),
        day,
        sums,
    })
}

/// The UTC day of an RFC 3339 timestamp.
fn csv_day(text: &str) -> anyhow::Result<NaiveDate> {
    let instant = chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("`{text}` is not an RFC 3339 timestamp"))?;
    Ok(instant.naive_utc().date())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_read_back_as_the_decimal_that_was_written() {
        for text in [
            "0.30000000000000004",
            "0.0000003",
            "1.2345678901234567",
            "0",
        ] {
            let written = Money::parse(text).unwrap().to_f64();
            assert_eq!(float_money(written).unwrap().to_string(), text);
        }
        assert_eq!(float_money(1e-30).unwrap(), Money::ZERO);
        assert!(float_money(f64::NAN).is_err());
    }

    #[test]
    fn csv_days_are_utc() {
        let day = |t| csv_day(t).unwrap().to_string();
        assert_eq!(day("2026-11-21T23:30:00.000001Z"), "2026-11-21");
        assert_eq!(day("2026-11-21T23:30:00-02:00"), "2026-11-22");
        assert!(csv_day("yesterday").is_err());
    }
}
