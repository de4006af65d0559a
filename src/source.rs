//! Reading generation IDs from queue files and stdin, one per line.
//!
//! [`parse_line`] is the pure per-line rule (fuzzed separately); [`IdSource`]
//! streams lines from each input through a bounded channel, so memory does not
//! grow with the input, and drops duplicates.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::ledger::{Admission, Ledger, LedgerError};

/// Longest ID accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest line read; the rest of a longer line is discarded and the line is invalid.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// What one input line holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// A generation ID to fetch.
    Id(String),
    /// Blank or a `#` comment.
    Skip,
    /// Never sent; recorded as failed with reason `invalid_id`.
    Invalid(String),
}

/// Applies the input rules to one line (without its line ending).
pub fn parse_line(line: &[u8]) -> LineKind {
    let Ok(text) = std::str::from_utf8(line) else {
        return LineKind::Invalid("line is not valid UTF-8".into());
    };
    let text = text.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r');
    if text.is_empty() || text.starts_with('#') {
        return LineKind::Skip;
    }
    let id = if text.starts_with('{') {
        match id_from_json(text) {
            Ok(id) => id,
            Err(reason) => return LineKind::Invalid(reason),
        }
    } else {
        text.to_owned()
    };
    match check_id(&id) {
        Ok(()) => LineKind::Id(id),
        Err(reason) => LineKind::Invalid(reason),
    }
}

fn id_from_json(text: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Logged {
        id: Option<serde_json::Value>,
    }
    let logged: Logged =
        serde_json::from_str(text).map_err(|e| format!("line looks like JSON but is not: {e}"))?;
    match logged.id {
        Some(serde_json::Value::String(id)) => Ok(id.trim().to_owned()),
        _ => Err("JSON line has no string `id` field".into()),
    }
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty id".into());
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "id is {} bytes long, more than {MAX_ID_BYTES}",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("id contains control characters".into());
    }
    Ok(())
}

/// One input, a file or stdin (`-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(arg))
        }
    }

    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "stdin".into(),
            Input::File(path) => path.display().to_string(),
        }
    }
}

/// An item of the ID stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceItem {
    /// An ID to fetch. `line` is `None` for IDs left pending by earlier runs.
    Id {
        id: String,
        line: Option<u64>,
        first_seen_micros: i64,
    },
    Invalid {
        input: usize,
        line: u64,
        reason: String,
    },
}

/// Totals of what the source read and decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    pub lines: u64,
    /// Distinct IDs the input offered.
    pub ids: u64,
    pub invalid: u64,
    /// Repeats within this run's input.
    pub duplicates: u64,
    pub already_exported: u64,
    pub previously_failed: u64,
    /// Pending IDs from earlier runs that this input did not list.
    pub resumed: u64,
    /// IDs handed on to be fetched (new, pending from before, or resumed).
    pub to_fetch: u64,
}

/// Errors that stop reading.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("failed to open `{path}`")]
    Open { path: String, source: io::Error },
    #[error("failed to read `{path}` at line {line}")]
    Read {
        path: String,
        line: u64,
        source: io::Error,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// IDs decided by the ledger in one transaction.
const ADMIT_BATCH: usize = 1024;

/// Streams the IDs of every input, in order, asking the ledger which are new,
/// then the IDs earlier runs left pending. Memory stays flat: the ledger, not
/// a set in memory, remembers what was seen.
pub struct IdSource {
    inputs: Vec<Input>,
    ledger: Ledger,
    run_no: i64,
    counts: SourceCounts,
    batch: Vec<(String, u64)>,
}

impl IdSource {
    pub fn new(inputs: Vec<Input>, ledger: Ledger, run_no: i64) -> IdSource {
        IdSource {
            inputs,
            ledger,
            run_no,
            counts: SourceCounts::default(),
            batch: Vec::with_capacity(ADMIT_BATCH),
        }
    }

    /// Reads every input to its end on the calling (blocking) thread, sending
    /// items into `tx`. Stops early, without error, when the receiver is gone.
    pub fn run(mut self, tx: mpsc::Sender<SourceItem>) -> Result<SourceCounts, SourceError> {
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
            if !self.read_one(
                index,
                &input,
                BufReader::with_capacity(1 << 16, reader),
                &tx,
            )? {
                return Ok(self.counts);
            }
        }
        self.send_leftovers(&tx)?;
        Ok(self.counts)
    }

    /// Returns false when the receiver has gone away.
    fn read_one(
        &mut self,
        index: usize,
        input: &Input,
        mut reader: impl BufRead,
        tx: &mpsc::Sender<SourceItem>,
    ) -> Result<bool, SourceError> {
        let mut buf = Vec::with_capacity(128);
        let mut line_no = 0u64;
        loop {
            buf.clear();
            line_no += 1;
            let (read, overlong) =
                read_line_capped(&mut reader, &mut buf).map_err(|source| SourceError::Read {
                    path: input.name(),
                    line: line_no,
                    source,
                })?;
            if read == 0 {
                return self.admit_batch(tx);
            }
            self.counts.lines += 1;
            let line = strip_line_end(&buf, line_no == 1);
            let kind = if overlong {
                LineKind::Invalid(format!("line is longer than {MAX_LINE_BYTES} bytes"))
            } else {
                parse_line(line)
            };
            match kind {
                LineKind::Skip => {}
                LineKind::Invalid(reason) => {
                    self.counts.invalid += 1;
                    if tx
                        .blocking_send(SourceItem::Invalid {
                            input: index,
                            line: line_no,
                            reason,
                        })
                        .is_err()
                    {
                        return Ok(false);
                    }
                }
                LineKind::Id(id) => {
                    self.batch.push((id, line_no));
                    if self.batch.len() >= ADMIT_BATCH && !self.admit_batch(tx)? {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Asks the ledger about the batched IDs and sends on those to fetch.
    fn admit_batch(&mut self, tx: &mpsc::Sender<SourceItem>) -> Result<bool, SourceError> {
        if self.batch.is_empty() {
            return Ok(true);
        }
        let batch = std::mem::take(&mut self.batch);
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        let now = chrono::Utc::now().timestamp_micros();
        let admissions = self.ledger.admit(&ids, self.run_no, now)?;
        for ((id, line), admission) in batch.into_iter().zip(admissions) {
            let first_seen_micros = match admission {
                Admission::Duplicate => {
                    self.counts.duplicates += 1;
                    continue;
                }
                Admission::AlreadyExported => {
                    self.counts.ids += 1;
                    self.counts.already_exported += 1;
                    continue;
                }
                Admission::AlreadyFailed => {
                    self.counts.ids += 1;
                    self.counts.previously_failed += 1;
                    continue;
                }
                Admission::Fetch { first_seen_micros } => first_seen_micros,
            };
            self.counts.ids += 1;
            self.counts.to_fetch += 1;
            if tx
                .blocking_send(SourceItem::Id {
                    id,
                    line: Some(line),
                    first_seen_micros,
                })
                .is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends the IDs earlier runs left pending that the input did not list.
    fn send_leftovers(&mut self, tx: &mpsc::Sender<SourceItem>) -> Result<(), SourceError> {
        let mut after = String::new();
        loop {
            let leftovers = self
                .ledger
                .take_leftovers(self.run_no, &after, ADMIT_BATCH)?;
            let Some((last, _)) = leftovers.last() else {
                return Ok(());
            };
            after.clone_from(last);
            for (id, first_seen_micros) in leftovers {
                self.counts.resumed += 1;
                self.counts.to_fetch += 1;
                if tx
                    .blocking_send(SourceItem::Id {
                        id,
                        line: None,
                        first_seen_micros,
                    })
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}

/// Reads up to and including the next `\n`, keeping at most `MAX_LINE_BYTES`.
/// Returns the bytes consumed and whether the line was cut.
fn read_line_capped(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut overlong = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((consumed, overlong));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(buf.len());
        overlong |= take > room && !(done && take - 1 <= room);
        buf.extend_from_slice(&chunk[..take.min(room)]);
        reader.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, overlong));
        }
    }
}

/// Drops the line ending (LF or CRLF) and, on a file's first line, a UTF-8 BOM.
fn strip_line_end(buf: &[u8], first_line: bool) -> &[u8] {
    let mut line = buf.strip_suffix(b"\n").unwrap_or(buf);
    line = line.strip_suffix(b"\r").unwrap_or(line);
    if first_line {
        line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_rules() {
        assert_eq!(
            parse_line(b"  gen-1-abc \r"),
            LineKind::Id("gen-1-abc".into())
        );
        assert_eq!(parse_line(b""), LineKind::Skip);
        assert_eq!(parse_line(b"   "), LineKind::Skip);
        assert_eq!(parse_line(b"# a comment"), LineKind::Skip);
        assert_eq!(
            parse_line(br#"{"id":"gen-2","model":"x"}"#),
            LineKind::Id("gen-2".into())
        );
        assert!(matches!(
            parse_line(br#"{"model":"x"}"#),
            LineKind::Invalid(_)
        ));
        assert!(matches!(parse_line(br#"{"id":""}"#), LineKind::Invalid(_)));
        assert!(matches!(parse_line(br#"{"id":"#), LineKind::Invalid(_)));
        assert!(matches!(parse_line(b"gen-\xff"), LineKind::Invalid(_)));
        assert!(matches!(parse_line(b"gen-\x01x"), LineKind::Invalid(_)));
        assert!(matches!(parse_line(&[b'a'; 257]), LineKind::Invalid(_)));
        assert_eq!(parse_line(&[b'a'; 256]), LineKind::Id("a".repeat(256)));
    }

    fn read_all(bytes: &[u8]) -> (Vec<SourceItem>, SourceCounts) {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&dir.path().join("l.db"), dir.path()).unwrap();
        let run_no = ledger.begin_run("r", "0", "now").unwrap();
        let (tx, mut rx) = mpsc::channel(1024);
        let mut source = IdSource::new(vec![Input::Stdin], ledger, run_no);
        source.read_one(0, &Input::Stdin, bytes, &tx).unwrap();
        drop(tx);
        let mut items = Vec::new();
        while let Ok(item) = rx.try_recv() {
            items.push(item);
        }
        (items, source.counts)
    }

    fn describe(items: &[SourceItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                SourceItem::Id { id, line, .. } => format!("{id}@{}", line.unwrap_or(0)),
                SourceItem::Invalid { line, .. } => format!("invalid@{line}"),
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
}
