//! `state check --deep`: every committed data file read back. No ID may be
//! in two files of a table; each ID in a `generations` file must be exported
//! in the ledger (or forgotten by retention: its day is before the window);
//! and the ledger may count no exported ID that no file holds. Memory grows
//! with the IDs read, about 40 bytes each (a 128-bit hash and its file).

use std::collections::HashMap;
use std::path::Path;

use super::check::CheckReport;
use super::read::data_ids;
use crate::layout;
use crate::ledger::{Ledger, LedgerFile, retention_day};
use crate::record::IdStatus;

/// Findings of one kind named one by one; the rest are counted.
const NAMED: usize = 10;

/// What reading one table's files found.
#[derive(Default)]
struct Tally {
    read: u64,
    /// Distinct IDs the ledger says are exported.
    exported: u64,
    /// IDs in two files, and IDs in a file not exported.
    twice: Found,
    not_exported: Found,
}

/// Findings of one kind: the first [`NAMED`] said, the rest counted.
#[derive(Default)]
struct Found {
    named: Vec<String>,
    total: u64,
}

impl Found {
    fn push(&mut self, say: impl FnOnce() -> String) {
        self.total += 1;
        if self.named.len() < NAMED {
            self.named.push(say());
        }
    }

    fn report(&self, report: &mut CheckReport) {
        for message in &self.named {
            report.problem("deep", message.clone());
        }
        let more = self.total - self.named.len() as u64;
        if more > 0 {
            report.problem("deep", format!("… and {more} more like the above"));
        }
    }
}

pub(super) fn check(
    ledger: &Ledger,
    out_dir: &Path,
    files: &[LedgerFile],
    first_kept_day: Option<i64>,
    report: &mut CheckReport,
) -> anyhow::Result<()> {
    let mut read = 0;
    for table in [layout::GENERATIONS, layout::CONTENT] {
        let in_table: Vec<&LedgerFile> = files.iter().filter(|f| f.kind == table).collect();
        let tally = read_table(ledger, out_dir, &in_table, first_kept_day, report)?;
        read += tally.read;
        tally.twice.report(report);
        if table != layout::GENERATIONS {
            continue;
        }
        tally.not_exported.report(report);
        let (_, counted, _) = ledger.status_counts()?;
        if counted > tally.exported {
            report.problem(
                "deep",
                format!(
                    "the ledger counts {counted} exported IDs, but the committed files hold only {} of them",
                    tally.exported
                ),
            );
        }
    }
    report.checked.ids_read = Some(read);
    Ok(())
}

/// Reads every file of one table (those that are whole: the others are
/// already named), each ID once.
fn read_table(
    ledger: &Ledger,
    out_dir: &Path,
    files: &[&LedgerFile],
    first_kept_day: Option<i64>,
    report: &mut CheckReport,
) -> anyhow::Result<Tally> {
    let mut seen: HashMap<u128, usize> = HashMap::new();
    let mut tally = Tally::default();
    let metadata = files.first().is_some_and(|f| f.kind == layout::GENERATIONS);
    for (index, file) in files.iter().enumerate() {
        let full = out_dir.join(&file.path);
        if !full.is_file() {
            continue;
        }
        let ids = match data_ids(&full) {
            Ok(ids) => ids,
            Err(e) => {
                report.problem("deep", format!("`{}` cannot be read: {e:#}", file.path));
                continue;
            }
        };
        for (id, created_at) in ids {
            tally.read += 1;
            let key = xxhash_rust::xxh3::xxh3_128(id.as_bytes());
            if let Some(first) = seen.insert(key, index) {
                tally.twice.push(|| {
                    format!(
                        "`{id}` is in two committed files: `{}` and `{}`",
                        files[first].path, file.path
                    )
                });
                continue;
            }
            if !metadata {
                continue;
            }
            match ledger.status_of(&id)? {
                Some(IdStatus::Exported) => tally.exported += 1,
                None if forgotten(&id, created_at, first_kept_day) => {}
                _ => tally.not_exported.push(|| {
                    format!(
                        "`{id}` is in `{}`, but the ledger does not say it is exported: a run would export it again",
                        file.path
                    )
                }),
            }
        }
    }
    Ok(tally)
}

/// Whether retention may have dropped the ID's day from the ledger.
fn forgotten(id: &str, created_at: Option<i64>, first_kept_day: Option<i64>) -> bool {
    match (retention_day(id, created_at), first_kept_day) {
        (Some(day), Some(first)) => day < first,
        _ => false,
    }
}
