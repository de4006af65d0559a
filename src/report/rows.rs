//! One `generations` row as a [`Line`]: from a Parquet batch (the columns
//! [`COLUMNS`] projected) or a CSV record. Money is read exactly.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanArray, PrimitiveArray, RecordBatch, StringArray,
    new_null_array,
};
use arrow_schema::{DataType, TimeUnit};
use chrono::NaiveDate;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{Line, Sums, UNKNOWN_MODEL};
use crate::money::{self, Money};
use crate::timestamp::partition_date;

/// The columns a line is read from, in this order.
const COLUMNS: [&str; 16] = [
    "model",
    "created_at",
    "exported_at",
    "total_cost",
    "tokens_prompt",
    "tokens_completion",
    "provider_name",
    "app_id",
    "external_user",
    "workspace_id",
    "api_type",
    "is_byok",
    "upstream_inference_cost",
    "native_tokens_prompt",
    "native_tokens_completion",
    "native_tokens_reasoning",
];

/// Columns an export of any genledger version has; the others may be
/// missing from a file written by hand, and read as null.
const REQUIRED: usize = 6;

/// Reads one Parquet file; true when its money is float64.
pub(super) fn read_parquet(
    path: &Path,
    each: &mut impl FnMut(Line<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<bool> {
    let file = File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let mut indices = Vec::with_capacity(COLUMNS.len());
    for (i, name) in COLUMNS.iter().enumerate() {
        match schema.index_of(name) {
            Ok(index) => indices.push(index),
            Err(_) if i >= REQUIRED => {}
            Err(_) => bail!("no `{name}` column"),
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let float = schema.field_with_name("total_cost")?.data_type() == &DataType::Float64;
    for batch in builder.with_projection(mask).build()? {
        read_batch(&batch?, each)?;
    }
    Ok(float)
}

/// A batch's columns by name; a missing optional column reads as nulls.
struct Batch<'a>(&'a RecordBatch);

impl Batch<'_> {
    fn column(&self, name: &str, ty: DataType) -> ArrayRef {
        match self.0.column_by_name(name) {
            Some(c) => c.clone(),
            None => new_null_array(&ty, self.0.num_rows()),
        }
    }
}

fn text<'a>(c: &'a ArrayRef, name: &str) -> anyhow::Result<&'a StringArray> {
    c.as_string_opt::<i32>()
        .ok_or_else(|| unexpected(name, c.as_ref()))
}

fn ints<'a>(c: &'a ArrayRef, name: &str) -> anyhow::Result<&'a PrimitiveArray<Int64Type>> {
    match c.data_type() {
        DataType::Int64 => Ok(c.as_primitive()),
        _ => Err(unexpected(name, c.as_ref())),
    }
}

fn times<'a>(
    c: &'a ArrayRef,
    name: &str,
) -> anyhow::Result<&'a PrimitiveArray<TimestampMicrosecondType>> {
    match c.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(c.as_primitive()),
        _ => Err(unexpected(name, c.as_ref())),
    }
}

fn flags<'a>(c: &'a ArrayRef, name: &str) -> anyhow::Result<&'a BooleanArray> {
    c.as_boolean_opt()
        .ok_or_else(|| unexpected(name, c.as_ref()))
}

fn text_at(array: &StringArray, i: usize) -> Option<&str> {
    (!array.is_null(i))
        .then(|| array.value(i))
        .filter(|v| !v.is_empty())
}

// Long because it reads each of the line's sixteen columns by name.
fn read_batch(
    batch: &RecordBatch,
    each: &mut impl FnMut(Line<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let b = Batch(batch);
    let col = |name: &str, ty: DataType| b.column(name, ty);
    let utf8 = |name: &str| col(name, DataType::Utf8);
    let int64 = |name: &str| col(name, DataType::Int64);
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let owned = [
        utf8("model"),
        col("created_at", micros.clone()),
        col("exported_at", micros),
        int64("tokens_prompt"),
        int64("tokens_completion"),
        int64("native_tokens_prompt"),
        int64("native_tokens_completion"),
        int64("native_tokens_reasoning"),
        utf8("provider_name"),
        utf8("external_user"),
        utf8("workspace_id"),
        utf8("api_type"),
        int64("app_id"),
        col("is_byok", DataType::Boolean),
        col("total_cost", DataType::Float64),
        col("upstream_inference_cost", DataType::Float64),
    ];
    let model = text(&owned[0], "model")?;
    let created_at = times(&owned[1], "created_at")?;
    let exported_at = times(&owned[2], "exported_at")?;
    let prompt = ints(&owned[3], "tokens_prompt")?;
    let completion = ints(&owned[4], "tokens_completion")?;
    let native = [
        ints(&owned[5], "native_tokens_prompt")?,
        ints(&owned[6], "native_tokens_completion")?,
        ints(&owned[7], "native_tokens_reasoning")?,
    ];
    let texts = [
        text(&owned[8], "provider_name")?,
        text(&owned[9], "external_user")?,
        text(&owned[10], "workspace_id")?,
        text(&owned[11], "api_type")?,
    ];
    let app_id = ints(&owned[12], "app_id")?;
    let is_byok = flags(&owned[13], "is_byok")?;
    let cost = owned[14].as_ref();
    let upstream = owned[15].as_ref();
    for i in 0..batch.num_rows() {
        let micros = get(created_at, i)
            .or(get(exported_at, i))
            .ok_or_else(|| anyhow!("a row has neither `created_at` nor `exported_at`"))?;
        let byok = !is_byok.is_null(i) && is_byok.value(i);
        let (prompt, completion) = (get(prompt, i), get(completion, i));
        let line = Line {
            model: model_label(text_at(model, i)),
            day: partition_date(micros),
            sums: Sums {
                rows: 1,
                total_cost: money_at(cost, i, "total_cost")?,
                tokens_prompt: prompt.unwrap_or(0),
                tokens_completion: completion.unwrap_or(0),
            },
            provider: text_at(texts[0], i),
            app_id: get(app_id, i),
            external_user: text_at(texts[1], i),
            workspace_id: text_at(texts[2], i),
            api_type: text_at(texts[3], i),
            byok_upstream: if byok {
                money_at(upstream, i, "upstream_inference_cost")?
            } else {
                Money::ZERO
            },
            native_tokens: [
                get(native[0], i).or(prompt).unwrap_or(0),
                get(native[1], i).or(completion).unwrap_or(0),
                get(native[2], i).unwrap_or(0),
            ],
        };
        each(line)?;
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

/// The exact amount in row `i`; null counts as zero.
fn money_at(array: &dyn Array, i: usize, name: &str) -> anyhow::Result<Money> {
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
                .ok_or_else(|| anyhow!("`{name}` {value} does not fit DECIMAL(38,18)"))
        }
        DataType::Float64 => float_money(array.as_primitive::<Float64Type>().value(i)),
        _ => Err(unexpected(name, array)),
    }
}

/// A double as the shortest decimal that reads back as it (what was written
/// from an exact amount with `output.money = "float64"`), or rounded to 18
/// places when that decimal is longer.
pub(crate) fn float_money(value: f64) -> anyhow::Result<Money> {
    if !value.is_finite() {
        bail!("amount is {value}");
    }
    Money::parse(&value.to_string())
        .or_else(|_| Money::parse(&format!("{value:.18}")))
        .with_context(|| format!("{value} is not an amount"))
}

fn model_label(model: Option<&str>) -> &str {
    model.filter(|m| !m.is_empty()).unwrap_or(UNKNOWN_MODEL)
}

pub(super) fn read_csv(
    path: &Path,
    each: &mut impl FnMut(Line<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut reader = csv::Reader::from_path(path)?;
    let headers = reader.headers()?.clone();
    let mut at = [None; COLUMNS.len()];
    for (i, (slot, name)) in at.iter_mut().zip(COLUMNS).enumerate() {
        *slot = headers.iter().position(|h| h == name);
        if slot.is_none() && i < REQUIRED {
            bail!("no `{name}` column in the header");
        }
    }
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record)? {
        let line = csv_line(&record, &at)
            .with_context(|| format!("line {}", record.position().map_or(0, |p| p.line())))?;
        each(line)?;
    }
    Ok(())
}

/// A CSV row; `at` holds the positions of [`COLUMNS`] (none: a missing
/// optional column). Empty fields are null.
fn csv_line<'r>(
    record: &'r csv::StringRecord,
    at: &[Option<usize>; COLUMNS.len()],
) -> anyhow::Result<Line<'r>> {
    let field = |c: usize| at[c].and_then(|i| record.get(i)).filter(|v| !v.is_empty());
    let day = match field(1).or(field(2)) {
        Some(text) => csv_day(text)?,
        None => bail!("neither `created_at` nor `exported_at`"),
    };
    let int = |c: usize| -> anyhow::Result<Option<i64>> {
        field(c)
            .map(|text| {
                text.parse()
                    .with_context(|| format!("`{}` `{text}` is not an integer", COLUMNS[c]))
            })
            .transpose()
    };
    let money = |c: usize| -> anyhow::Result<Money> {
        let parsed = field(c).map_or(Ok(Money::ZERO), Money::parse);
        parsed.with_context(|| format!("`{}`", COLUMNS[c]))
    };
    let (prompt, completion) = (int(4)?, int(5)?);
    Ok(Line {
        model: model_label(field(0)),
        day,
        sums: Sums {
            rows: 1,
            total_cost: money(3)?,
            tokens_prompt: prompt.unwrap_or(0),
            tokens_completion: completion.unwrap_or(0),
        },
        provider: field(6),
        app_id: int(7)?,
        external_user: field(8),
        workspace_id: field(9),
        api_type: field(10),
        byok_upstream: if field(11) == Some("true") {
            money(12)?
        } else {
            Money::ZERO
        },
        native_tokens: [
            int(13)?.or(prompt).unwrap_or(0),
            int(14)?.or(completion).unwrap_or(0),
            int(15)?.unwrap_or(0),
        ],
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
