//! Reading generation IDs from queue files and stdin, one per line.
//!
//! [`line`] holds the pure per-line rule; [`IdSource`] streams lines from
//! each input through a bounded channel, so memory does not grow with the
//! input, asks the ledger which IDs are new, and adds what earlier runs left
//! pending. [`queue`] tracks how far the daemon's queue files were read;
//! [`stdin`] feeds the daemon's stdin to the ledger between ticks.

mod admit;
mod item;
mod line;
mod queue;
mod stdin;

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use admit::Admitted;
pub use item::{CHUNK, ItemSender, SourceCounts, SourceError, SourceItem};
pub use line::{LineKind, MAX_ID_BYTES, MAX_LINE_BYTES, parse_line};
use line::{classify, read_line_capped};
pub use queue::QueueFiles;
use queue::Segment;
pub use stdin::feed_stdin;

use crate::config::Input;
use crate::ledger::{Ledger, LedgerError, Leftover, QueueOffset};
use crate::shard::Shard;
use crate::timestamp::id_started_at;

/// IDs decided by the ledger in one transaction. New IDs land at random
/// places in the ledger's key index, and every page a transaction touches is
/// read and logged once, so a larger batch shares pages between more IDs: a
/// run of 1,000,000 new IDs wrote 2.5 GB at 16,384 per batch against 3.5 GB
/// at 8,192.
/// Each batched ID holds about 130 bytes until its batch is decided. Pages of
/// leftovers from earlier runs are read in the same size.
const ADMIT_BATCH: usize = 16_384;

/// A ledger query that hands out one page of leftovers: `(run_no, after, limit)`.
type TakePage = fn(&mut Ledger, i64, i64, usize) -> Result<Vec<Leftover>, LedgerError>;

/// Invalid lines read between ticks (the daemon's stdin), waiting for the next
/// run to record them.
pub type Carried = Arc<Mutex<VecDeque<SourceItem>>>;

/// How many invalid stdin lines wait for the next tick; later ones are only logged.
pub const CARRIED_MAX: usize = 10_000;

/// How a run reads its inputs.
#[derive(Default)]
pub struct ReadMode {
    /// Keep only this shard's IDs.
    pub shard: Shard,
    /// Daemon mode: read these queue files from their saved offsets, complete
    /// lines only, instead of reading the inputs to their end.
    pub queues: Option<Arc<Mutex<QueueFiles>>>,
    /// Invalid lines seen before this run, to record first.
    pub carried: Option<Carried>,
    /// Content export is on: IDs carry whether their content is due, and
    /// exported IDs with content due are sent after the leftovers.
    pub content: bool,
    /// Fetch IDs dated before the retention window too.
    pub include_old: bool,
}

/// Streams the IDs of every input, in order, asking the ledger which are new,
/// then the IDs earlier runs left pending. Memory stays flat: the ledger, not
/// a set in memory, remembers what was seen.
pub struct IdSource {
    inputs: Vec<Input>,
    ledger: Ledger,
    run_no: i64,
    mode: ReadMode,
    counts: SourceCounts,
    batch: Vec<(String, u64)>,
    /// Hashes of the IDs this run found already exported or failed, so a
    /// repeat counts as a duplicate, not as done twice. The ledger does not
    /// mark such IDs as seen (that would write a row per line of every
    /// rerun); a 64-bit hash only feeds the counts, never what is fetched.
    done_seen: HashSet<u64>,
}

/// A queue file being read: where the taken lines end.
struct Tail {
    at: QueueOffset,
    /// Take a last line that has no line ending (the file is rotated away).
    finished: bool,
}

impl IdSource {
    pub fn new(inputs: Vec<Input>, ledger: Ledger, run_no: i64, mode: ReadMode) -> IdSource {
        IdSource {
            inputs,
            ledger,
            run_no,
            mode,
            counts: SourceCounts::default(),
            batch: Vec::with_capacity(ADMIT_BATCH),
            done_seen: HashSet::new(),
        }
    }

    /// Reads every input to its end (or, in daemon mode, every queue file to
    /// its last complete line) on the calling (blocking) thread, sending items
    /// into `tx`. Stops early, without error, when the receiver is gone.
    pub fn run(mut self, tx: mpsc::Sender<Vec<SourceItem>>) -> Result<SourceCounts, SourceError> {
        let mut tx = ItemSender::new(tx);
        let result = self.read_all(&mut tx);
        tx.flush();
        result
    }

    fn read_all(&mut self, tx: &mut ItemSender) -> Result<SourceCounts, SourceError> {
        if let Some(carried) = self.mode.carried.clone() {
            loop {
                let item = carried.lock().map(|mut q| q.pop_front()).ok().flatten();
                let Some(item) = item else { break };
                self.counts.invalid += 1;
                if !tx.send(item) {
                    return Ok(self.counts);
                }
            }
        }
        if let Some(queues) = self.mode.queues.clone() {
            let mut queues = queues.lock().map_err(|_| SourceError::Poisoned)?;
            for index in 0..queues.len() {
                for segment in queues.segments(index, &self.ledger)? {
                    if !self.read_segment(segment, tx)? {
                        return Ok(self.counts);
                    }
                }
            }
            drop(queues);
            self.send_leftovers(tx)?;
            return Ok(self.counts);
        }
        for index in 0..self.inputs.len() {
            let input = self.inputs[index].clone();
            let reader: Box<dyn Read> = match &input {
                Input::Stdin => Box::new(io::stdin()),
                Input::File(path) => {
                    Box::new(File::open(path).map_err(|source| SourceError::Open {
                        path: path.display().to_string(),
                        source,
                    })?)
                }
            };
            let reader = BufReader::with_capacity(1 << 16, reader);
            if !self.read_lines(&input.name(), reader, None, tx)? {
                return Ok(self.counts);
            }
        }
        self.send_leftovers(tx)?;
        Ok(self.counts)
    }

    fn read_segment(&mut self, segment: Segment, tx: &mut ItemSender) -> Result<bool, SourceError> {
        let Segment {
            mut file,
            start,
            finished,
            name,
        } = segment;
        file.seek(SeekFrom::Start(start.offset))
            .map_err(|source| SourceError::Read {
                path: name.clone(),
                line: start.lines + 1,
                source,
            })?;
        let tail = Tail {
            at: start,
            finished,
        };
        let reader = BufReader::with_capacity(1 << 16, file);
        self.read_lines(&name, reader, Some(tail), tx)
    }

    /// Reads lines to the end of `reader`; with `tail`, only complete lines,
    /// saving the offset with each batch. Returns false when the receiver has
    /// gone away.
    fn read_lines(
        &mut self,
        name: &str,
        mut reader: impl BufRead,
        mut tail: Option<Tail>,
        tx: &mut ItemSender,
    ) -> Result<bool, SourceError> {
        let mut buf = Vec::with_capacity(128);
        let mut line_no = tail.as_ref().map_or(0, |t| t.at.lines);
        loop {
            buf.clear();
            line_no += 1;
            let (read, overlong, complete) =
                read_line_capped(&mut reader, &mut buf).map_err(|source| SourceError::Read {
                    path: name.to_owned(),
                    line: line_no,
                    source,
                })?;
            let partial = tail.as_ref().is_some_and(|t| !complete && !t.finished);
            if read == 0 || partial {
                // A partial last line waits for its line ending (next tick).
                return self.admit_batch(tx, tail.as_ref().map(|t| &t.at), true);
            }
            if let Some(tail) = &mut tail {
                tail.at.offset += read as u64;
                tail.at.lines = line_no;
            }
            self.counts.lines += 1;
            match classify(&buf, line_no, overlong) {
                LineKind::Skip => {}
                LineKind::Invalid(reason) => {
                    self.counts.invalid += 1;
                    let item = SourceItem::Invalid {
                        input: name.to_owned(),
                        line: line_no,
                        reason,
                    };
                    if !tx.send(item) {
                        return Ok(false);
                    }
                }
                LineKind::Id(id) if !self.mode.shard.owns(&id) => {
                    self.counts.other_shards += 1;
                }
                LineKind::Id(id) => {
                    self.batch.push((id, line_no));
                    if self.batch.len() >= ADMIT_BATCH
                        && !self.admit_batch(tx, tail.as_ref().map(|t| &t.at), false)?
                    {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Asks the ledger about the batched IDs and sends on those to fetch. A
    /// queue offset is saved in the same transaction; at the end of a file
    /// (`last`) it is saved even when no IDs are batched.
    fn admit_batch(
        &mut self,
        tx: &mut ItemSender,
        offset: Option<&QueueOffset>,
        last: bool,
    ) -> Result<bool, SourceError> {
        if self.batch.is_empty() {
            if let (Some(offset), true) = (offset, last) {
                self.ledger.save_queue_offset(offset)?;
            }
            return Ok(true);
        }
        let batch = std::mem::take(&mut self.batch);
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        let now = chrono::Utc::now().timestamp_micros();
        let started = std::time::Instant::now();
        let admissions = self.ledger.admit(&ids, self.run_no, now, offset)?;
        tracing::debug!(
            ids = ids.len(),
            ms = started.elapsed().as_millis() as u64,
            "admitted a batch"
        );
        let mut open = true;
        for ((id, line), admission) in batch.into_iter().zip(admissions) {
            let item = match self.count(&id, admission) {
                Admitted::Nothing => continue,
                Admitted::Fetch(seq, first_404_micros, content_due) => SourceItem::Id {
                    id,
                    seq,
                    line: Some(line),
                    first_404_micros,
                    content: self.mode.content && content_due,
                },
                // The ledger keeps no `created_at` for a settled ID: its
                // content is dated by the second its ID names.
                Admitted::ContentOnly(seq) => SourceItem::ContentOnly {
                    created_at: id_started_at(&id),
                    id,
                    seq,
                },
                Admitted::OutsideRetention => SourceItem::OutsideRetention { id, line },
            };
            // Once the dispatcher is gone (the run stopped), the rest of the
            // batch is still counted: the ledger holds it as pending, and the
            // summary must say so.
            open = open && tx.send(item);
        }
        // A slow input (a pipe) must not hold admitted IDs back.
        Ok(open && tx.flush())
    }

    /// Sends the IDs earlier runs left pending that the input did not list;
    /// then, with content on, the exported IDs whose content is still due
    /// (never fetched, or left pending), except those this run already took.
    fn send_leftovers(&mut self, tx: &mut ItemSender) -> Result<(), SourceError> {
        let content = self.mode.content;
        let sent = self.send_pages(tx, Ledger::take_leftovers, |counts, left| {
            counts.resumed += 1;
            counts.to_fetch += 1;
            SourceItem::Id {
                id: left.id,
                seq: left.seq,
                line: None,
                first_404_micros: left.first_404_micros,
                content: content && left.content_due,
            }
        })?;
        if sent && content {
            self.send_pages(tx, Ledger::take_content_leftovers, |counts, left| {
                counts.content_only += 1;
                SourceItem::ContentOnly {
                    id: left.id,
                    seq: left.seq,
                    created_at: left.created_at,
                }
            })?;
        }
        Ok(())
    }

    /// Pages through what `take` hands out in admission order, sending each as
    /// `item` makes it. False when the dispatcher is gone.
    fn send_pages(
        &mut self,
        tx: &mut ItemSender,
        take: TakePage,
        item: impl Fn(&mut SourceCounts, Leftover) -> SourceItem,
    ) -> Result<bool, SourceError> {
        let mut after = 0;
        loop {
            let leftovers = take(&mut self.ledger, self.run_no, after, ADMIT_BATCH)?;
            let Some(last) = leftovers.last() else {
                return Ok(true);
            };
            after = last.seq;
            // A page taken is marked as offered to this run: count all of it,
            // also when the dispatcher is gone before it is sent.
            let mut open = true;
            for left in leftovers {
                let item = item(&mut self.counts, left);
                open = open && tx.send(item);
            }
            if !open {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> (Vec<SourceItem>, SourceCounts) {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&dir.path().join("l.db"), dir.path()).unwrap();
        let run_no = ledger.begin_run("r", "0", "now").unwrap();
        let (tx, mut rx) = mpsc::channel(1024);
        let mut source = IdSource::new(vec![Input::Stdin], ledger, run_no, ReadMode::default());
        let mut sender = ItemSender::new(tx);
        source
            .read_lines("stdin", bytes, None, &mut sender)
            .unwrap();
        sender.flush();
        drop(sender);
        let mut items = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            items.extend(chunk);
        }
        (items, source.counts)
    }

    fn describe(items: &[SourceItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                SourceItem::Id { id, line, .. } => format!("{id}@{}", line.unwrap_or(0)),
                SourceItem::ContentOnly { id, .. } => format!("{id}@content"),
                SourceItem::Invalid { line, .. } => format!("invalid@{line}"),
                SourceItem::OutsideRetention { id, .. } => format!("{id}@old"),
            })
            .collect()
    }

    #[test]
    fn streams_ids_with_line_numbers_and_drops_repeats() {
        let (items, counts) =
            read_all(b"\xEF\xBB\xBFgen-a\r\n\n# note\ngen-b\ngen-a\n\x00bad\ngen-c");
        assert_eq!(
            describe(&items),
            ["invalid@6", "gen-a@1", "gen-b@4", "gen-c@7"]
        );
        assert_eq!(
            counts,
            SourceCounts {
                lines: 7,
                ids: 3,
                invalid: 1,
                duplicates: 1,
                to_fetch: 3,
                ..SourceCounts::default()
            }
        );
    }

    #[test]
    fn overlong_line_is_invalid_and_the_next_line_still_reads() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\ngen-next\n");
        let (items, counts) = read_all(&input);
        assert_eq!(describe(&items), ["invalid@1", "gen-next@2"]);
        assert_eq!(counts.invalid, 1);
    }

    /// One daemon tick over `queues`: the IDs sent, in order.
    fn tick(
        ledger_path: &std::path::Path,
        queues: &Arc<Mutex<QueueFiles>>,
        run: &str,
    ) -> Vec<String> {
        let dir = ledger_path.parent().unwrap();
        let mut ledger = Ledger::open(ledger_path, dir).unwrap();
        let run_no = ledger.begin_run(run, "0", "now").unwrap();
        let (tx, mut rx) = mpsc::channel(1024);
        let mode = ReadMode {
            queues: Some(queues.clone()),
            ..ReadMode::default()
        };
        IdSource::new(vec![], ledger, run_no, mode).run(tx).unwrap();
        let mut ids = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            for item in chunk {
                if let SourceItem::Id { id, .. } = item {
                    ids.push(id);
                }
            }
        }
        ids
    }

    #[test]
    fn queue_ticks_take_complete_lines_once_and_restart_a_truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        let queue = dir.path().join("q.log");
        std::fs::write(&queue, "gen-a\ngen-b\ngen-c").unwrap();
        let queues = Arc::new(Mutex::new(QueueFiles::new(vec![queue.clone()])));
        assert_eq!(tick(&db, &queues, "r1"), ["gen-a", "gen-b"]);
        // gen-c is finished; nothing before it is read again. IDs sent by a
        // tick stay pending in this test (nothing exports them), so later
        // ticks also resend them as leftovers: only look at new lines.
        std::fs::write(&queue, "gen-a\ngen-b\ngen-c\ngen-d\n").unwrap();
        let second = tick(&db, &queues, "r2");
        assert_eq!(second[..2], ["gen-c", "gen-d"]);
        // Truncated below the offset (copytruncate): read from the start.
        std::fs::write(&queue, "gen-e\n").unwrap();
        let third = tick(&db, &queues, "r3");
        assert_eq!(third[0], "gen-e");
        let saved = Ledger::open(&db, dir.path())
            .unwrap()
            .queue_offset(&queue.display().to_string())
            .unwrap()
            .unwrap();
        assert_eq!((saved.offset, saved.lines), (6, 1));
    }
}
