//! Every path and name of the output tree, in one place:
//!
//! ```text
//! OUT/
//!   generations/date=YYYY-MM-DD/part-<run>-<shard>-<seq>.parquet|csv
//!   content/date=YYYY-MM-DD/part-<run>-<shard>-<seq>.parquet|csv   (owner-only)
//!   focus/date=YYYY-MM-DD/part-<run>-<shard>-<seq>.parquet|csv     (beside the generations file of the same name)
//!   failures/part-<run>-<shard>.csv
//!   _manifests/<run>-<shard>.json                                  (written last)
//!   _state/genledger.db                                            (the ledger, by default)
//! ```
//!
//! Files are written under a hidden temporary name first (see
//! `atomic_file::temp_path_for`); readers skip names that start with `.`.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

/// The table of generation metadata.
pub const GENERATIONS: &str = "generations";
/// The table of stored prompts and completions.
pub const CONTENT: &str = "content";
/// The FOCUS cost and usage table, derived from `generations` file by file.
pub const FOCUS: &str = "focus";
/// One CSV per run of the IDs that were not exported, and why.
pub const FAILURES: &str = "failures";
/// One manifest per run.
pub const MANIFESTS: &str = "_manifests";
/// The default home of the ledger.
pub const STATE: &str = "_state";
/// The ledger's file name in [`STATE`].
pub const LEDGER_FILE: &str = "genledger.db";
/// The prefix of a partition directory's name.
pub const PARTITION_PREFIX: &str = "date=";

/// Directories under the output root that hold files genledger writes.
pub const WRITTEN_DIRS: [&str; 5] = [GENERATIONS, CONTENT, FOCUS, FAILURES, MANIFESTS];

/// `OUT/_state/genledger.db`.
pub fn default_ledger_path(out_dir: &Path) -> PathBuf {
    out_dir.join(STATE).join(LEDGER_FILE)
}

/// `OUT/<table>`.
pub fn table_dir(out_dir: &Path, table: &str) -> PathBuf {
    out_dir.join(table)
}

/// The local spool of a remote output, beside the ledger
/// (`genledger.db.spool/`): each file is written there whole, under its
/// hidden name, uploaded, and removed. Laid out as the output tree is.
pub fn spool_dir(ledger_path: &Path) -> PathBuf {
    let mut name = ledger_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| LEDGER_FILE.into());
    name.push(".spool");
    ledger_path.with_file_name(name)
}

/// `<table dir>/date=YYYY-MM-DD`.
pub fn partition_dir(table_dir: &Path, date: NaiveDate) -> PathBuf {
    table_dir.join(format!("{PARTITION_PREFIX}{}", date.format("%Y-%m-%d")))
}

/// `part-<run>-<shard>-<seq>.<ext>`: unique within a run, and across runs by
/// the run ID.
pub fn data_file_name(run_id: &str, shard: &str, seq: u32, extension: &str) -> String {
    format!("part-{run_id}-{shard}-{seq:05}.{extension}")
}

/// `OUT/failures/part-<run>-<shard>.csv`.
pub fn failures_path(out_dir: &Path, run_id: &str, shard: &str) -> PathBuf {
    out_dir
        .join(FAILURES)
        .join(format!("part-{run_id}-{shard}.csv"))
}

/// `OUT/_manifests/<run>-<shard>.json`.
pub fn manifest_path(out_dir: &Path, run_id: &str, shard: &str) -> PathBuf {
    out_dir
        .join(MANIFESTS)
        .join(format!("{run_id}{}", manifest_suffix(shard)))
}

/// How the names of shard `shard`'s manifests end: `-<shard>.json`.
pub fn manifest_suffix(shard: &str) -> String {
    format!("-{shard}.json")
}

/// Whether `name` is a data file of shard `shard` (`part-<run>-<shard>-<seq>.<ext>`).
pub fn is_data_file_of(name: &str, shard: &str) -> bool {
    let Some(stem) = name
        .strip_suffix(".parquet")
        .or_else(|| name.strip_suffix(".csv"))
    else {
        return false;
    };
    let Some((head, seq)) = stem.rsplit_once('-') else {
        return false;
    };
    name.starts_with("part-")
        && seq.len() >= 5
        && seq.bytes().all(|b| b.is_ascii_digit())
        && head.ends_with(&format!("-{shard}"))
}

/// A path under the output root as the manifest and the ledger write it:
/// relative, `/`-separated.
pub fn relative(out_dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(out_dir).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_one_shard_are_told_from_anothers() {
        let name = data_file_name("20261130T101010Z-3fa0", "0", 7, "parquet");
        assert!(is_data_file_of(&name, "0"));
        assert!(!is_data_file_of(&name, "1of2"));
        let sharded = data_file_name("20261130T101010Z-3fa0", "1of2", 7, "csv");
        assert!(is_data_file_of(&sharded, "1of2") && !is_data_file_of(&sharded, "0"));
        assert!(!is_data_file_of(".part-x-0-00001.parquet.tmp", "0"));
        let manifest = manifest_path(Path::new("/o"), "20261130T101010Z-3fa0", "1of2");
        assert!(
            manifest
                .to_string_lossy()
                .ends_with(&manifest_suffix("1of2"))
        );
    }
}
