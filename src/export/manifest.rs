//! The run manifest, `_manifests/<run_id>-<shard>.json`: written last, it lists
//! every file of the run with its rows, bytes and SHA-256, and the run's totals
//! and counts. A reader that finds the manifest knows every listed file is whole.

use std::fs;
use std::path::{Path, PathBuf};

use super::summary::Counts;
use crate::atomic_file::{FileError, FinishedFile, PendingFile};
use crate::layout;
use crate::ledger::DeadRun;
use crate::sink::{SinkOutput, Totals};
use crate::timestamp::{format_timestamp, now_formatted};

#[derive(Debug, Clone, serde::Serialize)]
pub struct ManifestFile {
    /// Relative to the output directory, `/`-separated.
    pub path: String,
    /// The table the file belongs to (`generations`, `content`, `focus`), or `failures`.
    pub kind: &'static str,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub min_created_at: Option<String>,
    pub max_created_at: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Manifest {
    pub run_id: String,
    pub shard: String,
    pub genledger_version: &'static str,
    pub started_at: String,
    pub finished_at: String,
    pub format: &'static str,
    pub files: Vec<ManifestFile>,
    /// Absent in a manifest recovered for a run that died.
    pub totals: Option<Totals>,
    pub counts: Option<Counts>,
    pub stopped: Option<String>,
    /// Written at start-up by a later run, for a run that died before its own
    /// manifest; it lists the files that run committed.
    pub recovered: bool,
}

impl Manifest {
    pub fn new(run: RunInfo<'_>, output: &SinkOutput, counts: Counts) -> Manifest {
        let relative = |p: &Path| layout::relative(run.out_dir, p);
        let tables = [
            (layout::GENERATIONS, &output.data_files),
            (layout::CONTENT, &output.content_files),
            (layout::FOCUS, &output.focus_files),
        ];
        let mut files: Vec<ManifestFile> = tables
            .into_iter()
            .flat_map(|(kind, files)| files.iter().map(move |f| (kind, f)))
            .map(|(kind, f)| ManifestFile {
                path: relative(&f.file.path),
                kind,
                rows: f.rows,
                bytes: f.file.bytes,
                sha256: f.file.sha256.clone(),
                min_created_at: Some(format_timestamp(f.min_partition_micros)),
                max_created_at: Some(format_timestamp(f.max_partition_micros)),
            })
            .collect();
        if let Some(file) = &output.failures_file {
            files.push(failures_entry(run.out_dir, file, output.failure_rows));
        }
        Manifest {
            run_id: run.run_id.to_owned(),
            shard: run.shard.to_owned(),
            genledger_version: env!("CARGO_PKG_VERSION"),
            started_at: run.started_at.to_owned(),
            finished_at: now_formatted(),
            format: run.format,
            files,
            totals: Some(output.totals.clone()),
            counts: Some(counts),
            stopped: run.stopped,
            recovered: false,
        }
    }

    /// The manifest of a run that died, from the files the ledger saw it
    /// commit (its failures file, written later, is added by
    /// [`Manifest::with_failures`]).
    pub fn recovered(run: &DeadRun, shard: &str) -> Manifest {
        let files: Vec<ManifestFile> = run
            .files
            .iter()
            .map(|f| ManifestFile {
                path: f.path.clone(),
                kind: table_kind(&f.kind),
                rows: f.rows,
                bytes: f.bytes,
                sha256: f.sha256.clone(),
                min_created_at: f.min_created_at.map(format_timestamp),
                max_created_at: f.max_created_at.map(format_timestamp),
            })
            .collect();
        Manifest {
            run_id: run.run_id.clone(),
            shard: shard.to_owned(),
            genledger_version: env!("CARGO_PKG_VERSION"),
            started_at: run.started_at.clone(),
            finished_at: now_formatted(),
            format: files.first().map_or("", |f| {
                if f.path.ends_with(".csv") {
                    "csv"
                } else {
                    "parquet"
                }
            }),
            files,
            totals: None,
            counts: None,
            stopped: Some(
                "the run ended without its own manifest; this one was written later from the files it committed".into(),
            ),
            recovered: true,
        }
    }

    /// Lists the run's failures file (`rows` rows), written after the run
    /// ended from the rows the ledger kept.
    pub fn with_failures(mut self, out_dir: &Path, file: &FinishedFile, rows: u64) -> Manifest {
        self.files.push(failures_entry(out_dir, file, rows));
        self
    }

    /// The manifest of a run that ended with `error`, listing the files it
    /// committed before.
    pub fn failed(run: &DeadRun, shard: &str, error: &str) -> Manifest {
        Manifest {
            stopped: Some(format!("the run ended with an error: {error}")),
            recovered: false,
            ..Manifest::recovered(run, shard)
        }
    }

    /// Writes the manifest under `_manifests/`, whole or not at all.
    pub fn write(&self, out_dir: &Path) -> Result<PathBuf, FileError> {
        let path = layout::manifest_path(out_dir, &self.run_id, &self.shard);
        let (pending, mut writer) = PendingFile::create(path)?;
        // serde_json hands an I/O error back as it was (a full disk stays one).
        if let Err(e) = serde_json::to_writer_pretty(&mut writer, self) {
            let e = FileError::new("write", &pending.final_path, e.into());
            pending.abandon();
            return Err(e);
        }
        let finished = pending.finish(writer)?;
        Ok(finished.path)
    }
}

/// The table a file of the ledger's `kind` belongs to.
fn table_kind(kind: &str) -> &'static str {
    match kind {
        layout::CONTENT => layout::CONTENT,
        layout::FOCUS => layout::FOCUS,
        _ => layout::GENERATIONS,
    }
}

/// A failures file as a manifest lists it.
fn failures_entry(out_dir: &Path, file: &FinishedFile, rows: u64) -> ManifestFile {
    ManifestFile {
        path: layout::relative(out_dir, &file.path),
        kind: layout::FAILURES,
        rows,
        bytes: file.bytes,
        sha256: file.sha256.clone(),
        min_created_at: None,
        max_created_at: None,
    }
}

/// Facts about the run the manifest records.
pub struct RunInfo<'a> {
    pub run_id: &'a str,
    pub shard: &'a str,
    pub out_dir: &'a Path,
    pub started_at: &'a str,
    pub format: &'static str,
    pub stopped: Option<String>,
}

/// Reads a manifest back (for tests and tools).
pub fn read(path: &Path) -> std::io::Result<serde_json::Value> {
    let text = fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(std::io::Error::other)
}
