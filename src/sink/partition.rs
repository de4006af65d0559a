//! Routes rows of one table into `date=YYYY-MM-DD` partitions, one open file per
//! partition, rotating at `output.max_rows_per_file` rows or [`MAX_FILE_BYTES`]
//! and closing the least recently used file when too many are open, in bounded
//! memory. Every file goes through the ledger's commit protocol.

use std::collections::HashMap;

use chrono::NaiveDate;

use super::file::{DataFile, OpenFile, RowKey};
use super::{FileNamer, SinkError};
use crate::config::OutputSettings;
use crate::ledger::Ledger;
use crate::schema::{Row, Value};
use crate::timestamp::partition_date;

/// Open files at once; each holds up to a row group in memory.
const MAX_OPEN_FILES: usize = 8;
/// Estimated bytes all open files may hold in row groups not yet written;
/// past it the largest is written out early. A row group is cut on its own
/// at 4,096 rows or `ROW_GROUP_BYTES`.
const OPEN_BUFFER_BYTES: usize = 16 << 20;
/// A file rotates after this much row data (uncompressed, estimated for
/// Parquet), as it does at `output.max_rows_per_file` rows: content with
/// large prompts would otherwise make files of many gigabytes.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

pub struct PartitionedWriter<R: Row> {
    settings: OutputSettings,
    run_id: String,
    open: HashMap<NaiveDate, OpenFile>,
    /// Estimated bytes of the open files' unwritten row groups.
    buffered: usize,
    finished: Vec<DataFile>,
    uses: u64,
    _rows: std::marker::PhantomData<fn(R)>,
}

impl<R: Row> PartitionedWriter<R> {
    pub fn new(settings: OutputSettings, run_id: &str) -> Self {
        PartitionedWriter {
            settings,
            run_id: run_id.to_owned(),
            open: HashMap::new(),
            buffered: 0,
            finished: Vec::new(),
            uses: 0,
            _rows: Default::default(),
        }
    }

    /// Writes `row`, whose ID is number `seq` in the ledger.
    pub fn append(
        &mut self,
        row: &R,
        seq: i64,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        let key = RowKey::of(row, seq);
        let date = partition_date(key.partition_micros);
        self.uses += 1;
        if !self.open.contains_key(&date) {
            if self.open.len() >= MAX_OPEN_FILES {
                self.close_least_recent(ledger)?;
            }
            self.open_file(date, namer, ledger)?;
        }
        let cells = R::COLUMNS.iter().map(|column| (column.get)(row));
        self.write(date, key, cells, ledger)
    }

    fn close_least_recent(&mut self, ledger: &mut Ledger) -> Result<(), SinkError> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, f)| f.last_used)
            .map(|(date, _)| *date);
        match oldest {
            Some(date) => self.close(date, ledger),
            None => Ok(()),
        }
    }

    fn open_file(
        &mut self,
        date: NaiveDate,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        let file = OpenFile::create::<R>(&self.settings, &self.run_id, date, namer, ledger)?;
        self.open.insert(date, file);
        Ok(())
    }

    /// Writes a row into `date`'s open file, which rotates when full; keeps
    /// the open files' unwritten row groups within [`OPEN_BUFFER_BYTES`].
    fn write<'a>(
        &mut self,
        date: NaiveDate,
        key: RowKey,
        cells: impl IntoIterator<Item = Value<'a>>,
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        // Present: the callers open it first.
        let Some(file) = self.open.get_mut(&date) else {
            return Ok(());
        };
        let before = file.buffered_bytes();
        file.write(key, cells, ledger)?;
        file.last_used = self.uses;
        self.buffered = (self.buffered + file.buffered_bytes()).saturating_sub(before);
        if file.rows >= self.settings.max_rows_per_file || file.data_bytes() >= MAX_FILE_BYTES {
            return self.close(date, ledger);
        }
        if self.buffered > OPEN_BUFFER_BYTES {
            self.flush_largest()?;
        }
        Ok(())
    }

    /// Writes out the largest unwritten row group of the open files.
    fn flush_largest(&mut self) -> Result<(), SinkError> {
        let largest = self.open.values_mut().max_by_key(|f| f.buffered_bytes());
        if let Some(file) = largest {
            self.buffered -= file.buffered_bytes().min(self.buffered);
            file.flush_row_group()?;
        }
        Ok(())
    }

    /// Publishes and commits `date`'s open file.
    fn close(&mut self, date: NaiveDate, ledger: &mut Ledger) -> Result<(), SinkError> {
        let Some((file_id, file)) = self.publish(date, ledger)? else {
            return Ok(());
        };
        ledger.mark_committed(&[file_id])?;
        self.committed(file);
        Ok(())
    }

    /// Publishes `date`'s open file; the caller commits it.
    fn publish(
        &mut self,
        date: NaiveDate,
        ledger: &mut Ledger,
    ) -> Result<Option<(i64, DataFile)>, SinkError> {
        let Some(file) = self.open.remove(&date) else {
            return Ok(None);
        };
        self.buffered -= file.buffered_bytes().min(self.buffered);
        file.publish(ledger).map(Some)
    }

    fn committed(&mut self, file: DataFile) {
        tracing::info!(path = %file.file.path.display(), rows = file.rows, "file committed");
        self.finished.push(file);
    }

    /// Commits every open file, together, and returns all files committed,
    /// in order. Should one fail to publish, those before it stay staged:
    /// the run stops unfinished, and the next start commits them and lists
    /// them in the manifest it writes for this run.
    pub fn finish(mut self, ledger: &mut Ledger) -> Result<Vec<DataFile>, SinkError> {
        let mut dates: Vec<NaiveDate> = self.open.keys().copied().collect();
        dates.sort();
        let mut published = Vec::with_capacity(dates.len());
        for date in dates {
            published.extend(self.publish(date, ledger)?);
        }
        let file_ids: Vec<i64> = published.iter().map(|(id, _)| *id).collect();
        ledger.mark_committed(&file_ids)?;
        for (_, file) in published {
            self.committed(file);
        }
        Ok(std::mem::take(&mut self.finished))
    }

    /// Removes the temporary files of every open file (the run is failing);
    /// the ledger still lists them as open, and the next start settles them.
    pub fn abandon(mut self) {
        for (_, file) in self.open.drain() {
            file.abandon();
        }
    }
}
