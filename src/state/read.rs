//! Reading back what a committed file records of its IDs: a data file's
//! `id` and `created_at` columns (Parquet or CSV), a failures file's `id` and
//! `reason`.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, anyhow};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// An ID and its generation's `created_at` (microseconds), as a data file holds them.
pub type IdRow = (String, Option<i64>);

/// Every row's ID and `created_at`, in file order.
pub fn data_ids(path: &Path) -> anyhow::Result<Vec<IdRow>> {
    let read = if path.extension().is_some_and(|e| e == "csv") {
        csv_ids(path)
    } else {
        parquet_ids(path)
    };
    read.with_context(|| format!("failed to read the IDs of `{}`", path.display()))
}

fn parquet_ids(path: &Path) -> anyhow::Result<Vec<IdRow>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    let schema = builder.schema().clone();
    let id = schema
        .index_of("id")
        .map_err(|_| anyhow!("no `id` column"))?;
    let created = schema
        .index_of("created_at")
        .map_err(|_| anyhow!("no `created_at` column"))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [id, created]);
    let mut rows = Vec::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let ids = batch
            .column_by_name("id")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| anyhow!("`id` is not a string column"))?;
        let created = batch
            .column_by_name("created_at")
            .filter(|c| matches!(c.data_type(), DataType::Timestamp(TimeUnit::Microsecond, _)))
            .map(|c| c.as_primitive::<TimestampMicrosecondType>())
            .ok_or_else(|| anyhow!("`created_at` is not a timestamp column"))?;
        for i in 0..batch.num_rows() {
            if ids.is_null(i) {
                continue;
            }
            let at = (!created.is_null(i)).then(|| created.value(i));
            rows.push((ids.value(i).to_owned(), at));
        }
    }
    Ok(rows)
}

fn csv_ids(path: &Path) -> anyhow::Result<Vec<IdRow>> {
    let mut reader = csv::Reader::from_path(path)?;
    let headers = reader.headers()?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("no `{name}` column in the header"))
    };
    let (id, created) = (column("id")?, column("created_at")?);
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record?;
        let Some(value) = record.get(id).filter(|v| !v.is_empty()) else {
            continue;
        };
        let at = match record.get(created).filter(|v| !v.is_empty()) {
            Some(text) => Some(
                chrono::DateTime::parse_from_rfc3339(text)
                    .with_context(|| format!("`{text}` is not an RFC 3339 timestamp"))?
                    .timestamp_micros(),
            ),
            None => None,
        };
        rows.push((value.to_owned(), at));
    }
    Ok(rows)
}

/// A failures file's rows that name an ID: (id, reason).
pub fn failure_rows(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let read = || -> anyhow::Result<Vec<(String, String)>> {
        let mut reader = csv::Reader::from_path(path)?;
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record?;
            let (Some(id), Some(reason)) = (record.get(0), record.get(2)) else {
                continue;
            };
            if !id.is_empty() {
                rows.push((id.to_owned(), reason.to_owned()));
            }
        }
        Ok(rows)
    };
    read().with_context(|| format!("failed to read `{}`", path.display()))
}
