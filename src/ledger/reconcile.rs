//! Start-up reconciliation: settles every file a dead process left behind and
//! writes a manifest for every run that died before writing its own.

use std::fs;
use std::io::Read;
use std::path::Path;

use rusqlite::{TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::{FILE_COMMITTED, FILE_STAGED, Ledger, LedgerError};
use crate::manifest::{Manifest, ManifestFile};
use crate::sink::format_timestamp;

/// What reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Staged files found whole in place and committed.
    pub committed: u64,
    /// Unfinished files removed; their IDs are pending again.
    pub discarded: u64,
    /// Hidden temporary files removed that the ledger did not know.
    pub strays: u64,
    /// Runs that died before their manifest; one was written for each.
    pub recovered_runs: Vec<String>,
}

struct Unsettled {
    file_id: i64,
    path: String,
    temp_path: String,
    status: i64,
    bytes: Option<i64>,
    sha256: Option<String>,
}

impl Ledger {
    /// Settles unfinished files and dead runs. Call with the state lock held,
    /// before anything else touches the output.
    pub fn reconcile(&mut self, shard: &str) -> Result<Reconciled, LedgerError> {
        let mut done = Reconciled::default();
        let unsettled = self.sql(|c| {
            let mut stmt = c.prepare(
                "SELECT file_id, path, temp_path, status, bytes, sha256 FROM files WHERE status != ?1",
            )?;
            let rows = stmt.query_map([FILE_COMMITTED], |r| {
                Ok(Unsettled {
                    file_id: r.get(0)?,
                    path: r.get(1)?,
                    temp_path: r.get(2)?,
                    status: r.get(3)?,
                    bytes: r.get(4)?,
                    sha256: r.get(5)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        for file in unsettled {
            let final_path = self.out_dir.join(&file.path);
            if file.status == FILE_STAGED
                && is_whole(&final_path, file.bytes, file.sha256.as_deref())
            {
                self.mark_committed(&[file.file_id])?;
                tracing::info!(path = %final_path.display(), "finished the commit of a staged file");
                done.committed += 1;
                continue;
            }
            remove_if_present(&self.out_dir.join(&file.temp_path))?;
            if file.status == FILE_STAGED {
                // Never renamed, or not whole: either way not the data we staged.
                remove_if_present(&final_path)?;
            }
            self.sql_mut(|c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute("DELETE FROM file_rows WHERE file_id = ?1", [file.file_id])?;
                tx.execute("DELETE FROM files WHERE file_id = ?1", [file.file_id])?;
                tx.commit()
            })?;
            tracing::info!(path = %final_path.display(), "removed an unfinished file; its IDs are pending again");
            done.discarded += 1;
        }
        done.strays = remove_stray_temps(&self.out_dir)?;
        done.recovered_runs = self.recover_dead_runs(shard)?;
        Ok(done)
    }

    /// Writes a manifest for each run that never finished, listing the files it
    /// committed, so every committed file is named by some manifest.
    fn recover_dead_runs(&mut self, shard: &str) -> Result<Vec<String>, LedgerError> {
        let dead: Vec<(i64, String, String)> = self.sql(|c| {
            let mut stmt =
                c.prepare("SELECT run_no, run_id, started_at FROM runs WHERE finished_at IS NULL")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut recovered = Vec::new();
        for (run_no, run_id, started_at) in dead {
            let files = self.committed_files(&run_id)?;
            let now = format_timestamp(chrono::Utc::now().timestamp_micros());
            let manifest_path = if files.is_empty() {
                None
            } else {
                let manifest = Manifest::recovered(&run_id, shard, &started_at, files);
                Some(manifest.write(&self.out_dir)?)
            };
            let manifest = manifest_path.as_deref().map(|p| self.relative(p));
            self.sql(|c| {
                c.execute(
                    "UPDATE runs SET finished_at = ?2, manifest = ?3 WHERE run_no = ?1",
                    params![run_no, now, manifest],
                )
            })?;
            tracing::warn!(%run_id, "a run died before finishing; its committed files are kept");
            recovered.push(run_id);
        }
        Ok(recovered)
    }

    fn committed_files(&self, run_id: &str) -> Result<Vec<ManifestFile>, LedgerError> {
        self.sql(|c| {
            let mut stmt = c.prepare(
                "SELECT path, kind, rows, bytes, sha256, min_created_at, max_created_at FROM files
                 WHERE run_id = ?1 AND status = ?2 ORDER BY path",
            )?;
            let rows = stmt.query_map(params![run_id, FILE_COMMITTED], |r| {
                Ok(ManifestFile {
                    path: r
                        .get::<_, String>(0)?
                        .replace(std::path::MAIN_SEPARATOR, "/"),
                    kind: if r.get::<_, String>(1)? == "generations" {
                        "generations"
                    } else {
                        "content"
                    },
                    rows: r.get::<_, i64>(2)? as u64,
                    bytes: r.get::<_, i64>(3)? as u64,
                    sha256: r.get(4)?,
                    min_created_at: r.get::<_, Option<i64>>(5)?.map(format_timestamp),
                    max_created_at: r.get::<_, Option<i64>>(6)?.map(format_timestamp),
                })
            })?;
            rows.collect()
        })
    }
}

fn is_whole(path: &Path, bytes: Option<i64>, sha256: Option<&str>) -> bool {
    let (Some(bytes), Some(sha256)) = (bytes, sha256) else {
        return false;
    };
    let Ok(mut file) = fs::File::open(path) else {
        return false;
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0i64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as i64;
            }
            Err(_) => return false,
        }
    }
    total == bytes && hex::encode(hasher.finalize()) == sha256
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
    let mut dirs: Vec<_> = ["generations", "content", "failures", "_manifests"]
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
            } else if name.starts_with('.') && name.ends_with(".tmp") {
                remove_if_present(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
