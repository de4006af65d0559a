//! The output tables, defined once: column names, order, types and how each value
//! is read from a row. The Parquet and CSV sinks (and the warehouse DDL) are all
//! generated from these tables, so the formats cannot drift apart.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::money::{self, Money};

/// How money columns are typed in Parquet (`output.money`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum MoneyMode {
    /// `DECIMAL(38,18)`: exact.
    #[default]
    Decimal,
    /// `DOUBLE`: the nearest double, for tools without decimal support.
    Float64,
}

/// The logical type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    /// UTC instant, microsecond precision.
    Timestamp,
    Money,
    Int,
    Float,
    Bool,
    /// JSON document stored as text.
    Json,
}

/// One cell of a row, borrowed from the record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Text(&'a str),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    Money(Money),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Value::Null, Value::Text)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Value::Null, Value::Int)
    }
}

impl From<Option<f64>> for Value<'_> {
    fn from(v: Option<f64>) -> Self {
        v.map_or(Value::Null, Value::Float)
    }
}

impl From<Option<bool>> for Value<'_> {
    fn from(v: Option<bool>) -> Self {
        v.map_or(Value::Null, Value::Bool)
    }
}

impl From<Option<Money>> for Value<'_> {
    fn from(v: Option<Money>) -> Self {
        v.map_or(Value::Null, Value::Money)
    }
}

/// A column of a table whose rows are `R`.
pub struct Column<R: ?Sized> {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
    pub get: fn(&R) -> Value<'_>,
}

/// A record type that is written as one row of an output table.
pub trait Row: Send + 'static {
    /// The table's columns, in file order.
    const COLUMNS: &'static [Column<Self>];
    /// The table's directory under the output root (`generations`, `content`).
    const TABLE: &'static str;
    /// Columns whose values rarely repeat (IDs, JSON documents): Parquet writes
    /// them without a dictionary.
    const UNIQUE_COLUMNS: &'static [&'static str] = &[];
    /// Columns queries filter on: Parquet keeps min/max statistics per row
    /// group for these only (statistics on every column cost memory per row
    /// group while a file is open).
    const PRUNING_COLUMNS: &'static [&'static str] = &[];
    /// The rows hold sensitive text (prompts, completions): their files are
    /// created readable by the owner only (0600, directories 0700, on unix).
    const SENSITIVE: bool = false;
    /// Microseconds since the epoch that decide the `date=` partition.
    fn partition_micros(&self) -> i64;
    /// The generation's `created_at`, when the row carries it. The ledger keeps
    /// it, so content fetched by a later run is filed under the same day.
    fn created_micros(&self) -> Option<i64> {
        None
    }
}

/// The Arrow schema of a table; timestamps carry the `UTC` zone so Parquet
/// readers see `TIMESTAMP(MICROS, isAdjustedToUTC = true)`.
pub fn arrow_schema<R: Row>(money_mode: MoneyMode) -> SchemaRef {
    let fields: Vec<Field> = R::COLUMNS
        .iter()
        .map(|c| Field::new(c.name, arrow_type(c.ty, money_mode), c.nullable))
        .collect();
    Arc::new(Schema::new(fields))
}

pub fn arrow_type(ty: ColumnType, money_mode: MoneyMode) -> DataType {
    match ty {
        ColumnType::Text | ColumnType::Json => DataType::Utf8,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ColumnType::Money => match money_mode {
            MoneyMode::Decimal => DataType::Decimal128(money::PRECISION as u8, money::SCALE as i8),
            MoneyMode::Float64 => DataType::Float64,
        },
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
    }
}

/// The names of a table's columns, in order.
pub fn column_names<R: Row>() -> Vec<&'static str> {
    R::COLUMNS.iter().map(|c| c.name).collect()
}
