//! Rows held back for partitions that have no open file: serialized, buffered
//! a little per date, and written in zstd chunks to one unnamed temporary
//! file, until the run's end turns each date's rows into its data file.
//!
//! The file has no name (`O_TMPFILE` on Linux; elsewhere it is unlinked as
//! soon as it is made), so the kernel frees it when the process exits, killed
//! or not: no later run can find it, let alone misread it. Its index (which
//! chunks hold which date's rows) lives only in memory. A spilled row is in no
//! data file yet, so its ID is simply still pending should the run die.

mod codec;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

pub(super) use codec::SpilledRows;

use super::SinkError;
use super::file::RowKey;
use crate::schema::Row;

/// A date's buffer is written out as one chunk once it holds this much.
const CHUNK_BYTES: usize = 256 << 10;
/// All dates' buffers together; past this the largest is written out, so
/// memory stays flat however many dates spill.
const BUFFER_BUDGET: usize = 2 << 20;
/// zstd's fastest level: metadata rows shrink about fourfold, and
/// incompressible prompts cost little time (zstd stores them raw).
const ZSTD_LEVEL: i32 = 1;

/// A run of one date's rows in the spill file.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    offset: u64,
    stored: usize,
    raw: usize,
}

/// One date's spilled rows, taken out of the spill to be written.
pub(super) struct Spilled {
    chunks: Vec<Chunk>,
    /// Rows still in memory, after those of the chunks.
    tail: Vec<u8>,
}

impl Spilled {
    /// How many parts [`SpillReader::read_part`] reads: the chunks, then the tail.
    pub fn parts(&self) -> usize {
        self.chunks.len() + 1
    }
}

pub(super) struct Spill {
    /// Where the unnamed file is made: the output root, so spilled rows use
    /// the disk the data files will.
    dir: PathBuf,
    file: Option<File>,
    end: u64,
    buffers: HashMap<NaiveDate, Vec<u8>>,
    buffered: usize,
    chunks: HashMap<NaiveDate, Vec<Chunk>>,
    /// Rows and bytes (before compression) held for each date.
    sizes: HashMap<NaiveDate, (u64, u64)>,
    rows: u64,
    /// zstd's context, kept: making one per chunk cost 4 % of the time
    /// spent writing spilled rows out.
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl Spill {
    pub fn new(dir: &Path) -> Spill {
        Spill {
            dir: dir.to_owned(),
            file: None,
            end: 0,
            buffers: HashMap::new(),
            buffered: 0,
            chunks: HashMap::new(),
            sizes: HashMap::new(),
            rows: 0,
            compressor: None,
        }
    }

    /// Rows spilled so far in this run.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes written to the spill file so far (compressed).
    pub fn file_bytes(&self) -> u64 {
        self.end
    }

    /// The dates that have spilled rows not yet taken.
    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.sizes.keys().copied()
    }

    /// Holds back `row` of partition `date`.
    pub fn push<R: Row>(&mut self, date: NaiveDate, key: RowKey, row: &R) -> Result<(), SinkError> {
        let buffer = self.buffers.entry(date).or_default();
        let before = buffer.len();
        codec::encode(buffer, key, row);
        let full = buffer.len() >= CHUNK_BYTES;
        let added = buffer.len() - before;
        self.buffered += added;
        self.rows += 1;
        let size = self.sizes.entry(date).or_default();
        size.0 += 1;
        size.1 += added as u64;
        if full {
            self.write_out(date)?;
        }
        while self.buffered > BUFFER_BUDGET {
            let largest = self
                .buffers
                .iter()
                .max_by_key(|(_, b)| b.len())
                .map(|(date, _)| *date);
            match largest {
                Some(date) => self.write_out(date)?,
                None => break,
            }
        }
        Ok(())
    }

    /// Writes `date`'s buffer to the file as one chunk and frees it.
    fn write_out(&mut self, date: NaiveDate) -> Result<(), SinkError> {
        let Some(buffer) = self.buffers.remove(&date) else {
            return Ok(());
        };
        self.buffered -= buffer.len();
        let stored = self
            .compressor()
            .and_then(|compressor| compressor.compress(&buffer))
            .map_err(|e| self.failed("write rows to a spill file in", e))?;
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(unnamed_file(&self.dir)?),
        };
        if let Err(e) = file.write_all(&stored) {
            return Err(self.failed("write rows to a spill file in", e));
        }
        let chunk = Chunk {
            offset: self.end,
            stored: stored.len(),
            raw: buffer.len(),
        };
        self.end += stored.len() as u64;
        self.chunks.entry(date).or_default().push(chunk);
        Ok(())
    }

    /// The rows, and their bytes before compression, held for `date`.
    pub fn size_of(&self, date: NaiveDate) -> (u64, u64) {
        self.sizes.get(&date).copied().unwrap_or_default()
    }

    /// Takes `date`'s rows out of the spill (its chunks stay in the file,
    /// unused, until the file goes at the end of the run).
    pub fn take(&mut self, date: NaiveDate) -> Option<Spilled> {
        let chunks = self.chunks.remove(&date).unwrap_or_default();
        let tail = self.buffers.remove(&date).unwrap_or_default();
        self.buffered -= tail.len();
        self.sizes.remove(&date);
        (!chunks.is_empty() || !tail.is_empty()).then_some(Spilled { chunks, tail })
    }

    /// A reader of the spill file, with zstd's context of its own (made on
    /// its first chunk); each thread that reads rows back at the end of the
    /// run has one.
    pub fn reader(&self) -> Result<SpillReader, SinkError> {
        let failed = |e| SinkError::io("read rows back from a spill file in", &self.dir, e);
        let file = match &self.file {
            Some(file) => Some(file.try_clone().map_err(failed)?),
            None => None,
        };
        Ok(SpillReader {
            file,
            dir: self.dir.clone(),
            decompressor: None,
        })
    }

    /// The zstd context, made on first use.
    fn compressor(&mut self) -> io::Result<&mut zstd::bulk::Compressor<'static>> {
        if self.compressor.is_none() {
            self.compressor = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        // Some: set just above when it was not.
        Ok(self.compressor.as_mut().expect("made above"))
    }

    fn failed(&self, action: &'static str, e: io::Error) -> SinkError {
        SinkError::io(action, &self.dir, e)
    }
}

/// Reads the spill file's chunks back (the spill's rows are all written by
/// then).
pub(super) struct SpillReader {
    /// None when no chunk was ever written (every row is in a tail).
    file: Option<File>,
    dir: PathBuf,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl SpillReader {
    /// Part `part` of `spilled`'s rows, in the order they were spilled:
    /// each chunk read back from the file, then the rows still in memory.
    pub fn read_part<'s>(
        &mut self,
        spilled: &'s Spilled,
        part: usize,
    ) -> Result<Cow<'s, [u8]>, SinkError> {
        let Some(chunk) = spilled.chunks.get(part) else {
            return Ok(Cow::Borrowed(&spilled.tail));
        };
        let failed = |e| SinkError::io("read rows back from a spill file in", &self.dir, e);
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| failed(io::ErrorKind::NotFound.into()))?;
        let mut stored = vec![0; chunk.stored];
        read_exact_at(file, &mut stored, chunk.offset).map_err(failed)?;
        let decompressor = match &mut self.decompressor {
            Some(decompressor) => decompressor,
            None => self
                .decompressor
                .insert(zstd::bulk::Decompressor::new().map_err(failed)?),
        };
        decompressor
            .decompress(&stored, chunk.raw)
            .map(Cow::Owned)
            .map_err(failed)
    }
}

/// A file in `dir` that has no name, readable by the owner only.
fn unnamed_file(dir: &Path) -> Result<File, SinkError> {
    let failed = |e| SinkError::io("create a spill file in", dir, e);
    std::fs::create_dir_all(dir).map_err(failed)?;
    let file = tempfile::tempfile_in(dir).map_err(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(failed)?;
    }
    Ok(file)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)?;
    file.seek(SeekFrom::End(0))?;
    Ok(())
}
