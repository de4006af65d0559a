//! CSV data files: RFC 4180, one header row, UTF-8, RFC 3339 `Z` timestamps,
//! money as exact plain decimals, null as an empty field.

use std::io::Write;

use super::SinkError;
use crate::atomic_file::HashingWriter;
use crate::schema::{Row, Value};
use crate::timestamp::format_timestamp;

/// Writes rows by hand rather than through `csv::Writer`, which cannot tell an
/// empty string from a null: here null is an empty field and an empty string
/// is `""`, the convention DuckDB, PostgreSQL and BigQuery load as such.
pub struct CsvFile {
    out: HashingWriter,
    line: Vec<u8>,
    text: String,
    /// Bytes written so far, the header included.
    written: u64,
}

impl CsvFile {
    pub fn try_new<R: Row>(out: HashingWriter) -> Result<CsvFile, SinkError> {
        let mut file = CsvFile {
            out,
            line: Vec::with_capacity(2048),
            text: String::new(),
            written: 0,
        };
        for (i, column) in R::COLUMNS.iter().enumerate() {
            file.field(i, Some(column.name));
        }
        file.end_line()?;
        Ok(file)
    }

    pub fn append<R: Row>(&mut self, row: &R) -> Result<(), SinkError> {
        self.append_cells(R::COLUMNS.iter().map(|column| (column.get)(row)))
    }

    /// Appends one row given as its cells, in column order.
    pub fn append_cells<'a>(
        &mut self,
        cells: impl IntoIterator<Item = Value<'a>>,
    ) -> Result<(), SinkError> {
        let mut text = std::mem::take(&mut self.text);
        for (i, value) in cells.into_iter().enumerate() {
            text.clear();
            format_value(&mut text, value);
            self.field(i, (value != Value::Null).then_some(text.as_str()));
        }
        self.text = text;
        self.end_line()
    }

    /// Appends one field, quoted when RFC 4180 requires it or when it is empty.
    fn field(&mut self, index: usize, value: Option<&str>) {
        if index > 0 {
            self.line.push(b',');
        }
        let Some(value) = value else { return };
        let quote = value.is_empty()
            || value
                .bytes()
                .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
        if !quote {
            self.line.extend_from_slice(value.as_bytes());
            return;
        }
        self.line.push(b'"');
        for &b in value.as_bytes() {
            if b == b'"' {
                self.line.push(b'"');
            }
            self.line.push(b);
        }
        self.line.push(b'"');
    }

    /// Bytes written so far.
    pub fn written_bytes(&self) -> u64 {
        self.written
    }

    fn end_line(&mut self) -> Result<(), SinkError> {
        self.line.extend_from_slice(b"\r\n");
        self.written += self.line.len() as u64;
        let result = self.out.write_all(&self.line);
        self.line.clear();
        result.map_err(|e| SinkError::io("write", self.out.path(), e))
    }

    pub fn into_inner(self) -> Result<HashingWriter, SinkError> {
        Ok(self.out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, ColumnType};

    struct Pair(Option<&'static str>, Option<&'static str>);

    impl Row for Pair {
        const COLUMNS: &'static [Column<Self>] = &[
            Column {
                name: "a",
                ty: ColumnType::Text,
                nullable: true,
                get: |r| r.0.into(),
            },
            Column {
                name: "b",
                ty: ColumnType::Text,
                nullable: true,
                get: |r| r.1.into(),
            },
        ];
        const TABLE: &'static str = "pairs";
        fn partition_micros(&self) -> i64 {
            0
        }
    }

    #[test]
    fn quotes_what_rfc_4180_needs_and_keeps_empty_apart_from_null() {
        let dir = tempfile::tempdir().unwrap();
        let (pending, out) = super::super::PendingFile::create(dir.path().join("t.csv")).unwrap();
        let mut file = CsvFile::try_new::<Pair>(out).unwrap();
        for row in [
            Pair(Some(""), None),
            Pair(Some("a,b"), Some("say \"hi\"\nthere")),
            Pair(Some("plain"), Some("é")),
        ] {
            file.append(&row).unwrap();
        }
        let done = pending.finish(file.into_inner().unwrap()).unwrap();
        let text = std::fs::read_to_string(&done.path).unwrap();
        assert_eq!(
            text,
            "a,b\r\n\"\",\r\n\"a,b\",\"say \"\"hi\"\"\nthere\"\r\nplain,é\r\n"
        );
        let mut reader = csv::Reader::from_path(&done.path).unwrap();
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        assert_eq!(rows[1], ["a,b", "say \"hi\"\nthere"]);
    }
}
