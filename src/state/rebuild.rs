//! Rebuilding a lost ledger. The output directory records every committed
//! file in a manifest with its rows and SHA-256, and the files hold the IDs:
//! that is enough to say again which IDs are exported (and their content),
//! which failed for good, and which runs wrote them. What it cannot restore
//! (queue offsets, learned rates, pending IDs) only costs time: queue files
//! are read again from the start, and IDs already exported are skipped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use serde_json::Value;

use super::read::{data_ids, failure_rows};
use crate::atomic_file::{FinishedFile, is_whole};
use crate::config::Settings;
use crate::export::guard::manifest_runs;
use crate::export::manifest::{self, Manifest};
use crate::layout;
use crate::ledger::{CommittedFile, DeadRun, Ledger, RestoredFile, RestoredRun, Side, StateLock};
use crate::record::{IdStatus, Reason};
use crate::timestamp::now_formatted;

/// What a rebuild found and restored.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rebuilt {
    pub runs: u64,
    pub files: u64,
    pub ids_exported: u64,
    pub contents_exported: u64,
    pub ids_failed: u64,
    /// Listed files missing or not whole: their IDs will be exported again.
    pub damaged: Vec<PathBuf>,
    /// Whole data files no manifest listed (a run died before its manifest),
    /// adopted and listed in a manifest of their own.
    pub adopted: u64,
    /// Where the ledger that was replaced went, if there was one.
    pub set_aside: Option<PathBuf>,
}

/// Recreates the ledger at `settings.state_path` from the manifests and
/// files of `settings.output.dir`, for this process's shard. A ledger file
/// already there is kept beside it, renamed, never deleted.
pub fn rebuild(settings: &Settings) -> anyhow::Result<Rebuilt> {
    let out = &settings.output.dir;
    let shard = settings.shard.label();
    if !out.join(layout::MANIFESTS).is_dir() {
        anyhow::bail!(
            "`{}` has no `{}` directory: there is nothing to rebuild the ledger from",
            out.display(),
            layout::MANIFESTS
        );
    }
    let _lock = StateLock::acquire(&settings.state_path)?;
    let mut done = Rebuilt {
        set_aside: set_aside(&settings.state_path)?,
        ..Rebuilt::default()
    };
    let mut ledger =
        Ledger::open(&settings.state_path, out).context("failed to create the new ledger")?;
    let mut runs: Vec<String> = manifest_runs(out, &shard)?.into_iter().collect();
    runs.sort();
    let mut listed = HashSet::new();
    for run_id in &runs {
        let path = layout::manifest_path(out, run_id, &shard);
        let manifest = manifest::read(&path)
            .with_context(|| format!("failed to read the manifest `{}`", path.display()))?;
        restore_run(
            &mut ledger,
            out,
            &path,
            &manifest,
            &shard,
            &mut done,
            &mut listed,
        )?;
    }
    adopt_orphans(&mut ledger, out, &shard, &listed, &mut done)?;
    Ok(done)
}

/// Moves a ledger file that holds anything (and its WAL) out of the way.
fn set_aside(path: &Path) -> anyhow::Result<Option<PathBuf>> {
    let holds_data = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
    let wal = sibling(path, "-wal");
    if !holds_data && !wal.exists() {
        return Ok(None);
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let aside = sibling(path, &format!(".replaced-{stamp}"));
    for suffix in ["", "-wal", "-shm"] {
        let from = sibling(path, suffix);
        if from.exists() {
            let to = sibling(&aside, suffix);
            std::fs::rename(&from, &to).with_context(|| {
                format!(
                    "failed to move `{}` aside to `{}`",
                    from.display(),
                    to.display()
                )
            })?;
        }
    }
    tracing::warn!(kept = %aside.display(), "the ledger that was there is kept beside the new one");
    Ok(Some(aside))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Restores one manifest's run and every file it lists.
fn restore_run(
    ledger: &mut Ledger,
    out: &Path,
    path: &Path,
    manifest: &Value,
    shard: &str,
    done: &mut Rebuilt,
    listed: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let text = |key: &str| manifest.get(key).and_then(Value::as_str).unwrap_or("");
    let run_id = text("run_id");
    if run_id.is_empty() {
        return Err(anyhow!("`{}` names no `run_id`", path.display()));
    }
    ledger.restore_run(&RestoredRun {
        run_id,
        shard,
        started_at: text("started_at"),
        finished_at: text("finished_at"),
        manifest: &layout::relative(out, path),
    })?;
    done.runs += 1;
    let files = manifest
        .get("files")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for file in &files {
        let field = |key: &str| file.get(key).and_then(Value::as_str).unwrap_or("");
        let number = |key: &str| file.get(key).and_then(Value::as_u64).unwrap_or(0);
        let rel = field("path");
        listed.insert(rel.to_owned());
        let full = out.join(rel);
        let (bytes, sha256) = (number("bytes"), field("sha256"));
        if !is_whole(&full, i64::try_from(bytes).ok(), Some(sha256)) {
            tracing::error!(path = %full.display(), "a file the manifest lists is missing or not whole; its IDs will be exported again");
            done.damaged.push(full);
            continue;
        }
        let kind = field("kind");
        restore_file(ledger, &full, kind, done)?;
        ledger.restore_file(&RestoredFile {
            run_id,
            kind,
            path: rel,
            rows: number("rows"),
            bytes,
            sha256,
        })?;
        done.files += 1;
    }
    Ok(())
}

/// Records what one whole file says of its IDs.
fn restore_file(
    ledger: &mut Ledger,
    path: &Path,
    kind: &str,
    done: &mut Rebuilt,
) -> anyhow::Result<()> {
    match kind {
        layout::GENERATIONS => {
            let ids = data_ids(path)?;
            ledger.restore_ids(&ids, Side::Metadata, IdStatus::Exported, None)?;
            done.ids_exported += ids.len() as u64;
        }
        layout::CONTENT => {
            let ids = data_ids(path)?;
            ledger.restore_ids(&ids, Side::Content, IdStatus::Exported, None)?;
            done.contents_exported += ids.len() as u64;
        }
        // Its rows are the generations file's of the same name, which
        // restores their IDs.
        layout::FOCUS => {}
        layout::FAILURES => {
            for (id, text) in failure_rows(path)? {
                // Pending IDs are not recorded: a later run fetches them when
                // the input offers them again, as it would have.
                let Some(reason) = Reason::parse(&text).filter(|r| !r.is_pending()) else {
                    continue;
                };
                let side = if reason.is_content() {
                    Side::Content
                } else {
                    Side::Metadata
                };
                let row = [(id, None)];
                ledger.restore_ids(&row, side, IdStatus::Failed, Some(reason.as_str()))?;
                done.ids_failed += u64::from(side == Side::Metadata);
            }
        }
        other => {
            tracing::warn!(kind = other, path = %path.display(), "a manifest lists a file of an unknown kind; skipped")
        }
    }
    Ok(())
}

/// Whole data files of this shard that no manifest lists: written by a run
/// that died before its manifest, whose ledger entry went with the ledger.
/// A file under its final name is whole (it is renamed only once synced),
/// so its IDs are exported; a manifest of their own names them.
fn adopt_orphans(
    ledger: &mut Ledger,
    out: &Path,
    shard: &str,
    listed: &HashSet<String>,
    done: &mut Rebuilt,
) -> anyhow::Result<()> {
    let mut orphans = Vec::new();
    for table in [layout::GENERATIONS, layout::CONTENT] {
        for path in data_files(&layout::table_dir(out, table))? {
            let rel = layout::relative(out, &path);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !listed.contains(&rel) && layout::is_data_file_of(&name, shard) {
                orphans.push((table, path, rel));
            }
        }
    }
    if orphans.is_empty() {
        return Ok(());
    }
    let run = DeadRun {
        run_no: 0,
        run_id: format!("{}-rebuilt", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")),
        started_at: now_formatted(),
        files: Vec::new(),
    };
    let mut files = Vec::new();
    for (table, path, rel) in orphans {
        files.push(adopt(ledger, table, &path, rel, &run.run_id, done)?);
    }
    let run = DeadRun { files, ..run };
    let manifest_path = Manifest::recovered(&run, shard).write(out)?;
    ledger.restore_run(&RestoredRun {
        run_id: &run.run_id,
        shard,
        started_at: &run.started_at,
        finished_at: &now_formatted(),
        manifest: &layout::relative(out, &manifest_path),
    })?;
    tracing::warn!(files = done.adopted, manifest = %manifest_path.display(), "adopted files no manifest listed");
    Ok(())
}

/// Restores one orphan file under the run `run_id` that adopts it.
fn adopt(
    ledger: &mut Ledger,
    table: &str,
    path: &Path,
    rel: String,
    run_id: &str,
    done: &mut Rebuilt,
) -> anyhow::Result<CommittedFile> {
    restore_file(ledger, path, table, done)?;
    let finished =
        FinishedFile::of(path).with_context(|| format!("failed to hash `{}`", path.display()))?;
    let rows = data_ids(path)?.len() as u64;
    ledger.restore_file(&RestoredFile {
        run_id,
        kind: table,
        path: &rel,
        rows,
        bytes: finished.bytes,
        sha256: &finished.sha256,
    })?;
    done.adopted += 1;
    Ok(CommittedFile {
        path: rel,
        kind: table.to_owned(),
        rows,
        bytes: finished.bytes,
        sha256: finished.sha256,
        min_created_at: None,
        max_created_at: None,
    })
}

/// The data files under a table's partitions, skipping hidden ones.
fn data_files(table: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let Ok(partitions) = std::fs::read_dir(table) else {
        return Ok(files);
    };
    for partition in partitions {
        let partition = partition?.path();
        if !partition.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&partition)? {
            let path = entry?.path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
