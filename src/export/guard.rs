//! The ledger as the output's partner: a run refuses a ledger that does not
//! know the runs the output directory's manifests list. It was lost, emptied
//! or replaced, and exporting would write those generations again;
//! `genledger state rebuild` recreates it from the manifests and the files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::layout;
use crate::ledger::{Ledger, LedgerError};
use crate::objstore::{Remote, RemoteError};

/// The ledger and the output directory disagree.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "the state ledger `{}` does not know {count} run(s) whose manifests are in `{}` (for example `{example}`): \
         it was lost, emptied or replaced, and exporting now would write those generations a second time; \
         run `genledger state rebuild` to recreate it from the manifests and the committed files, \
         or set `state.path` to the ledger that wrote them",
        ledger.display(), manifests.display()
    )]
    UnknownRuns {
        ledger: PathBuf,
        manifests: PathBuf,
        count: usize,
        example: String,
    },
    #[error(
        "the state ledger `{}` knows no runs, but `{}` holds data files: \
         it was lost, emptied or replaced, and exporting now would write those generations a second time; \
         run `genledger state rebuild` to recreate it from the output, \
         or set `state.path` to the ledger that wrote them",
        ledger.display(), table.display()
    )]
    UnknownFiles { ledger: PathBuf, table: PathBuf },
    #[error("failed to list `{}`", path.display())]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Fails when the output directory holds manifests of this shard's runs
/// that the ledger has never heard of.
pub fn check_ledger_knows_output(
    ledger: &Ledger,
    ledger_path: &Path,
    out_dir: &Path,
    remote: Option<&Remote>,
    shard: &str,
) -> Result<(), StateError> {
    let runs = match remote {
        None => manifest_runs(out_dir, shard)?,
        Some(remote) => remote_manifest_runs(remote, shard)?,
    };
    let known = ledger.run_ids()?;
    let data_files = |remote: Option<&Remote>| match remote {
        None => Ok(has_data_files(out_dir, shard)),
        Some(remote) => has_remote_data_files(remote, shard),
    };
    if known.is_empty() && data_files(remote)? {
        let table = layout::table_dir(out_dir, layout::GENERATIONS);
        return Err(StateError::UnknownFiles {
            ledger: ledger_path.to_owned(),
            table: match remote {
                None => table,
                Some(remote) => PathBuf::from(remote.url().object_url(layout::GENERATIONS)),
            },
        });
    }
    let unknown: Vec<&String> = runs.iter().filter(|r| !known.contains(*r)).collect();
    match unknown.first() {
        None => Ok(()),
        Some(example) => Err(StateError::UnknownRuns {
            ledger: ledger_path.to_owned(),
            manifests: match remote {
                None => out_dir.join(layout::MANIFESTS),
                Some(remote) => PathBuf::from(remote.url().object_url(layout::MANIFESTS)),
            },
            count: unknown.len(),
            example: (*example).clone(),
        }),
    }
}

/// The run IDs of shard `shard`'s manifests in the output directory.
pub fn manifest_runs(out_dir: &Path, shard: &str) -> Result<HashSet<String>, StateError> {
    let dir = out_dir.join(layout::MANIFESTS);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(source) => return Err(StateError::List { path: dir, source }),
    };
    let suffix = layout::manifest_suffix(shard);
    let mut runs = HashSet::new();
    for entry in entries {
        let entry = entry.map_err(|source| StateError::List {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(run_id) = name
            .strip_suffix(&suffix)
            .filter(|_| !name.starts_with('.'))
        {
            runs.insert(run_id.to_owned());
        }
    }
    Ok(runs)
}

/// [`manifest_runs`] of a remote output.
fn remote_manifest_runs(remote: &Remote, shard: &str) -> Result<HashSet<String>, StateError> {
    let suffix = layout::manifest_suffix(shard);
    let names = remote.list(layout::MANIFESTS)?;
    Ok(names
        .iter()
        .filter_map(|n| n.rsplit('/').next())
        .filter_map(|name| name.strip_suffix(&suffix))
        .map(str::to_owned)
        .collect())
}

/// [`has_data_files`] of a remote output.
fn has_remote_data_files(remote: &Remote, shard: &str) -> Result<bool, StateError> {
    let names = remote.list(layout::GENERATIONS)?;
    Ok(names
        .iter()
        .filter_map(|n| n.rsplit('/').next())
        .any(|name| layout::is_data_file_of(name, shard)))
}

/// Whether the `generations` table holds a data file of shard `shard`.
fn has_data_files(out_dir: &Path, shard: &str) -> bool {
    let table = layout::table_dir(out_dir, layout::GENERATIONS);
    let Ok(partitions) = std::fs::read_dir(table) else {
        return false;
    };
    partitions.flatten().any(|partition| {
        std::fs::read_dir(partition.path()).is_ok_and(|files| {
            files
                .flatten()
                .any(|f| layout::is_data_file_of(&f.file_name().to_string_lossy(), shard))
        })
    })
}
