//! A run's failures file written again from the rows the ledger kept of it:
//! for a run that died before its own was renamed into place (written at
//! the next run's start, with its recovered manifest), and on stdout for
//! `genledger state failures`. Same columns and CSV dialect as the sink's.

use std::io::Write;
use std::path::Path;

use crate::atomic_file::{FinishedFile, PendingFile};
use crate::layout;
use crate::ledger::{DeadRun, Ledger, LedgerError};
use crate::record::FailureRow;
use crate::sink::SinkError;

/// Why writing the rows stopped.
#[derive(Debug)]
enum RowsError {
    Ledger(LedgerError),
    Csv(csv::Error),
}

impl From<LedgerError> for RowsError {
    fn from(e: LedgerError) -> Self {
        RowsError::Ledger(e)
    }
}

fn csv_writer<W: Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out)
}

/// The header and each of run `run_no`'s rows; returns how many rows.
fn write_rows<W: Write>(
    ledger: &Ledger,
    run_no: i64,
    writer: &mut csv::Writer<W>,
) -> Result<u64, RowsError> {
    writer
        .write_record(FailureRow::COLUMNS)
        .map_err(RowsError::Csv)?;
    ledger.each_failure(run_no, |row| {
        writer.write_record(row.fields()).map_err(RowsError::Csv)
    })
}

/// Writes run `run_no`'s failures CSV to `out` (stdout for `state
/// failures`); returns how many rows.
pub fn write_csv<W: Write>(ledger: &Ledger, run_no: i64, out: W) -> anyhow::Result<u64> {
    let mut writer = csv_writer(out);
    let rows = match write_rows(ledger, run_no, &mut writer) {
        Ok(rows) => rows,
        Err(RowsError::Ledger(e)) => return Err(e.into()),
        Err(RowsError::Csv(e)) => {
            // An I/O error as itself, so the caller can tell a closed pipe.
            let e = if e.is_io_error() {
                match e.into_kind() {
                    csv::ErrorKind::Io(io) => anyhow::Error::new(io),
                    other => anyhow::anyhow!("{other:?}"),
                }
            } else {
                anyhow::Error::new(e)
            };
            return Err(e.context("failed to write the failures CSV"));
        }
    };
    writer
        .flush()
        .map_err(|e| anyhow::Error::new(e).context("failed to write the failures CSV"))?;
    Ok(rows)
}

/// Writes the failures file of a run that died, from the ledger's rows,
/// whole or not at all (a hidden name, synced, renamed), over whatever is
/// at its path: a file the run renamed into place just before it died
/// holds the same rows. None when the ledger kept no row for it.
pub(super) fn write_dead_run_file(
    ledger: &Ledger,
    out_dir: &Path,
    run: &DeadRun,
    shard: &str,
) -> Result<Option<(FinishedFile, u64)>, SinkError> {
    if ledger.failure_count(run.run_no)? == 0 {
        return Ok(None);
    }
    let path = layout::failures_path(out_dir, &run.run_id, shard);
    let (pending, out) = PendingFile::create(path)?;
    let mut writer = csv_writer(out);
    let rows = match write_rows(ledger, run.run_no, &mut writer) {
        Ok(rows) => rows,
        Err(e) => {
            let e = match e {
                RowsError::Ledger(e) => SinkError::from(e),
                RowsError::Csv(e) => SinkError::csv(&pending.final_path, e),
            };
            pending.abandon();
            return Err(e);
        }
    };
    let out = match writer.into_inner() {
        Ok(out) => out,
        Err(e) => {
            let e = SinkError::io("write", &pending.final_path, e.into_error());
            pending.abandon();
            return Err(e);
        }
    };
    Ok(Some((pending.finish(out)?, rows)))
}
