//! The end of a run whose rows spilled, on more than one thread: encoding
//! threads read dates' spilled rows back and encode each into its file, while
//! the sink's thread links the rows' IDs to the files in the ledger,
//! publishes the dates done and commits. Done on one thread, a cycling
//! input's last seconds (nine of ninety days' rows) took a quarter of its
//! run, with one of the two cores idle.
//!
//! The ledger stays on the sink's thread; an encoding thread hands back, in
//! order, each batch of a file's rows to link and then the file, so every
//! row is linked before its file is published. Should either side fail, the other
//! stops at its next hand-over; files not yet published are left as an
//! unfinished run leaves them (the next start settles them).

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use chrono::NaiveDate;

use super::{Batch, MAX_FILE_BYTES, PartitionedWriter};
use crate::ledger::Ledger;
use crate::schema::Row;
use crate::sink::file::{Links, OpenFile};
use crate::sink::spill::{SpillReader, Spilled, SpilledRows};
use crate::sink::{FileNamer, SinkError};

/// Threads encoding spilled rows, each a date at a time: one per core beside
/// the sink's thread, and at most two. Each costs a row group's encoder (a
/// zstd context per column, made anew per row group): measured on two cores
/// over a million IDs cycling through 90 days, a second encoder raised peak
/// RSS from 52-55 to 65-66 MiB for no gain in speed.
fn encoders() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores.saturating_sub(1).clamp(1, 2)
}

/// Dates queued for the encoding threads beyond those being encoded, so
/// that they go on while the sink's thread commits a batch of files (a
/// transaction over 128 K rows). With one waiting, the encoding thread was
/// measured off the CPU for a third of the end of a cycling run, in step
/// with the commits. A waiting date holds only its file (a new one holds no
/// rows yet).
const WAITING: usize = 6;

/// A date's file and its spilled rows, for an encoding thread.
struct Job {
    file: OpenFile,
    spilled: Spilled,
}

/// What an encoding thread hands back, in order for each file.
enum Handed {
    /// Rows written into a file (by its ledger number), to link before it
    /// is published.
    Link(i64, Links),
    /// A date's spilled rows are all in its file.
    Done(Box<OpenFile>),
    Failed(SinkError),
}

impl<R: Row> PartitionedWriter<R> {
    /// Whether the end may encode on other threads: no derived table is
    /// written beside, and no date's file would reach a rotation limit (the
    /// encoding threads cannot open the next file, which takes the ledger).
    pub(super) fn may_finish_in_parallel(&self) -> bool {
        self.companion.is_none()
            && self.spill.dates().all(|date| {
                let (rows, raw) = self.spill.size_of(date);
                let (open_rows, open_bytes) = self
                    .open
                    .get(&date)
                    .map_or((0, 0), |f| (f.rows, f.data_bytes()));
                // Spilled bytes are counted twice: the Parquet estimate of
                // the same rows may be larger than their spilled form.
                open_rows + rows <= self.settings.max_rows_per_file
                    && open_bytes + 2 * raw < MAX_FILE_BYTES
            })
    }

    /// Writes every date's spilled rows and publishes and commits every
    /// file, as [`PartitionedWriter::finish`] does, with the encoding on
    /// [`encoders`] other threads.
    pub(super) fn finish_in_parallel(
        &mut self,
        dates: impl IntoIterator<Item = NaiveDate>,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        let work: Vec<(NaiveDate, Option<Spilled>)> = dates
            .into_iter()
            .map(|date| (date, self.spill.take(date)))
            .collect();
        let encoders = encoders();
        // Dates sent to the encoding threads and not yet handed back: one
        // being encoded by each and [`WAITING`] more.
        let ahead = encoders + WAITING;
        let mut readers = Vec::with_capacity(encoders);
        for _ in 0..encoders {
            readers.push(self.spill.reader()?);
        }
        let (jobs, job_queue) = sync_channel::<Job>(ahead);
        let job_queue = Mutex::new(job_queue);
        let (handed_back, handed) = sync_channel::<Handed>(16);
        let columns = R::COLUMNS.len();
        std::thread::scope(|scope| {
            let mut threads = Vec::with_capacity(encoders);
            for reader in readers {
                let (queue, out) = (&job_queue, handed_back.clone());
                let spawned = std::thread::Builder::new()
                    .name("genledger-encode".into())
                    .spawn_scoped(scope, move || encode_jobs(reader, columns, queue, out));
                match spawned {
                    Ok(encoder) => threads.push(encoder),
                    Err(e) => {
                        // The encoders started end once the queue closes.
                        drop(jobs);
                        return Err(SinkError::io(
                            "start a thread to write",
                            &self.settings.dir,
                            e,
                        ));
                    }
                }
            }
            drop(handed_back);
            let result = self.hand_over(work.into_iter(), jobs, ahead, &handed, namer, ledger);
            drop(handed);
            // Every one joined (a scope panics over one that panicked unjoined).
            let joined: Vec<bool> = threads.into_iter().map(|e| e.join().is_ok()).collect();
            let joined = joined.iter().all(|&ok| ok);
            match (result, joined) {
                (Err(e), _) => Err(e),
                (Ok(()), true) => Ok(()),
                (Ok(()), false) => Err(encoder_gone(&self.settings.dir)),
            }
        })
    }

    /// The sink's side: sends each date with spilled rows to the encoding
    /// threads, `ahead` at most, and links, publishes and commits what it
    /// hands back; a date with an open file but nothing spilled is
    /// published on the way.
    fn hand_over(
        &mut self,
        mut work: impl Iterator<Item = (NaiveDate, Option<Spilled>)>,
        jobs: SyncSender<Job>,
        ahead: usize,
        handed: &Receiver<Handed>,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<(), SinkError> {
        let mut batch = Batch::default();
        let mut sent = 0;
        while sent < ahead && self.next_job(&mut work, &jobs, &mut batch, namer, ledger)? {
            sent += 1;
        }
        while sent > 0 {
            match handed.recv() {
                Ok(Handed::Link(file_id, rows)) => ledger.link(file_id, &rows)?,
                Ok(Handed::Done(file)) => {
                    // The next dates are encoded while this one is published.
                    sent -= 1;
                    if self.next_job(&mut work, &jobs, &mut batch, namer, ledger)? {
                        sent += 1;
                    }
                    let published = file.publish(ledger)?;
                    self.add_to(&mut batch, published, ledger)?;
                }
                Ok(Handed::Failed(e)) => return Err(e),
                Err(_) => return Err(encoder_gone(&self.settings.dir)),
            }
        }
        self.commit(batch.files, ledger)
    }

    /// Sends the next date that has spilled rows to the encoding threads, in
    /// its open file or a new one; false when none is left.
    fn next_job(
        &mut self,
        work: &mut impl Iterator<Item = (NaiveDate, Option<Spilled>)>,
        jobs: &SyncSender<Job>,
        batch: &mut Batch,
        namer: &mut FileNamer,
        ledger: &mut Ledger,
    ) -> Result<bool, SinkError> {
        for (date, spilled) in work {
            let Some(spilled) = spilled else {
                if let Some(published) = self.publish(date, ledger)? {
                    self.add_to(batch, published, ledger)?;
                }
                continue;
            };
            let file = match self.open.remove(&date) {
                Some(file) => {
                    self.buffered -= file.buffered_bytes().min(self.buffered);
                    file
                }
                None => OpenFile::create::<R>(&self.settings, &self.run_id, date, namer, ledger)?,
            };
            let job = Job { file, spilled };
            if let Err(refused) = jobs.send(job) {
                refused.0.file.abandon();
                return Err(encoder_gone(&self.settings.dir));
            }
            return Ok(true);
        }
        Ok(false)
    }
}

/// An encoding thread: each job's spilled rows into its file, handed back
/// with the rows to link. Stops when the sink stops sending or listening.
fn encode_jobs(
    mut spill: SpillReader,
    columns: usize,
    jobs: &Mutex<Receiver<Job>>,
    out: SyncSender<Handed>,
) {
    loop {
        // Poisoned only if another encoder panicked while taking a job.
        let next = match jobs.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else {
            return;
        };
        let handed = match encode(&mut spill, columns, job, &out) {
            Ok(Some(file)) => Handed::Done(Box::new(file)),
            Ok(None) => return,
            Err(e) => Handed::Failed(e),
        };
        let failed = matches!(handed, Handed::Failed(_));
        if out.send(handed).is_err() || failed {
            return;
        }
    }
}

/// Writes one date's spilled rows into its file; `None` if the sink is no
/// longer listening.
fn encode(
    spill: &mut SpillReader,
    columns: usize,
    job: Job,
    out: &SyncSender<Handed>,
) -> Result<Option<OpenFile>, SinkError> {
    let Job { mut file, spilled } = job;
    match write_rows(spill, columns, &mut file, &spilled, out) {
        // Its end is written here too: the last row group's encoding is
        // work the sink's thread need not do.
        Ok(true) => file.end().map(Some),
        Ok(false) => {
            file.abandon();
            Ok(None)
        }
        Err(e) => {
            file.abandon();
            Err(e)
        }
    }
}

/// Every row of `spilled` into `file`; false if the sink stopped listening.
fn write_rows(
    spill: &mut SpillReader,
    columns: usize,
    file: &mut OpenFile,
    spilled: &Spilled,
    out: &SyncSender<Handed>,
) -> Result<bool, SinkError> {
    for part in 0..spilled.parts() {
        let bytes = spill.read_part(spilled, part)?;
        let mut rows = SpilledRows::new(&bytes, columns);
        while let Some(key) = rows.next_row()? {
            if let Some(links) = file.encode(key, rows.cells().iter().copied())?
                && out.send(Handed::Link(file.id(), links)).is_err()
            {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn encoder_gone(dir: &std::path::Path) -> SinkError {
    SinkError::io(
        "write rows held back, an encoding thread having stopped, in",
        dir,
        std::io::Error::other("an encoding thread ended early"),
    )
}
