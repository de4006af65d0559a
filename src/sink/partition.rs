//! Routes rows of one table into `date=YYYY-MM-DD` partitions, one open file per
//! partition, rotating at `output.max_rows_per_file` and closing the least
//! recently used file when too many are open.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::NaiveDate;

use super::csv::CsvFile;
use super::file::{FinishedFile, HashingWriter, PendingFile};
use super::parquet::ParquetFile;
use super::{FileNamer, SinkError};
use crate::config::{Format, OutputSettings};
use crate::schema::Row;

/// Open files at once; each holds up to a row group in memory.
const MAX_OPEN_FILES: usize = 8;

/// A data file that has been closed and renamed into place.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataFile {
    #[serde(flatten)]
    pub file: FinishedFile,
    pub rows: u64,
    pub min_partition_micros: i64,
    pub max_partition_micros: i64,
}

enum Encoder {
    Parquet(Box<ParquetFile>),
    Csv(CsvFile),
}

struct OpenFile {
    pending: PendingFile,
    encoder: Encoder,
    rows: u64,
    min: i64,
    max: i64,
    last_used: u64,
}

pub struct PartitionedWriter<R: Row> {
    settings: OutputSettings,
    open: HashMap<NaiveDate, OpenFile>,
    finished: Vec<DataFile>,
    uses: u64,
    _rows: std::marker::PhantomData<fn(R)>,
}

impl<R: Row> PartitionedWriter<R> {
    pub fn new(settings: OutputSettings) -> Self {
        PartitionedWriter {
            settings,
            open: HashMap::new(),
            finished: Vec::new(),
            uses: 0,
            _rows: Default::default(),
        }
    }

    pub fn append(&mut self, row: &R, namer: &mut FileNamer) -> Result<(), SinkError> {
        let micros = row.partition_micros();
        let date = partition_date(micros);
        if !self.open.contains_key(&date) {
            if self.open.len() >= MAX_OPEN_FILES {
                self.close_least_recent()?;
            }
            let file = self.open_file(date, namer)?;
            self.open.insert(date, file);
        }
        self.uses += 1;
        let max_rows = self.settings.max_rows_per_file;
        // Present: inserted just above when missing.
        let Some(file) = self.open.get_mut(&date) else {
            return Ok(());
        };
        match &mut file.encoder {
            Encoder::Parquet(p) => p.append(row)?,
            Encoder::Csv(c) => c.append(row)?,
        }
        file.rows += 1;
        file.min = file.min.min(micros);
        file.max = file.max.max(micros);
        file.last_used = self.uses;
        if file.rows >= max_rows {
            self.close(date)?;
        }
        Ok(())
    }

    fn open_file(&self, date: NaiveDate, namer: &mut FileNamer) -> Result<OpenFile, SinkError> {
        let format = self.settings.format;
        let dir: PathBuf = self
            .settings
            .dir
            .join(R::TABLE)
            .join(format!("date={}", date.format("%Y-%m-%d")));
        let (pending, out) =
            PendingFile::create(dir.join(namer.next_data_name(format.extension())))?;
        let encoder = match self.encoder(out) {
            Ok(encoder) => encoder,
            Err(e) => {
                pending.abandon();
                return Err(e);
            }
        };
        Ok(OpenFile {
            pending,
            encoder,
            rows: 0,
            min: i64::MAX,
            max: i64::MIN,
            last_used: 0,
        })
    }

    fn encoder(&self, out: HashingWriter) -> Result<Encoder, SinkError> {
        Ok(match self.settings.format {
            Format::Parquet => Encoder::Parquet(Box::new(ParquetFile::try_new::<R>(
                out,
                self.settings.money,
                self.settings.compression,
            )?)),
            Format::Csv => Encoder::Csv(CsvFile::try_new::<R>(out)?),
        })
    }

    fn close_least_recent(&mut self) -> Result<(), SinkError> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, f)| f.last_used)
            .map(|(date, _)| *date);
        match oldest {
            Some(date) => self.close(date),
            None => Ok(()),
        }
    }

    fn close(&mut self, date: NaiveDate) -> Result<(), SinkError> {
        let Some(file) = self.open.remove(&date) else {
            return Ok(());
        };
        let out = match file.encoder {
            Encoder::Parquet(p) => p.into_inner(),
            Encoder::Csv(c) => c.into_inner(),
        };
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                file.pending.abandon();
                return Err(e);
            }
        };
        let finished = file.pending.finish(out)?;
        tracing::info!(path = %finished.path.display(), rows = file.rows, "file written");
        self.finished.push(DataFile {
            file: finished,
            rows: file.rows,
            min_partition_micros: file.min,
            max_partition_micros: file.max,
        });
        Ok(())
    }

    /// Closes every open file and returns all files written, in order.
    pub fn finish(mut self) -> Result<Vec<DataFile>, SinkError> {
        let mut dates: Vec<NaiveDate> = self.open.keys().copied().collect();
        dates.sort();
        for date in dates {
            self.close(date)?;
        }
        Ok(std::mem::take(&mut self.finished))
    }

    /// Removes the temporary files of every open file (the run is failing).
    pub fn abandon(mut self) {
        for (_, file) in self.open.drain() {
            file.pending.abandon();
        }
    }
}

/// The UTC day of an instant.
pub fn partition_date(micros: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_micros(micros).map_or(NaiveDate::MIN, |t| t.date_naive())
}
