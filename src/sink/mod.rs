//! Output files: the partitioned data files of the `generations` table,
//! with content export on of the `content` table, with the `focus` table on
//! of that table (derived, file by file, from `generations`: `derive`); the failures file; and the
//! running totals the manifest reports. One task owns the [`Sink`]; nothing
//! else writes to the output directory.

mod csv;
mod derive;
mod file;
mod parquet;
mod partition;
mod spill;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

pub use self::csv::{CsvFile, format_value};
pub use self::parquet::{ParquetFile, ROW_GROUP_BYTES};
pub use derive::{Derive, FocusOf};
pub use file::DataFile;
pub use partition::{MAX_FILE_BYTES, PartitionedWriter, Written};

use crate::atomic_file::{FileError, FinishedFile, HashingWriter, PendingFile};
use crate::config::OutputSettings;
use crate::layout;
use crate::ledger::{Ledger, LedgerError};
use crate::money::Money;
use crate::record::{Content, FailureRow, Generation, IdStatus};
use crate::timestamp::format_timestamp;

/// Failures of the output: these stop the run (data is at risk). Each names
/// the file it failed on; a failed write is a [`FileError`] whatever wrote
/// it (the Parquet encoder, a CSV writer), so a full disk reads the same.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("failed to encode Parquet for `{}`", path.display())]
    Parquet {
        path: PathBuf,
        source: ::parquet::errors::ParquetError,
    },
    #[error("failed to build an Arrow batch for `{}`", path.display())]
    Arrow {
        path: PathBuf,
        source: arrow_schema::ArrowError,
    },
    #[error("failed to write CSV to `{}`: {problem}", path.display())]
    Csv { path: PathBuf, problem: String },
    #[error("money total overflowed 38 digits")]
    Overflow,
    /// Rows read back from the run's own spill file did not parse: a bug,
    /// or the disk changed the file under the run.
    #[error("rows held back in the spill file read back malformed (at byte {at} of a chunk)")]
    SpillMalformed { at: usize },
    #[error(transparent)]
    Ledger(#[from] Box<LedgerError>),
}

impl From<LedgerError> for SinkError {
    fn from(e: LedgerError) -> Self {
        SinkError::Ledger(Box::new(e))
    }
}

impl SinkError {
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> SinkError {
        SinkError::File(FileError::new(action, path, source))
    }

    /// A Parquet error while writing `path`. The encoder hands on its
    /// writer's `io::Error` wrapped (`External`, whose message repeats it):
    /// that one is unwrapped into a failed write of `path`.
    pub fn parquet(path: &Path, source: ::parquet::errors::ParquetError) -> SinkError {
        match source {
            ::parquet::errors::ParquetError::External(inner) => match inner.downcast::<io::Error>()
            {
                Ok(io) => SinkError::io("write", path, *io),
                Err(inner) => SinkError::Parquet {
                    path: path.to_owned(),
                    source: ::parquet::errors::ParquetError::External(inner),
                },
            },
            source => SinkError::Parquet {
                path: path.to_owned(),
                source,
            },
        }
    }

    /// A CSV writer's error while writing `path`; an I/O error is a failed
    /// write of `path`, without the CSV crate's wrapper repeating it.
    pub fn csv(path: &Path, source: ::csv::Error) -> SinkError {
        let problem = source.to_string();
        match source.into_kind() {
            ::csv::ErrorKind::Io(io) => SinkError::io("write", path, io),
            _ => SinkError::Csv {
                path: path.to_owned(),
                problem,
            },
        }
    }
}

/// Names files `part-<run_id>-<shard>-<seq>`, unique within a run.
pub struct FileNamer {
    run_id: String,
    shard: String,
    seq: u32,
}

impl FileNamer {
    pub fn new(run_id: &str, shard: &str) -> FileNamer {
        FileNamer {
            run_id: run_id.to_owned(),
            shard: shard.to_owned(),
            seq: 0,
        }
    }

    pub fn next_data_name(&mut self, extension: &str) -> String {
        self.seq += 1;
        layout::data_file_name(&self.run_id, &self.shard, self.seq, extension)
    }
}

/// Sums over the exported records, exact.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    pub records: u64,
    pub total_cost: Money,
    pub usage: Money,
    pub upstream_inference_cost: Money,
    pub cache_discount: Money,
    pub tokens_prompt: i64,
    pub tokens_completion: i64,
    pub min_created_at: Option<String>,
    pub max_created_at: Option<String>,
    /// Records and `total_cost` per model.
    pub by_model: BTreeMap<String, ModelTotals>,
    #[serde(skip)]
    created_range: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ModelTotals {
    pub records: u64,
    pub total_cost: Money,
}

impl Totals {
    fn add(&mut self, g: &Generation) -> Result<(), SinkError> {
        let add = |sum: &mut Money, v: Option<Money>| -> Result<(), SinkError> {
            *sum = sum
                .checked_add(v.unwrap_or(Money::ZERO))
                .ok_or(SinkError::Overflow)?;
            Ok(())
        };
        self.records += 1;
        add(&mut self.total_cost, g.total_cost)?;
        add(&mut self.usage, g.usage)?;
        add(&mut self.upstream_inference_cost, g.upstream_inference_cost)?;
        add(&mut self.cache_discount, g.cache_discount)?;
        self.tokens_prompt = self
            .tokens_prompt
            .saturating_add(g.tokens_prompt.unwrap_or(0));
        self.tokens_completion = self
            .tokens_completion
            .saturating_add(g.tokens_completion.unwrap_or(0));
        let model = g.model.as_deref().unwrap_or("(unknown)");
        let entry = match self.by_model.get_mut(model) {
            Some(entry) => entry,
            None => self.by_model.entry(model.to_owned()).or_default(),
        };
        entry.records += 1;
        add(&mut entry.total_cost, g.total_cost)?;
        if let Some(created) = g.created_at {
            let (lo, hi) = self.created_range.get_or_insert((created, created));
            *lo = (*lo).min(created);
            *hi = (*hi).max(created);
        }
        Ok(())
    }

    fn seal(&mut self) {
        if let Some((lo, hi)) = self.created_range {
            self.min_created_at = Some(format_timestamp(lo));
            self.max_created_at = Some(format_timestamp(hi));
        }
    }
}

/// What the sink wrote, once finished.
#[derive(Debug, Clone)]
pub struct SinkOutput {
    pub data_files: Vec<DataFile>,
    /// Files of the `content` table (empty with content export off).
    pub content_files: Vec<DataFile>,
    /// Files of the `focus` table, each paired with the `generations` file
    /// of the same name (empty with the table off).
    pub focus_files: Vec<DataFile>,
    pub failures_file: Option<FinishedFile>,
    pub failure_rows: u64,
    pub totals: Totals,
}

/// Failure rows recorded in the ledger in one transaction.
const RECORD_BATCH: usize = 512;

pub struct Sink {
    settings: OutputSettings,
    namer: FileNamer,
    ledger: Ledger,
    generations: PartitionedWriter<Generation>,
    content: PartitionedWriter<Content>,
    failures: Option<(PendingFile, ::csv::Writer<HashingWriter>)>,
    failure_rows: u64,
    unrecorded: Vec<(FailureRow, IdStatus)>,
    totals: Totals,
}

impl Sink {
    pub fn new(settings: &OutputSettings, run_id: &str, shard: &str, ledger: Ledger) -> Sink {
        Sink {
            settings: settings.clone(),
            namer: FileNamer::new(run_id, shard),
            ledger,
            generations: match &settings.focus {
                Some(account) => PartitionedWriter::new(settings.clone(), run_id)
                    .with_companion(Box::new(FocusOf(account.clone()))),
                None => PartitionedWriter::new(settings.clone(), run_id),
            },
            content: PartitionedWriter::new(settings.clone(), run_id),
            failures: None,
            failure_rows: 0,
            unrecorded: Vec::new(),
            totals: Totals::default(),
        }
    }

    /// Writes one generation's record; `seq` is its ID's number in the ledger.
    pub fn write(&mut self, record: &Generation, seq: i64) -> Result<(), SinkError> {
        self.generations
            .append(record, seq, &mut self.namer, &mut self.ledger)?;
        self.totals.add(record)
    }

    /// Writes one generation's stored content to the `content` table.
    pub fn write_content(&mut self, content: &Content, seq: i64) -> Result<(), SinkError> {
        self.content
            .append(content, seq, &mut self.namer, &mut self.ledger)
    }

    /// Writes a row of the failures report and records the ID's state
    /// (`Failed` or `Pending`) in the ledger: its metadata's, or for a content
    /// reason its content's.
    pub fn write_failure(&mut self, row: &FailureRow, status: IdStatus) -> Result<(), SinkError> {
        if self.failures.is_none() {
            let path =
                layout::failures_path(&self.settings.dir, &self.namer.run_id, &self.namer.shard);
            let (pending, out) = PendingFile::create(path)?;
            let mut writer = ::csv::WriterBuilder::new()
                .terminator(::csv::Terminator::CRLF)
                .from_writer(out);
            let header =
                writer.write_record(["id", "line", "reason", "http_status", "attempts", "message"]);
            if let Err(e) = header {
                let e = SinkError::csv(&pending.final_path, e);
                pending.abandon();
                return Err(e);
            }
            self.failures = Some((pending, writer));
        }
        let Some((pending, writer)) = self.failures.as_mut() else {
            return Ok(());
        };
        let line = row.line.map(|l| l.to_string()).unwrap_or_default();
        let status_text = row.http_status.map(|s| s.to_string()).unwrap_or_default();
        let attempts = row.attempts.to_string();
        writer
            .write_record([
                row.id.as_str(),
                &line,
                row.reason.as_str(),
                &status_text,
                &attempts,
                &row.message,
            ])
            .map_err(|e| SinkError::csv(&pending.final_path, e))?;
        self.failure_rows += 1;
        self.unrecorded.push((row.clone(), status));
        if self.unrecorded.len() >= RECORD_BATCH {
            self.record_failures()?;
        }
        Ok(())
    }

    fn record_failures(&mut self) -> Result<(), SinkError> {
        for status in [IdStatus::Failed, IdStatus::Pending] {
            for content in [false, true] {
                let rows: Vec<FailureRow> = self
                    .unrecorded
                    .iter()
                    .filter(|(r, s)| *s == status && r.reason.is_content() == content)
                    .map(|(r, _)| r.clone())
                    .collect();
                match (rows.is_empty(), content) {
                    (true, _) => {}
                    (false, false) => self.ledger.record(&rows, status)?,
                    (false, true) => self.ledger.record_content(&rows, status)?,
                }
            }
        }
        self.unrecorded.clear();
        Ok(())
    }

    /// Commits every file and hands back the ledger connection.
    pub fn finish(mut self) -> Result<(SinkOutput, Ledger), SinkError> {
        self.record_failures()?;
        let generations = self.generations.finish(&mut self.namer, &mut self.ledger)?;
        let content_files = self
            .content
            .finish(&mut self.namer, &mut self.ledger)?
            .files;
        let failures_file = match self.failures.take() {
            Some((pending, writer)) => match writer.into_inner() {
                Ok(out) => Some(pending.finish(out)?),
                Err(e) => {
                    let e = SinkError::io("write", &pending.final_path, e.into_error());
                    pending.abandon();
                    return Err(e);
                }
            },
            None => None,
        };
        self.totals.seal();
        let output = SinkOutput {
            data_files: generations.files,
            content_files,
            focus_files: generations.derived,
            failures_file,
            failure_rows: self.failure_rows,
            totals: self.totals,
        };
        Ok((output, self.ledger))
    }

    /// Drops every unfinished file (the run failed); committed files stay.
    pub fn abandon(mut self) {
        let _ = self.record_failures();
        self.generations.abandon();
        self.content.abandon();
        if let Some((pending, _)) = self.failures {
            pending.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "out/generations/date=2026-01-02/part-r-0-00001.parquet";

    /// The message as `main` prints it: the error and its sources.
    fn chain(error: SinkError) -> String {
        format!("{:#}", anyhow::Error::new(error))
    }

    #[test]
    fn a_full_disk_under_the_parquet_encoder_names_the_file_and_says_it_once() {
        // As the encoder hands it on: its writer's error, wrapped `External`.
        let full =
            ::parquet::errors::ParquetError::from(io::Error::from_raw_os_error(libc::ENOSPC));
        let message = chain(SinkError::parquet(Path::new(PATH), full));
        assert_eq!(
            message,
            format!(
                "failed to write `{PATH}`: no space left on the device holding it (os error 28)"
            )
        );
    }

    #[test]
    fn a_full_disk_under_a_csv_writer_names_the_file_and_says_it_once() {
        let path = Path::new("out/failures/part-r-0.csv");
        let quota = ::csv::Error::from(io::Error::from_raw_os_error(libc::EDQUOT));
        let message = chain(SinkError::csv(path, quota));
        assert_eq!(
            message,
            format!(
                "failed to write `out/failures/part-r-0.csv`: the disk quota on the device holding it is used up (os error {})",
                libc::EDQUOT
            )
        );
    }

    #[test]
    fn an_encoding_error_names_the_file() {
        let bad = ::parquet::errors::ParquetError::General("bad column".into());
        assert_eq!(
            chain(SinkError::parquet(Path::new(PATH), bad)),
            format!("failed to encode Parquet for `{PATH}`: Parquet error: bad column")
        );
    }
}
