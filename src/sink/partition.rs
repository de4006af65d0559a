//! Routes rows of one table into `date=YYYY-MM-DD` partitions, one open file per
//! partition, rotating at `output.max_rows_per_file` and closing the least
//! recently used file when too many are open. Every file goes through the
//! ledger's commit protocol.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::NaiveDate;

use super::csv::CsvFile;
use super::parquet::ParquetFile;
use super::{FileNamer, SinkError};
use crate::atomic_file::{FinishedFile, HashingWriter, PendingFile, create_private_dir};
use crate::config::{Format, OutputSettings};
use crate::layout;
use crate::ledger::{FileFacts, Ledger};
use crate::schema::Row;
use crate::timestamp::partition_date;

/// Open files at once; each holds up to a row group in memory.
const MAX_OPEN_FILES: usize = 8;
/// Written rows whose IDs are linked to their file in one ledger transaction.
const LINK_BATCH: usize = 4096;

/// A data file that has been committed.
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
    Csv(Box<CsvFile>),
}

struct OpenFile {
    file_id: i64,
    pending: PendingFile,
    encoder: Encoder,
    /// Ledger numbers of the IDs written but not yet linked to this file,
    /// with their generation's `created_at`.
    unlinked: Vec<(i64, Option<i64>)>,
    rows: u64,
    min: i64,
    max: i64,
    last_used: u64,
}

pub struct PartitionedWriter<R: Row> {
    settings: OutputSettings,
    run_id: String,
    open: HashMap<NaiveDate, OpenFile>,
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
        let micros = row.partition_micros();
        let date = partition_date(micros);
        if !self.open.contains_key(&date) {
            if self.open.len() >= MAX_OPEN_FILES {
                self.close_least_recent(ledger)?;
            }
            let file = self.open_file(date, namer, ledger)?;
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
        file.unlinked.push((seq, row.created_micros()));
        file.rows += 1;
        file.min = file.min.min(micros);
        file.max = file.max.max(micros);
        file.last_used = self.uses;
        if file.unlinked.len() >= LINK_BATCH {
            ledger.link(file.file_id, &file.unlinked)?;
            file.unlinked.clear();
        }
        if file.rows >= max_rows {
            self.close(date, ledger)?;
        }
        Ok(())
    }

    fn open_file(
        &self,
        date: NaiveDate,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<OpenFile, SinkError> {
        let table_dir = self.settings.dir.join(R::TABLE);
        let dir: PathBuf = layout::partition_dir(&table_dir, date);
        let path = dir.join(namer.next_data_name(self.settings.format.extension()));
        let (pending, out) = if R::SENSITIVE {
            create_private_dir(&table_dir)?;
            PendingFile::create_private(path)?
        } else {
            PendingFile::create(path)?
        };
        let opened = ledger
            .open_file(&self.run_id, R::TABLE, &pending)
            .map_err(SinkError::from)
            .and_then(|file_id| Ok((file_id, self.encoder(out)?)));
        let (file_id, encoder) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                pending.abandon();
                return Err(e);
            }
        };
        Ok(OpenFile {
            file_id,
            pending,
            encoder,
            unlinked: Vec::new(),
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
            Format::Csv => Encoder::Csv(Box::new(CsvFile::try_new::<R>(out)?)),
        })
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

    fn close(&mut self, date: NaiveDate, ledger: &mut Ledger) -> Result<(), SinkError> {
        let Some((file_id, file)) = self.publish(date, ledger)? else {
            return Ok(());
        };
        ledger.mark_committed(&[file_id])?;
        self.committed(file);
        Ok(())
    }

    /// Links the file's last rows, then syncs, stages and publishes it; the
    /// caller commits it.
    fn publish(
        &mut self,
        date: NaiveDate,
        ledger: &mut Ledger,
    ) -> Result<Option<(i64, DataFile)>, SinkError> {
        let Some(file) = self.open.remove(&date) else {
            return Ok(None);
        };
        let out = match file.encoder {
            Encoder::Parquet(p) => p.into_inner(),
            Encoder::Csv(c) => c.into_inner(),
        };
        let linked = out.and_then(|out| Ok((ledger.link(file.file_id, &file.unlinked)?, out)));
        let out = match linked {
            Ok(((), out)) => out,
            Err(e) => {
                file.pending.abandon();
                return Err(e);
            }
        };
        let facts = FileFacts {
            rows: file.rows,
            min_created_at: file.min,
            max_created_at: file.max,
        };
        let finished = ledger.publish_file(file.file_id, file.pending, out, &facts)?;
        let data_file = DataFile {
            file: finished,
            rows: file.rows,
            min_partition_micros: file.min,
            max_partition_micros: file.max,
        };
        Ok(Some((file.file_id, data_file)))
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
            file.pending.abandon();
        }
    }
}
