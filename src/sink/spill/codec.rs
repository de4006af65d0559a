//! The spill's row format: a row's key, then each cell as a tag and its bytes
//! (text length-prefixed). Only the process that wrote it reads it back, so it
//! carries no version; reading still checks every length and tag.

use super::super::SinkError;
use super::super::file::RowKey;
use crate::money::Money;
use crate::schema::{Row, Value};

const NULL: u8 = 0;
const TEXT: u8 = 1;
const TIMESTAMP: u8 = 2;
const MONEY: u8 = 3;
const INT: u8 = 4;
const FLOAT: u8 = 5;
const FALSE: u8 = 6;
const TRUE: u8 = 7;

/// Appends `row` with its key to `out`.
pub(super) fn encode<R: Row>(out: &mut Vec<u8>, key: RowKey, row: &R) {
    out.extend_from_slice(&key.seq.to_le_bytes());
    out.extend_from_slice(&key.partition_micros.to_le_bytes());
    encode_cell(out, key.created.map_or(Value::Null, Value::Timestamp));
    for column in R::COLUMNS {
        encode_cell(out, (column.get)(row));
    }
}

fn encode_cell(out: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Null => out.push(NULL),
        Value::Text(s) => {
            out.push(TEXT);
            let mut len = s.len();
            while len >= 0x80 {
                out.push(len as u8 | 0x80);
                len >>= 7;
            }
            out.push(len as u8);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Timestamp(t) => {
            out.push(TIMESTAMP);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Value::Money(m) => {
            out.push(MONEY);
            out.extend_from_slice(&m.units().to_le_bytes());
        }
        Value::Int(i) => {
            out.push(INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Bool(b) => out.push(if b { TRUE } else { FALSE }),
    }
}

/// Rows read back from one part of a date's spill, one at a time; the cells
/// borrow the part's bytes.
pub(in crate::sink) struct SpilledRows<'a> {
    bytes: &'a [u8],
    at: usize,
    columns: usize,
    cells: Vec<Value<'a>>,
}

impl<'a> SpilledRows<'a> {
    /// Rows of a table with `columns` columns.
    pub fn new(bytes: &'a [u8], columns: usize) -> SpilledRows<'a> {
        SpilledRows {
            bytes,
            at: 0,
            columns,
            cells: Vec::with_capacity(columns),
        }
    }

    /// The next row's key, its cells then in [`SpilledRows::cells`]; `None`
    /// after the last row.
    pub fn next_row(&mut self) -> Result<Option<RowKey>, SinkError> {
        if self.at == self.bytes.len() {
            return Ok(None);
        }
        self.read_row()
            .map(Some)
            .ok_or(SinkError::SpillMalformed { at: self.at })
    }

    /// The cells of the row [`SpilledRows::next_row`] read last.
    pub fn cells(&self) -> &[Value<'a>] {
        &self.cells
    }

    fn read_row(&mut self) -> Option<RowKey> {
        let seq = i64::from_le_bytes(self.array()?);
        let partition_micros = i64::from_le_bytes(self.array()?);
        let created = match self.cell()? {
            Value::Null => None,
            Value::Timestamp(t) => Some(t),
            _ => return None,
        };
        self.cells.clear();
        for _ in 0..self.columns {
            let cell = self.cell()?;
            self.cells.push(cell);
        }
        Some(RowKey {
            seq,
            created,
            partition_micros,
        })
    }

    fn cell(&mut self) -> Option<Value<'a>> {
        let [tag] = self.array()?;
        Some(match tag {
            NULL => Value::Null,
            TEXT => {
                let len = self.len()?;
                Value::Text(std::str::from_utf8(self.take(len)?).ok()?)
            }
            TIMESTAMP => Value::Timestamp(i64::from_le_bytes(self.array()?)),
            MONEY => Value::Money(Money::from_units(i128::from_le_bytes(self.array()?))?),
            INT => Value::Int(i64::from_le_bytes(self.array()?)),
            FLOAT => Value::Float(f64::from_bits(u64::from_le_bytes(self.array()?))),
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            _ => return None,
        })
    }

    fn len(&mut self) -> Option<usize> {
        let mut len = 0usize;
        for shift in (0..usize::BITS).step_by(7) {
            let [byte] = self.array()?;
            len |= usize::from(byte & 0x7f).checked_shl(shift)?;
            if byte < 0x80 {
                return Some(len);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(bytes)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Content, Generation};

    fn round_trip<R: Row>(rows: &[(RowKey, R)]) -> Vec<(RowKey, Vec<String>)> {
        let mut bytes = Vec::new();
        for (key, row) in rows {
            encode(&mut bytes, *key, row);
        }
        let mut read = SpilledRows::new(&bytes, R::COLUMNS.len());
        let mut back = Vec::new();
        while let Some(key) = read.next_row().unwrap() {
            back.push((key, read.cells().iter().map(|c| format!("{c:?}")).collect()));
        }
        back
    }

    fn cells<R: Row>(row: &R) -> Vec<String> {
        R::COLUMNS
            .iter()
            .map(|c| format!("{:?}", (c.get)(row)))
            .collect()
    }

    #[test]
    fn every_cell_type_reads_back_as_written() {
        let full = Generation {
            id: "gen-1-é\"x".into(),
            created_at: Some(-5),
            model: Some("a".repeat(300)),
            total_cost: Some(Money::parse("0.30000000000000004").unwrap()),
            usage: Some(Money::from_units(-i128::from(u64::MAX)).unwrap()),
            tokens_prompt: Some(i64::MIN),
            latency_ms: Some(f64::NAN),
            generation_time_ms: Some(-0.0),
            streamed: Some(true),
            cancelled: Some(false),
            extra: Some(String::new()),
            ..Generation::default()
        };
        let key = |seq, created| RowKey {
            seq,
            created,
            partition_micros: seq.wrapping_mul(7),
        };
        let rows = [
            (key(1, Some(-5)), full.clone()),
            (key(i64::MAX, None), Generation::default()),
        ];
        let back = round_trip(&rows);
        assert_eq!(back.len(), 2);
        for ((key, row), (key_back, cells_back)) in rows.iter().zip(&back) {
            assert_eq!(key, key_back);
            assert_eq!(&cells(row), cells_back);
        }
        let prompt = Content {
            input_prompt: Some("x".repeat(200_000)),
            ..Content::default()
        };
        let back = round_trip(&[(key(3, None), prompt.clone())]);
        assert_eq!(back[0].1, cells(&prompt));
    }

    #[test]
    fn cut_or_garbled_bytes_are_an_error_not_a_panic() {
        let mut bytes = Vec::new();
        let key = RowKey {
            seq: 1,
            created: None,
            partition_micros: 0,
        };
        encode(&mut bytes, key, &Generation::default());
        for cut in 1..bytes.len() {
            let mut read = SpilledRows::new(&bytes[..cut], Generation::COLUMNS.len());
            assert!(read.next_row().is_err(), "cut at {cut}");
        }
        bytes[16] = 99;
        let mut read = SpilledRows::new(&bytes, Generation::COLUMNS.len());
        assert!(read.next_row().is_err());
    }
}
