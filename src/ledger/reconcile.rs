//! Start-up reconciliation: settles every file a dead process left behind,
//! and finds the runs that died before their manifest. Writing a manifest and
//! a failures file for them is the caller's, the failures file from the rows
//! [`Ledger::each_failure`] reads back (the ledger writes no output files of
//! its own).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rusqlite::{TransactionBehavior, params};

use super::{FILE_COMMITTED, FILE_STAGED, Ledger, LedgerError};
use crate::atomic_file::{is_temp_name, is_whole};
use crate::layout;
use crate::objstore::Presence;

/// What reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Staged files found whole in place and committed.
    pub committed: u64,
    /// Unfinished files removed; their IDs are pending again.
    pub discarded: u64,
    /// Hidden temporary files removed that the ledger did not know.
    pub strays: u64,
    /// Runs that died before their manifest, with the files they committed.
    pub dead_runs: Vec<DeadRun>,
}

/// A run that died before finishing: the caller writes its failures file
/// (from [`Ledger::each_failure`]) and its manifest (from `files`), and then
/// calls [`Ledger::close_dead_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRun {
    pub run_no: i64,
    pub run_id: String,
    pub started_at: String,
    pub files: Vec<CommittedFile>,
}

/// A file a run committed, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedFile {
    /// Relative to the output directory, `/`-separated.
    pub path: String,
    /// The table it belongs to.
    pub kind: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub min_created_at: Option<i64>,
    pub max_created_at: Option<i64>,
}

struct Unsettled {
    file_id: i64,
    run_id: String,
    path: String,
    temp_path: String,
    status: i64,
    bytes: Option<i64>,
    sha256: Option<String>,
    upload_id: Option<String>,
}

impl Ledger {
    /// Settles unfinished files and finds dead runs. Call with the state lock
    /// held, before anything else touches the output.
    pub fn reconcile(&mut self) -> Result<Reconciled, LedgerError> {
        let mut done = Reconciled::default();
        let unsettled = self.sql(|c| {
            let mut stmt = c.prepare(
                "SELECT file_id, run_id, path, temp_path, status, bytes, sha256, upload_id FROM files
                 WHERE status != ?1",
            )?;
            let rows = stmt.query_map([FILE_COMMITTED], |r| {
                Ok(Unsettled {
                    file_id: r.get(0)?,
                    run_id: r.get(1)?,
                    path: r.get(2)?,
                    temp_path: r.get(3)?,
                    status: r.get(4)?,
                    bytes: r.get(5)?,
                    sha256: r.get(6)?,
                    upload_id: r.get(7)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        for group in paired(unsettled) {
            // Every file of the group is looked at (a remote one's unfinished
            // upload aborted) before the group is judged.
            let mut whole = true;
            for file in &group {
                whole &= file.status == FILE_STAGED && self.published_whole(file)?;
            }
            if whole {
                let ids: Vec<i64> = group.iter().map(|f| f.file_id).collect();
                self.mark_committed(&ids)?;
                for file in &group {
                    let final_path = self.out_dir.join(&file.path);
                    tracing::info!(path = %final_path.display(), "finished the commit of a staged file");
                }
                done.committed += group.len() as u64;
                continue;
            }
            self.discard(&group)?;
            done.discarded += group.len() as u64;
        }
        done.strays = remove_stray_temps(&self.out_dir)?;
        done.dead_runs = self.dead_runs()?;
        Ok(done)
    }

    /// Removes unfinished files that pair up and forgets them in one
    /// transaction (a half-forgotten pair could otherwise commit its other
    /// half later); their IDs are pending again. Removed from disk first: a
    /// file a crash leaves listed but gone is not whole, so the next start
    /// discards its pair again.
    fn discard(&mut self, group: &[Unsettled]) -> Result<(), LedgerError> {
        for file in group {
            remove_if_present(&self.out_dir.join(&file.temp_path))?;
            if file.status == FILE_STAGED {
                // Never renamed, or not whole: either way not the data we staged.
                match &self.remote {
                    None => remove_if_present(&self.out_dir.join(&file.path))?,
                    Some(remote) => remote.delete(&file.path)?,
                }
            }
        }
        self.sql_mut(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for file in group {
                tx.execute("DELETE FROM file_rows WHERE file_id = ?1", [file.file_id])?;
                tx.execute("DELETE FROM files WHERE file_id = ?1", [file.file_id])?;
            }
            tx.commit()
        })?;
        for file in group {
            let final_path = self.out_dir.join(&file.path);
            tracing::info!(path = %final_path.display(), "removed an unfinished file; its IDs are pending again");
        }
        Ok(())
    }

    /// Whether a staged file is in place whole: renamed into place, or for a
    /// remote output uploaded (its multipart upload, if any, aborted first:
    /// one that completed is gone already, and one that did not must not
    /// complete later). An adopted remote file's local copy is removed.
    fn published_whole(&self, file: &Unsettled) -> Result<bool, LedgerError> {
        let Some(remote) = &self.remote else {
            let path = self.out_dir.join(&file.path);
            return Ok(is_whole(&path, file.bytes, file.sha256.as_deref()));
        };
        if let Some(upload_id) = &file.upload_id {
            remote.abort_upload(&file.path, upload_id)?;
        }
        let presence = remote.presence(&file.path, file.bytes, file.sha256.as_deref())?;
        if presence == Presence::Whole {
            remove_if_present(&self.out_dir.join(&file.temp_path))?;
        }
        Ok(presence == Presence::Whole)
    }

    /// Runs that never finished, each with the files it committed.
    fn dead_runs(&self) -> Result<Vec<DeadRun>, LedgerError> {
        let dead: Vec<(i64, String, String)> = self.sql(|c| {
            let mut stmt =
                c.prepare("SELECT run_no, run_id, started_at FROM runs WHERE finished_at IS NULL")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        dead.into_iter()
            .map(|(run_no, run_id, started_at)| {
                let files = self.committed_files(&run_id)?;
                Ok(DeadRun {
                    run_no,
                    run_id,
                    started_at,
                    files,
                })
            })
            .collect()
    }

    /// Closes a dead run, with the manifest written for it (none when it
    /// committed no file).
    pub fn close_dead_run(
        &mut self,
        run: &DeadRun,
        finished_at: &str,
        manifest: Option<&Path>,
    ) -> Result<(), LedgerError> {
        let manifest = manifest.map(|p| self.relative(p));
        self.sql(|c| {
            c.execute(
                "UPDATE runs SET finished_at = ?2, manifest = ?3 WHERE run_no = ?1",
                params![run.run_no, finished_at, manifest],
            )
        })?;
        tracing::warn!(run_id = %run.run_id, "a run died before finishing; its committed files are kept");
        Ok(())
    }

    /// The files run `run_id` committed, by path.
    pub fn committed_files(&self, run_id: &str) -> Result<Vec<CommittedFile>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare(
                "SELECT path, kind, rows, bytes, sha256, min_created_at, max_created_at FROM files
                 WHERE run_id = ?1 AND status = ?2 ORDER BY path",
            )?;
            let rows = stmt.query_map(params![run_id, FILE_COMMITTED], |r| {
                Ok(CommittedFile {
                    path: r
                        .get::<_, String>(0)?
                        .replace(std::path::MAIN_SEPARATOR, "/"),
                    kind: r.get(1)?,
                    rows: r.get::<_, i64>(2)? as u64,
                    bytes: r.get::<_, i64>(3)? as u64,
                    sha256: r.get(4)?,
                    min_created_at: r.get(5)?,
                    max_created_at: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }
}

/// Unsettled files grouped by name: a derived table's file (`focus`) and
/// the source file it pairs with share one, and are committed together or
/// discarded together. Other names are unique, so their groups are single.
fn paired(files: Vec<Unsettled>) -> Vec<Vec<Unsettled>> {
    let mut groups: BTreeMap<(String, String), Vec<Unsettled>> = BTreeMap::new();
    for file in files {
        let name = Path::new(&file.path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        groups
            .entry((file.run_id.clone(), name))
            .or_default()
            .push(file);
    }
    groups.into_values().collect()
}

fn remove_if_present(path: &Path) -> Result<(), LedgerError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LedgerError::io("remove", path, e))
        }
        _ => Ok(()),
    }
}

/// Hidden `.*.tmp` files under the output's tables: writes that died before
/// the ledger heard of them.
fn remove_stray_temps(out_dir: &Path) -> Result<u64, LedgerError> {
    let mut removed = 0;
    let mut dirs: Vec<_> = layout::WRITTEN_DIRS
        .iter()
        .map(|d| out_dir.join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                dirs.push(path);
            } else if is_temp_name(&name) {
                remove_if_present(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
