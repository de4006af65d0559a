//! CSV data files: RFC 4180, one header row, UTF-8, RFC 3339 `Z` timestamps,
//! money as exact plain decimals, null as an empty field.

use csv::ByteRecord;

use super::SinkError;
use super::file::HashingWriter;
use crate::schema::{Row, Value};

pub struct CsvFile {
    writer: csv::Writer<HashingWriter>,
    record: ByteRecord,
    text: String,
}

impl CsvFile {
    pub fn try_new<R: Row>(out: HashingWriter) -> Result<CsvFile, SinkError> {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(out);
        writer
            .write_record(R::COLUMNS.iter().map(|c| c.name))
            .map_err(SinkError::Csv)?;
        Ok(CsvFile {
            writer,
            record: ByteRecord::new(),
            text: String::new(),
        })
    }

    pub fn append<R: Row>(&mut self, row: &R) -> Result<(), SinkError> {
        self.record.clear();
        for column in R::COLUMNS {
            self.text.clear();
            format_value(&mut self.text, (column.get)(row));
            self.record.push_field(self.text.as_bytes());
        }
        self.writer
            .write_byte_record(&self.record)
            .map_err(SinkError::Csv)
    }

    pub fn into_inner(self) -> Result<HashingWriter, SinkError> {
        self.writer
            .into_inner()
            .map_err(|e| SinkError::Csv(csv::Error::from(e.into_error())))
    }
}

/// Writes a value as CSV field text.
pub fn format_value(out: &mut String, value: Value<'_>) {
    use std::fmt::Write;
    // Writing into a String cannot fail.
    let _ = match value {
        Value::Null => Ok(()),
        Value::Text(s) => {
            out.push_str(s);
            Ok(())
        }
        Value::Timestamp(micros) => write!(out, "{}", format_timestamp(micros)),
        Value::Money(m) => write!(out, "{m}"),
        Value::Int(i) => write!(out, "{i}"),
        Value::Float(f) => write!(out, "{f}"),
        Value::Bool(b) => write!(out, "{b}"),
    };
}

/// RFC 3339 in UTC with microseconds: `2026-11-21T10:00:00.123456Z`.
pub fn format_timestamp(micros: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => String::new(),
    }
}
