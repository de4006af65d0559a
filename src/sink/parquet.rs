//! Parquet data files: rows are appended to Arrow builders and written in
//! row groups cut by rows and by bytes; zstd by default, microsecond UTC
//! timestamps, `DECIMAL(38,18)` money.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::SinkError;
use crate::atomic_file::HashingWriter;
use crate::config::Compression;
use crate::money;
use crate::schema::{ColumnType, MoneyMode, Row, Value, arrow_schema};

/// Rows per row group. A file's rows wait in Arrow builders until a whole row
/// group is there; it is then encoded and flushed at once. The encoder (one
/// zstd context per column) exists only during that flush, so an open file
/// costs only its buffered rows, which keeps several open partitions cheap.
/// 2,048 rather than 4,096: the end of a run that spilled encodes two files
/// at once, and with 4,096 its peak RSS went past 64 MiB.
const ROW_GROUP_ROWS: usize = 2 * 1024;
/// Bytes per row group, as [`cell_bytes`] estimates them: a row group is held
/// whole in memory twice while it is written (the builders, then its encoded
/// pages), so rows of 200 KB prompts cut it after 20 rows, not 2,048.
/// Metadata rows (under 1 KB) reach [`ROW_GROUP_ROWS`] first.
pub const ROW_GROUP_BYTES: usize = 4 << 20;
/// Uncompressed bytes a column buffers before it cuts a page (the default 1 MiB
/// times 46 columns would be 46 MiB a file).
const DATA_PAGE_BYTES: usize = 64 * 1024;
/// A column's dictionary size before it falls back to plain encoding.
const DICTIONARY_PAGE_BYTES: usize = 32 * 1024;

pub struct ParquetFile {
    writer: ArrowWriter<HashingWriter>,
    /// The file's final path, which every error names.
    path: PathBuf,
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    buffered: usize,
    /// Estimated bytes of the buffered rows.
    buffered_bytes: usize,
    /// Estimated bytes of every row appended, flushed or not.
    appended_bytes: u64,
}

impl ParquetFile {
    pub fn try_new<R: Row>(
        out: HashingWriter,
        money: MoneyMode,
        compression: Compression,
    ) -> Result<ParquetFile, SinkError> {
        let schema = arrow_schema::<R>(money);
        let path = out.path().to_owned();
        let failed = |e| SinkError::parquet(&path, e);
        let codec = match compression {
            // Level 1 gave the same file sizes as level 3 on these rows, with
            // less CPU and smaller per-column contexts.
            Compression::Zstd => Codec::ZSTD(ZstdLevel::try_new(1).map_err(failed)?),
            Compression::Snappy => Codec::SNAPPY,
            Compression::None => Codec::UNCOMPRESSED,
        };
        let mut props = WriterProperties::builder()
            .set_compression(codec)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_data_page_size_limit(DATA_PAGE_BYTES)
            .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
            // Statistics are kept in memory, per row group and column, until
            // the file closes (measured: ~45 MB over a million rows), so only
            // the columns queries prune on get them.
            .set_statistics_enabled(EnabledStatistics::None)
            // The offset index (page locations, per column and row group) is
            // also held until the file closes; with row groups this small a
            // column chunk is mostly one page, so it would save readers little.
            .set_offset_index_disabled(true)
            .set_created_by(concat!("genledger ", env!("CARGO_PKG_VERSION")).into());
        for column in R::PRUNING_COLUMNS {
            props = props
                .set_column_statistics_enabled(ColumnPath::from(*column), EnabledStatistics::Chunk);
        }
        for column in R::UNIQUE_COLUMNS {
            // A dictionary of values that never repeat costs memory and CPU for nothing.
            props = props.set_column_dictionary_enabled(ColumnPath::from(*column), false);
        }
        let props = props.build();
        let writer = ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(failed)?;
        let builders = R::COLUMNS
            .iter()
            .map(|c| ColumnBuilder::new(c.ty, money))
            .collect();
        Ok(ParquetFile {
            writer,
            path,
            schema,
            builders,
            buffered: 0,
            buffered_bytes: 0,
            appended_bytes: 0,
        })
    }

    pub fn append<R: Row>(&mut self, row: &R) -> Result<(), SinkError> {
        self.append_cells(R::COLUMNS.iter().map(|column| (column.get)(row)))
    }

    /// Appends one row given as its cells, in column order (one per column).
    pub fn append_cells<'a>(
        &mut self,
        cells: impl IntoIterator<Item = Value<'a>>,
    ) -> Result<(), SinkError> {
        let mut bytes = 0;
        for (builder, value) in self.builders.iter_mut().zip(cells) {
            bytes += cell_bytes(value);
            builder.append(value);
        }
        self.buffered += 1;
        self.buffered_bytes += bytes;
        self.appended_bytes += bytes as u64;
        if self.buffered >= ROW_GROUP_ROWS || self.buffered_bytes >= ROW_GROUP_BYTES {
            self.flush_row_group()?;
        }
        Ok(())
    }

    /// Estimated bytes of the rows waiting for their row group.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Estimated bytes of every row appended so far.
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes
    }

    /// Writes the buffered rows as a row group now (also before it is full:
    /// the partitions' memory budget asks for it).
    pub fn flush_row_group(&mut self) -> Result<(), SinkError> {
        if self.buffered == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|source| {
            SinkError::Arrow {
                path: self.path.clone(),
                source,
            }
        })?;
        self.buffered = 0;
        self.buffered_bytes = 0;
        self.writer
            .write(&batch)
            .and_then(|()| self.writer.flush())
            .map_err(|e| SinkError::parquet(&self.path, e))
    }

    pub fn into_inner(mut self) -> Result<HashingWriter, SinkError> {
        self.flush_row_group()?;
        let path = self.path;
        self.writer
            .into_inner()
            .map_err(|e| SinkError::parquet(&path, e))
    }
}

/// What a cell costs in an Arrow builder, roughly: its bytes, plus an offset
/// for text.
fn cell_bytes(value: Value<'_>) -> usize {
    match value {
        Value::Text(s) => s.len() + 4,
        Value::Money(_) => 16,
        Value::Bool(_) => 1,
        Value::Null | Value::Timestamp(_) | Value::Int(_) | Value::Float(_) => 8,
    }
}

enum ColumnBuilder {
    Text(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Decimal(Decimal128Builder),
    Float(Float64Builder),
    Int(Int64Builder),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    fn new(ty: ColumnType, money_mode: MoneyMode) -> ColumnBuilder {
        match (ty, money_mode) {
            (ColumnType::Text | ColumnType::Json, _) => ColumnBuilder::Text(StringBuilder::new()),
            (ColumnType::Timestamp, _) => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            (ColumnType::Money, MoneyMode::Decimal) => ColumnBuilder::Decimal(
                Decimal128Builder::new()
                    .with_precision_and_scale(money::PRECISION as u8, money::SCALE as i8)
                    // 38 and 18 are within Decimal128's limits; the fallback is never taken.
                    .unwrap_or_else(|_| Decimal128Builder::new()),
            ),
            (ColumnType::Money | ColumnType::Float, _) => {
                ColumnBuilder::Float(Float64Builder::new())
            }
            (ColumnType::Int, _) => ColumnBuilder::Int(Int64Builder::new()),
            (ColumnType::Bool, _) => ColumnBuilder::Bool(BooleanBuilder::new()),
        }
    }

    /// Appends `value`; a value of another type than the column (which the
    /// column table rules out) is written as null rather than panicking.
    fn append(&mut self, value: Value<'_>) {
        match (self, value) {
            (ColumnBuilder::Text(b), Value::Text(s)) => b.append_value(s),
            (ColumnBuilder::Timestamp(b), Value::Timestamp(t)) => b.append_value(t),
            (ColumnBuilder::Decimal(b), Value::Money(m)) => b.append_value(m.units()),
            (ColumnBuilder::Float(b), Value::Money(m)) => b.append_value(m.to_f64()),
            (ColumnBuilder::Float(b), Value::Float(f)) => b.append_value(f),
            (ColumnBuilder::Int(b), Value::Int(i)) => b.append_value(i),
            (ColumnBuilder::Bool(b), Value::Bool(v)) => b.append_value(v),
            (builder, _) => builder.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Decimal(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
        }
    }
}
