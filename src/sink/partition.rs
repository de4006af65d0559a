//! Routes rows of one table into `date=YYYY-MM-DD` partitions so that a run
//! writes at most two files per partition (plus rotation) however its rows
//! are ordered, in bounded memory. Every file goes through the ledger's commit
//! protocol.
//!
//! Up to [`MAX_OPEN_FILES`] partitions have an open file. A row for another
//! date takes the slot of the least recently used file only if that file has
//! gone cold (no row for [`COLD_ROWS`] rows): time-ordered input moves from day
//! to day this way and never spills. Otherwise, or when its date was already
//! closed to make room once, the row goes to the [`Spill`], and at the end of
//! the run each date's spilled rows are written into its open file or into
//! one new file. So a date gets its first file, at most one more from the
//! spill, and files cut by rotation at `output.max_rows_per_file` rows or
//! [`MAX_FILE_BYTES`].

mod finish;

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;

use super::derive::Companion;
use super::file::{DataFile, OpenFile, Published, RowKey};
use super::spill::{Spill, SpillReader, SpilledRows};
use super::{FileNamer, SinkError};
use crate::config::OutputSettings;
use crate::ledger::Ledger;
use crate::schema::{Row, Value};
use crate::timestamp::partition_date;

/// Open files at once; each holds up to a row group in memory. Four, not
/// eight: time-ordered input needs two at a day's turn, and over a million
/// IDs cycling through 90 days, eight raised peak RSS by 3-6 MiB for no gain
/// in speed.
const MAX_OPEN_FILES: usize = 4;
/// Rows (of this table) since an open file's last row after which it may be
/// closed to make room for another date.
const COLD_ROWS: u64 = 16 * 1024;
/// Estimated bytes all open files may hold in row groups not yet written;
/// past it the largest is written out early. A row group is cut on its own
/// at 2,048 rows or `ROW_GROUP_BYTES`.
const OPEN_BUFFER_BYTES: usize = 4 << 20;
/// A file rotates after this much row data (uncompressed, estimated for
/// Parquet), as it does at `output.max_rows_per_file` rows: content with
/// large prompts would otherwise make files of many gigabytes.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Rows of the files committed together at the end of a run.
const COMMIT_ROWS: u64 = 128 * 1024;

/// The files a writer committed: its table's, and its derived table's.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<DataFile>,
    pub derived: Vec<DataFile>,
}

/// Published files not yet committed, and their rows.
#[derive(Default)]
struct Batch {
    files: Vec<Published>,
    rows: u64,
}

pub struct PartitionedWriter<R: Row> {
    settings: OutputSettings,
    run_id: String,
    open: HashMap<NaiveDate, OpenFile>,
    /// Dates whose file was closed to make room: their later rows spill, so
    /// that such a date gets at most one more file.
    evicted: HashSet<NaiveDate>,
    spill: Spill,
    /// Estimated bytes of the open files' unwritten row groups.
    buffered: usize,
    finished: Vec<DataFile>,
    /// The derived table written beside this one, if any, and its files.
    companion: Option<Box<dyn Companion>>,
    derived: Vec<DataFile>,
    uses: u64,
    /// [`COLD_ROWS`]; smaller in unit tests.
    cold_rows: u64,
    _rows: std::marker::PhantomData<fn(R)>,
}

impl<R: Row> PartitionedWriter<R> {
    pub fn new(settings: OutputSettings, run_id: &str) -> Self {
        PartitionedWriter {
            spill: Spill::new(&settings.dir),
            settings,
            run_id: run_id.to_owned(),
            open: HashMap::new(),
            evicted: HashSet::new(),
            buffered: 0,
            finished: Vec::new(),
            companion: None,
            derived: Vec::new(),
            uses: 0,
            cold_rows: COLD_ROWS,
            _rows: Default::default(),
        }
    }

    /// Also writes a table derived from this one, in files paired with its.
    pub(super) fn with_companion(mut self, companion: Box<dyn Companion>) -> Self {
        self.companion = Some(companion);
        self
    }

    /// Writes `row`, whose ID is number `seq` in the ledger, or spills it.
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
        if !self.open.contains_key(&date) && !self.make_room(date, namer, ledger)? {
            return self.spill.push(date, key, row);
        }
        let cells = R::COLUMNS.iter().map(|column| (column.get)(row));
        if self.companion.is_none() {
            return self.write(date, key, cells, None, ledger);
        }
        let cells: Vec<Value<'_>> = cells.collect();
        self.write(date, key, cells.iter().copied(), Some(&cells), ledger)
    }

    /// Opens a file for `date` if it may have one now, closing a cold file
    /// to make room; false if the row must spill instead.
    fn make_room(
        &mut self,
        date: NaiveDate,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<bool, SinkError> {
        if self.evicted.contains(&date) {
            return Ok(false);
        }
        if self.open.len() >= MAX_OPEN_FILES {
            let coldest = self.open.iter().min_by_key(|(_, f)| f.last_used);
            let Some((&cold, file)) = coldest else {
                return Ok(false);
            };
            if self.uses - file.last_used < self.cold_rows {
                return Ok(false);
            }
            self.close(cold, ledger)?;
            self.evicted.insert(cold);
        }
        self.open_file(date, namer, ledger)?;
        Ok(true)
    }

    fn open_file(
        &mut self,
        date: NaiveDate,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        let mut file = OpenFile::create::<R>(&self.settings, &self.run_id, date, namer, ledger)?;
        if let Some(companion) = &self.companion {
            match companion.open(&self.settings, &self.run_id, date, &file, ledger) {
                Ok(paired) => file.companion = Some(Box::new(paired)),
                Err(e) => {
                    file.abandon();
                    return Err(e);
                }
            }
        }
        self.open.insert(date, file);
        Ok(())
    }

    /// Writes a row into `date`'s open file, which rotates when full; keeps
    /// the open files' unwritten row groups within [`OPEN_BUFFER_BYTES`].
    /// With a derived table, `all` holds the same cells for its row.
    fn write<'a>(
        &mut self,
        date: NaiveDate,
        key: RowKey,
        cells: impl IntoIterator<Item = Value<'a>>,
        all: Option<&[Value<'a>]>,
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        // Present: the callers open it first.
        let Some(file) = self.open.get_mut(&date) else {
            return Ok(());
        };
        let before = file.buffered_bytes();
        file.write(key, cells, ledger)?;
        if let (Some(companion), Some(paired), Some(all)) =
            (&self.companion, file.companion.as_deref_mut(), all)
        {
            companion.write(paired, key, all, ledger)?;
        }
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
        let Some(published) = self.publish(date, ledger)? else {
            return Ok(());
        };
        self.commit(vec![published], ledger)
    }

    /// Publishes `date`'s open file; the caller commits it.
    fn publish(
        &mut self,
        date: NaiveDate,
        ledger: &mut Ledger,
    ) -> Result<Option<Published>, SinkError> {
        let Some(file) = self.open.remove(&date) else {
            return Ok(None);
        };
        self.buffered -= file.buffered_bytes().min(self.buffered);
        file.publish(ledger).map(Some)
    }

    fn committed(&mut self, published: Published) {
        let file = published.file;
        tracing::info!(path = %file.file.path.display(), rows = file.rows, "file committed");
        self.finished.push(file);
        if let Some((_, derived)) = published.companion {
            tracing::info!(path = %derived.file.path.display(), rows = derived.rows, "file committed");
            self.derived.push(derived);
        }
    }

    /// Writes `date`'s spilled rows, read back through `reader`, into its
    /// open file, or a new one.
    fn write_spilled(
        &mut self,
        date: NaiveDate,
        reader: &mut SpillReader,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        let Some(spilled) = self.spill.take(date) else {
            return Ok(());
        };
        for part in 0..spilled.parts() {
            let bytes = reader.read_part(&spilled, part)?;
            let mut rows = SpilledRows::new(&bytes, R::COLUMNS.len());
            while let Some(key) = rows.next_row()? {
                if !self.open.contains_key(&date) {
                    self.open_file(date, namer, ledger)?;
                }
                let cells = rows.cells();
                self.write(date, key, cells.iter().copied(), Some(cells), ledger)?;
            }
        }
        Ok(())
    }

    /// Writes every date's spilled rows and commits every file, in groups of
    /// about [`COMMIT_ROWS`] rows, and returns all files committed, in order.
    /// Should one fail to publish, those published before it and not yet
    /// committed stay staged: the run stops unfinished, and the next start
    /// commits them and lists them in the manifest it writes for this run.
    pub fn finish(
        mut self,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<Written, SinkError> {
        if self.spill.rows() > 0 {
            tracing::info!(
                table = R::TABLE,
                rows = self.spill.rows(),
                spill_file_bytes = self.spill.file_bytes(),
                "writing rows held back for partitions without an open file"
            );
        }
        let dates: BTreeSet<NaiveDate> = self
            .open
            .keys()
            .copied()
            .chain(self.spill.dates())
            .collect();
        if self.spill.rows() > 0 && self.may_finish_in_parallel() {
            self.finish_in_parallel(dates, namer, ledger)?;
        } else {
            self.finish_in_order(dates, namer, ledger)?;
        }
        Ok(Written {
            files: std::mem::take(&mut self.finished),
            derived: std::mem::take(&mut self.derived),
        })
    }

    /// [`PartitionedWriter::finish`]'s dates on this thread, one at a time,
    /// so that only its file buffers rows.
    fn finish_in_order(
        &mut self,
        dates: BTreeSet<NaiveDate>,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        let mut reader = self.spill.reader()?;
        let mut batch = Batch::default();
        for date in dates {
            self.write_spilled(date, &mut reader, namer, ledger)?;
            if let Some(published) = self.publish(date, ledger)? {
                self.add_to(&mut batch, published, ledger)?;
            }
        }
        self.commit(batch.files, ledger)
    }

    /// Adds a published file to the batch, committing the batch once it
    /// holds [`COMMIT_ROWS`] rows.
    fn add_to(
        &mut self,
        batch: &mut Batch,
        published: Published,
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        batch.rows += published.file.rows;
        batch.files.push(published);
        if batch.rows >= COMMIT_ROWS {
            batch.rows = 0;
            self.commit(std::mem::take(&mut batch.files), ledger)?;
        }
        Ok(())
    }

    /// Commits published files (each with its derived file) together.
    fn commit(&mut self, published: Vec<Published>, ledger: &mut Ledger) -> Result<(), SinkError> {
        let file_ids: Vec<i64> = published.iter().flat_map(Published::file_ids).collect();
        ledger.mark_committed(&file_ids)?;
        for file in published {
            self.committed(file);
        }
        Ok(())
    }

    /// Removes the temporary files of every open file (the run is failing);
    /// the ledger still lists them as open, and the next start settles them.
    /// Spilled rows go with the spill file; their IDs stay pending.
    pub fn abandon(mut self) {
        for (_, file) in self.open.drain() {
            file.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{Compression, Format};
    use crate::schema::{Column, ColumnType, MoneyMode};

    const DAY: i64 = 86_400_000_000;

    /// A row of a small table: its ID's number, its day, and padding.
    struct Dated(i64, i64, String);

    impl Row for Dated {
        const COLUMNS: &'static [Column<Self>] = &[
            Column {
                name: "seq",
                ty: ColumnType::Int,
                nullable: false,
                get: |r| Value::Int(r.0),
            },
            Column {
                name: "day",
                ty: ColumnType::Timestamp,
                nullable: false,
                get: |r| Value::Timestamp(r.1),
            },
            Column {
                name: "pad",
                ty: ColumnType::Text,
                nullable: false,
                get: |r| Value::Text(&r.2),
            },
        ];
        const TABLE: &'static str = "dated";
        fn partition_micros(&self) -> i64 {
            self.1
        }
    }

    /// What [`write`] saw: files per day, rows spilled, bytes in the spill
    /// file, and every file's rows.
    struct Written {
        per_day: BTreeMap<String, usize>,
        spilled: u64,
        spill_file_bytes: u64,
        rows: Vec<String>,
    }

    /// Writes rows of the given days (one per entry, numbered in order, with
    /// `pad` bytes of padding each).
    fn write(days: &[i64], cold_rows: u64, pad: usize) -> Written {
        write_rotating(days, cold_rows, pad, 1_000_000)
    }

    /// [`write`] with files rotating at `max_rows` rows.
    fn write_rotating(days: &[i64], cold_rows: u64, pad: usize, max_rows: u64) -> Written {
        let dir = tempfile::tempdir().unwrap();
        let settings = OutputSettings {
            dir: dir.path().to_owned(),
            remote: None,
            format: Format::Csv,
            max_rows_per_file: max_rows,
            money: MoneyMode::Decimal,
            compression: Compression::Zstd,
            focus: None,
        };
        let mut ledger = Ledger::open(&dir.path().join("l.db"), dir.path()).unwrap();
        let mut namer = FileNamer::new("r", "0");
        let mut writer = PartitionedWriter::<Dated>::new(settings, "r");
        writer.cold_rows = cold_rows;
        for (seq, day) in days.iter().enumerate() {
            let row = Dated(seq as i64, day * DAY + 1, "p".repeat(pad));
            writer
                .append(&row, seq as i64, &mut namer, &mut ledger)
                .unwrap();
        }
        let (spilled, spill_file_bytes) = (writer.spill.rows(), writer.spill.file_bytes());
        let files = writer.finish(&mut namer, &mut ledger).unwrap().files;
        let mut per_day = BTreeMap::new();
        let mut rows = Vec::new();
        for file in files {
            let day = file.file.path.parent().unwrap().file_name().unwrap();
            *per_day
                .entry(day.to_string_lossy().into_owned())
                .or_default() += 1;
            let text = std::fs::read_to_string(&file.file.path).unwrap();
            let mut reader = ::csv::Reader::from_reader(text.as_bytes());
            let lines: Vec<String> = reader
                .records()
                .map(|r| {
                    let r = r.unwrap();
                    assert_eq!(r[2].len(), pad);
                    format!("{},{}", &r[0], &r[1])
                })
                .collect();
            assert_eq!(lines.len() as u64, file.rows);
            rows.extend(lines);
        }
        Written {
            per_day,
            spilled,
            spill_file_bytes,
            rows,
        }
    }

    /// Every row is in exactly one file, with its day.
    fn check_rows(days: &[i64], mut rows: Vec<String>) {
        let mut want: Vec<String> = days
            .iter()
            .enumerate()
            .map(|(seq, day)| {
                let at = crate::timestamp::format_timestamp(day * DAY + 1);
                format!("{seq},{at}")
            })
            .collect();
        want.sort();
        rows.sort();
        assert_eq!(rows, want);
    }

    #[test]
    fn time_ordered_days_take_turns_and_never_spill() {
        let days: Vec<i64> = (0..30).flat_map(|d| [d; 40]).collect();
        let w = write(&days, 100, 10);
        assert_eq!(w.spilled, 0);
        assert_eq!(w.per_day.len(), 30);
        assert!(w.per_day.values().all(|&n| n == 1), "{:?}", w.per_day);
        check_rows(&days, w.rows);
    }

    #[test]
    fn cycling_days_spill_and_end_with_one_file_each() {
        let days: Vec<i64> = (0..3_000).map(|i| i % 30).collect();
        // Rows of 3 KB: the spill writes chunks to its file, beyond its
        // in-memory budget, and reads them back.
        let w = write(&days, 100, 3_000);
        let closed = 30 - MAX_OPEN_FILES as u64;
        assert_eq!(w.spilled, closed * 100, "the days without an open file");
        assert!(w.spill_file_bytes > 0, "the spill file was used");
        assert_eq!(w.per_day.len(), 30);
        assert!(w.per_day.values().all(|&n| n == 1), "{:?}", w.per_day);
        check_rows(&days, w.rows);
    }

    #[test]
    fn a_day_closed_to_make_room_gets_one_more_file_at_most() {
        // Time-ordered twice over, as a merge of two services' logs is:
        // the second pass finds every day closed.
        let pass: Vec<i64> = (0..20).flat_map(|d| [d; 30]).collect();
        let days: Vec<i64> = pass.iter().chain(&pass).copied().collect();
        let w = write(&days, 50, 10);
        assert!(w.spilled > 0);
        assert_eq!(w.per_day.len(), 20);
        assert!(w.per_day.values().all(|&n| n <= 2), "{:?}", w.per_day);
        assert!(w.per_day.values().any(|&n| n == 2));
        check_rows(&days, w.rows);
    }

    #[test]
    fn spilled_days_that_must_rotate_are_written_on_one_thread_and_rotate() {
        let days: Vec<i64> = (0..1_200).map(|i| i % 12).collect();
        let w = write_rotating(&days, 100, 10, 40);
        assert!(w.spilled > 0);
        // 100 rows a day, at most 40 a file: three files each.
        assert_eq!(w.per_day.len(), 12);
        assert!(w.per_day.values().all(|&n| n == 3), "{:?}", w.per_day);
        check_rows(&days, w.rows);
    }
}
