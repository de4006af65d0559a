//! `genledger state check`: the ledger against SQLite's integrity check,
//! its own rules ([`Ledger::audit`]) and the output directory.
//!
//! What it proves: SQLite's pages and indexes are sound; every file the
//! ledger calls committed is in place byte for byte as it was committed
//! (size and SHA-256), and is listed by its run's manifest; every run was
//! closed by the next run's start at the latest; no file left open or
//! staged can, once settled, export an ID that is already exported (its
//! linked rows are neither exported nor linked twice, and a staged file's
//! links are exactly its rows); exported IDs leave the working set when
//! nothing more is due for them; each day's settled count is its table's
//! row count; each queue offset points inside its file, at a line's start.
//!
//! What it cannot prove from the ledger alone: that every exported ID is in
//! exactly one committed file. An ID's link to its file is dropped once the
//! file is committed, and a settled ID is kept only as a 128-bit hash, so
//! the ledger cannot name the file that holds a given ID; that promise
//! rests on the commit protocol (an ID is marked exported in the same
//! transaction as its file is committed, and is never fetched again).
//! `--deep` ([`deep`](super::deep)) reads every committed data file back to
//! check it: no ID in two files, each ID in a file exported in the ledger
//! (or forgotten by retention), and as many as the ledger counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::deep;
use crate::atomic_file::is_whole;
use crate::export::manifest;
use crate::ledger::{Finding, Ledger, LedgerFile, QueueOffset};

/// What to check beyond the ledger and the files' hashes.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Read every committed data file's IDs back.
    pub deep: bool,
    /// The first day `state.retention` keeps: IDs before it may be
    /// forgotten by the ledger though their files remain.
    pub first_kept_day: Option<i64>,
}

/// What `state check` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// No problem found (warnings aside).
    pub ok: bool,
    pub problems: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub checked: Checked,
}

/// How much was looked at.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Checked {
    pub committed_files: u64,
    pub manifests: u64,
    pub queue_offsets: u64,
    /// With `--deep`: the IDs read back from committed data files.
    pub ids_read: Option<u64>,
}

impl CheckReport {
    pub(super) fn problem(&mut self, check: &'static str, message: String) {
        self.problems.push(Finding::new(check, message));
    }

    fn warning(&mut self, check: &'static str, message: String) {
        self.warnings.push(Finding::new(check, message));
    }
}

/// Checks the ledger and the output under `out_dir`. Hold the state lock.
pub fn check(
    ledger: &Ledger,
    out_dir: &Path,
    options: CheckOptions,
) -> anyhow::Result<CheckReport> {
    let audit = ledger.audit()?;
    let mut report = CheckReport {
        problems: audit.problems,
        warnings: audit.warnings,
        ..CheckReport::default()
    };
    // A damaged database answers nothing else reliably.
    if report.problems.iter().all(|p| p.check != "integrity") {
        let files = ledger.committed_file_list()?;
        committed_files(out_dir, &files, &mut report);
        manifests(out_dir, &audit.manifests, &files, &mut report);
        queue_offsets(&ledger.queue_offsets()?, &mut report);
        if options.deep {
            deep::check(ledger, out_dir, &files, options.first_kept_day, &mut report)?;
        }
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// Every committed file is in place, whole.
fn committed_files(out_dir: &Path, files: &[LedgerFile], report: &mut CheckReport) {
    for file in files {
        let full = out_dir.join(&file.path);
        let named = format!("`{}` (committed by run {})", file.path, file.run_id);
        match std::fs::metadata(&full) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.problem("committed_file", format!("{named} is missing"));
            }
            Err(e) => report.problem("committed_file", format!("{named} cannot be read: {e}")),
            Ok(meta) => {
                if !is_whole(&full, file.bytes, file.sha256.as_deref()) {
                    let detail = match file.bytes {
                        Some(bytes) if bytes != meta.len() as i64 => {
                            format!("{} bytes, {bytes} when committed", meta.len())
                        }
                        _ => "its SHA-256 is not the one recorded at its commit".to_owned(),
                    };
                    report.problem("committed_file", format!("{named} is not whole: {detail}"));
                }
            }
        }
    }
    report.checked.committed_files = files.len() as u64;
}

/// Each closed run's manifest is there and lists every file it committed.
fn manifests(
    out_dir: &Path,
    recorded: &[(String, String)],
    files: &[LedgerFile],
    report: &mut CheckReport,
) {
    let mut by_run: BTreeMap<&str, Vec<&LedgerFile>> = BTreeMap::new();
    for file in files {
        by_run.entry(&file.run_id).or_default().push(file);
    }
    for (run_id, path) in recorded {
        let full = out_dir.join(path);
        let listed: BTreeSet<(String, String)> = match manifest::read(&full) {
            Ok(manifest) => listed_files(&manifest),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.problem(
                    "manifest",
                    format!("`{path}`, the manifest of run {run_id}, is missing"),
                );
                continue;
            }
            Err(e) => {
                report.problem(
                    "manifest",
                    format!("`{path}`, the manifest of run {run_id}, cannot be read: {e}"),
                );
                continue;
            }
        };
        for file in by_run.get(run_id.as_str()).into_iter().flatten() {
            let entry = (file.path.clone(), file.sha256.clone().unwrap_or_default());
            if !listed.contains(&entry) {
                report.problem(
                    "manifest",
                    format!("`{}` is committed, but its run's manifest `{path}` does not list it (with its SHA-256)", file.path),
                );
            }
        }
    }
    report.checked.manifests = recorded.len() as u64;
}

/// A manifest's files as (path, SHA-256).
fn listed_files(manifest: &Value) -> BTreeSet<(String, String)> {
    let files = manifest.get("files").and_then(Value::as_array);
    let text = |f: &Value, key: &str| f.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    files
        .into_iter()
        .flatten()
        .map(|f| (text(f, "path"), text(f, "sha256")))
        .collect()
}

/// Each queue offset points inside its file, at the start of a line. A file
/// rotated away, replaced, or truncated in place (`copytruncate`) only
/// earns a warning: the source finishes or restarts it as it should.
fn queue_offsets(offsets: &[QueueOffset], report: &mut CheckReport) {
    for q in offsets {
        let path = &q.path;
        let offset = q.offset;
        match std::fs::metadata(path) {
            Err(_) => report.warning(
                "queue",
                format!("`{path}` is gone (rotated or removed, or a relative path from another directory); its saved offset ({offset} bytes) waits for it"),
            ),
            Ok(meta) if inode(&meta) != q.inode => report.warning(
                "queue",
                format!("`{path}` was rotated since its offset was saved: the next run reads the new file from its start"),
            ),
            Ok(meta) if meta.len() < offset => report.warning(
                "queue",
                format!("the saved offset of `{path}` ({offset} bytes) is past its end ({} bytes): it was truncated in place, and the next run reads it from its start", meta.len()),
            ),
            Ok(_) => match byte_before(Path::new(path), offset) {
                Ok(None | Some(b'\n')) => {}
                Ok(Some(_)) => report.problem(
                    "queue",
                    format!("the saved offset of `{path}` ({offset} bytes) is not at the start of a line: the next run would read half a line"),
                ),
                Err(e) => report.problem("queue", format!("`{path}` cannot be read: {e}")),
            },
        }
    }
    report.checked.queue_offsets = offsets.len() as u64;
}

/// The byte just before `offset` (none at the start of the file).
fn byte_before(path: &Path, offset: u64) -> std::io::Result<Option<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    if offset == 0 {
        return Ok(None);
    }
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset - 1))?;
    let mut byte = [0u8; 1];
    file.read_exact(&mut byte)?;
    Ok(Some(byte[0]))
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}
