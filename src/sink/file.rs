//! One data file being written: its encoder, its record in the ledger, and the
//! rows written into it but not yet linked to it there.

use std::path::PathBuf;

use chrono::NaiveDate;

use super::csv::CsvFile;
use super::parquet::ParquetFile;
use super::{FileNamer, SinkError};
use crate::atomic_file::{FinishedFile, HashingWriter, PendingFile, create_private_dir};
use crate::config::{Format, OutputSettings};
use crate::layout;
use crate::ledger::{FileFacts, Ledger};
use crate::schema::{Row, Value};

/// Rows written into a file, to link to it in the ledger: each ID's number
/// and its generation's `created_at`.
pub(super) type Links = Vec<(i64, Option<i64>)>;

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

/// What the writers need of a row besides its cells: its ID's number in the
/// ledger, its generation's `created_at`, and the instant that partitions it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RowKey {
    pub seq: i64,
    pub created: Option<i64>,
    pub partition_micros: i64,
}

impl RowKey {
    pub fn of<R: Row>(row: &R, seq: i64) -> RowKey {
        RowKey {
            seq,
            created: row.created_micros(),
            partition_micros: row.partition_micros(),
        }
    }
}

enum Encoder {
    Parquet(Box<ParquetFile>),
    Csv(Box<CsvFile>),
    /// Every row encoded and the file's end written ([`OpenFile::end`]);
    /// the bytes wait to be sealed.
    Ended(HashingWriter, u64),
}

pub(super) struct OpenFile {
    file_id: i64,
    pending: PendingFile,
    encoder: Encoder,
    /// Ledger numbers of the IDs written but not yet linked to this file,
    /// with their generation's `created_at`.
    unlinked: Vec<(i64, Option<i64>)>,
    pub rows: u64,
    min: i64,
    max: i64,
    /// When it last took a row, counted in rows taken by its writer.
    pub last_used: u64,
    /// The derived table's file paired with this one (see `derive`).
    pub companion: Option<Box<OpenFile>>,
}

/// A file published (in place, staged in the ledger), with the derived
/// table's file paired with it: the caller commits both together.
pub(super) struct Published {
    pub file_id: i64,
    pub file: DataFile,
    pub companion: Option<(i64, DataFile)>,
}

impl Published {
    /// The ledger IDs to commit in one transaction.
    pub fn file_ids(&self) -> impl Iterator<Item = i64> + '_ {
        std::iter::once(self.file_id).chain(self.companion.as_ref().map(|c| c.0))
    }
}

impl OpenFile {
    /// Creates the file under its hidden name in `date`'s partition of table
    /// `R` and registers it with the ledger (protocol step 1).
    pub fn create<R: Row>(
        settings: &OutputSettings,
        run_id: &str,
        date: NaiveDate,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<OpenFile, SinkError> {
        let name = namer.next_data_name(settings.format.extension());
        OpenFile::create_named::<R>(settings, run_id, date, &name, ledger)
    }

    /// [`OpenFile::create`] under a given name: a derived table's file takes
    /// its source file's.
    pub fn create_named<R: Row>(
        settings: &OutputSettings,
        run_id: &str,
        date: NaiveDate,
        name: &str,
        ledger: &mut Ledger,
    ) -> Result<OpenFile, SinkError> {
        let table_dir = settings.dir.join(R::TABLE);
        let dir: PathBuf = layout::partition_dir(&table_dir, date);
        let path = dir.join(name);
        let (pending, out) = if R::SENSITIVE {
            create_private_dir(&table_dir)?;
            PendingFile::create_private(path)?
        } else {
            PendingFile::create(path)?
        };
        let opened = ledger
            .open_file(run_id, R::TABLE, &pending)
            .map_err(SinkError::from)
            .and_then(|file_id| Ok((file_id, encoder::<R>(settings, out)?)));
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
            companion: None,
        })
    }

    /// The file's name, which a derived table's file shares.
    pub fn name(&self) -> String {
        self.pending
            .final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Writes one row, given as its cells in column order.
    pub fn write<'a>(
        &mut self,
        key: RowKey,
        cells: impl IntoIterator<Item = Value<'a>>,
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        if let Some(rows) = self.encode(key, cells)? {
            ledger.link(self.file_id, &rows)?;
        }
        Ok(())
    }

    /// Encodes one row without the ledger; every [`LINK_BATCH`] rows,
    /// returns the rows the caller must link to [`OpenFile::id`] before the
    /// file is published.
    pub fn encode<'a>(
        &mut self,
        key: RowKey,
        cells: impl IntoIterator<Item = Value<'a>>,
    ) -> Result<Option<Links>, SinkError> {
        match &mut self.encoder {
            Encoder::Parquet(p) => p.append_cells(cells)?,
            Encoder::Csv(c) => c.append_cells(cells)?,
            Encoder::Ended(..) => {
                let e = std::io::Error::other("a row came after the file's end was written");
                return Err(SinkError::io("write", &self.pending.temp_path, e));
            }
        }
        self.unlinked.push((key.seq, key.created));
        self.rows += 1;
        self.min = self.min.min(key.partition_micros);
        self.max = self.max.max(key.partition_micros);
        Ok((self.unlinked.len() >= LINK_BATCH)
            .then(|| std::mem::replace(&mut self.unlinked, Vec::with_capacity(LINK_BATCH))))
    }

    /// The file's number in the ledger.
    pub fn id(&self) -> i64 {
        self.file_id
    }

    /// Estimated bytes held in memory for the next row group (none for CSV,
    /// which streams).
    pub fn buffered_bytes(&self) -> usize {
        let own = match &self.encoder {
            Encoder::Parquet(p) => p.buffered_bytes(),
            Encoder::Csv(_) | Encoder::Ended(..) => 0,
        };
        own + self.companion.as_ref().map_or(0, |c| c.buffered_bytes())
    }

    /// The row data written so far: estimated for Parquet, exact for CSV.
    pub fn data_bytes(&self) -> u64 {
        match &self.encoder {
            Encoder::Parquet(p) => p.appended_bytes(),
            Encoder::Csv(c) => c.written_bytes(),
            Encoder::Ended(_, bytes) => *bytes,
        }
    }

    /// Writes the buffered rows out as a row group now.
    pub fn flush_row_group(&mut self) -> Result<(), SinkError> {
        if let Some(companion) = &mut self.companion {
            companion.flush_row_group()?;
        }
        match &mut self.encoder {
            Encoder::Parquet(p) => p.flush_row_group(),
            Encoder::Csv(_) | Encoder::Ended(..) => Ok(()),
        }
    }

    /// Publishes the paired derived file first, then this one (protocol
    /// steps 2 and 3 for both); the caller commits both in one transaction.
    /// Should the process die between the two, start-up reconciliation
    /// finds one of the pair not staged and discards both.
    pub fn publish(mut self, ledger: &mut Ledger) -> Result<Published, SinkError> {
        let companion = match self.companion.take() {
            Some(c) => match c.publish_alone(ledger) {
                Ok(done) => Some(done),
                Err(e) => {
                    self.abandon();
                    return Err(e);
                }
            },
            None => None,
        };
        let (file_id, file) = self.publish_alone(ledger)?;
        Ok(Published {
            file_id,
            file,
            companion,
        })
    }

    /// Encodes what is still buffered and writes the file's end (Parquet's
    /// footer), which needs no ledger, so that publishing it later is only
    /// the sync, the rename and the ledger's steps. On an error the
    /// temporary file is removed.
    pub fn end(mut self) -> Result<OpenFile, SinkError> {
        let bytes = self.data_bytes();
        match self.encoder.into_writer() {
            Ok(out) => {
                self.encoder = Encoder::Ended(out, bytes);
                Ok(self)
            }
            Err(e) => {
                self.pending.abandon();
                Err(e)
            }
        }
    }

    /// Links the file's last rows, then syncs, stages and publishes it.
    fn publish_alone(self, ledger: &mut Ledger) -> Result<(i64, DataFile), SinkError> {
        let out = self.encoder.into_writer();
        let linked = out.and_then(|out| Ok((ledger.link(self.file_id, &self.unlinked)?, out)));
        let out = match linked {
            Ok(((), out)) => out,
            Err(e) => {
                self.pending.abandon();
                return Err(e);
            }
        };
        let facts = FileFacts {
            rows: self.rows,
            min_created_at: self.min,
            max_created_at: self.max,
        };
        let finished = ledger.publish_file(self.file_id, self.pending, out, &facts)?;
        let data_file = DataFile {
            file: finished,
            rows: self.rows,
            min_partition_micros: self.min,
            max_partition_micros: self.max,
        };
        Ok((self.file_id, data_file))
    }

    /// Removes the temporary file (the run is failing); the ledger still
    /// lists it as open, and the next start settles it.
    pub fn abandon(self) {
        if let Some(companion) = self.companion {
            companion.abandon();
        }
        self.pending.abandon();
    }
}

impl Encoder {
    /// The file's bytes with its end written (Parquet's footer).
    fn into_writer(self) -> Result<HashingWriter, SinkError> {
        match self {
            Encoder::Parquet(p) => p.into_inner(),
            Encoder::Csv(c) => c.into_inner(),
            Encoder::Ended(out, _) => Ok(out),
        }
    }
}

fn encoder<R: Row>(settings: &OutputSettings, out: HashingWriter) -> Result<Encoder, SinkError> {
    Ok(match settings.format {
        Format::Parquet => Encoder::Parquet(Box::new(ParquetFile::try_new::<R>(
            out,
            settings.money,
            settings.compression,
        )?)),
        Format::Csv => Encoder::Csv(Box::new(CsvFile::try_new::<R>(out)?)),
    })
}
